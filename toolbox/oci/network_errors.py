"""Why a request to a registry failed, in words a person can act on, and with no secrets.

requests and urllib3 wrap the cause several layers deep ("Max retries exceeded ... (Caused by
NewConnectionError(...))"); these functions dig out the socket error, say whether a connection
was made at all, and cut query values (a storage URL's signature) out of anything shown or logged.
"""

from __future__ import annotations

import errno
import re
import socket
from dataclasses import dataclass

import requests
import urllib3

# A query parameter's value. Registries redirect blob downloads to storage URLs whose query
# carries the credentials (S3's X-Amz-Signature and X-Amz-Credential, Azure's sig=, GCS's
# token=), and urllib3 logs every URL it requests at debug level.
_QUERY_VALUE = re.compile(r"""([?&][^=&?#\s'"]*=)[^&#\s'"]*""")


def redact_query_values(text: str) -> str:
    """`text` with the value of every URL query parameter in it replaced by `<redacted>`."""
    return _QUERY_VALUE.sub(r"\1<redacted>", text)


@dataclass(frozen=True)
class ConnectFailure:
    cause: str  # "connection refused", "name lookup failed (...)", ...
    hint: str


def connect_failure(err: BaseException, connect_timeout: float) -> ConnectFailure | None:
    """Why no connection could be made, for a requests error raised before anything was sent
    (urllib3 raises NewConnectionError, NameResolutionError or ConnectTimeoutError only while
    connecting); None for a connection that broke or stalled once made."""
    chain = _exception_chain(err)
    proxy = isinstance(err, requests.exceptions.ProxyError)
    via = "the proxy: " if proxy else ""
    network_hint = "check the network connection" + (" and the proxy settings (HTTPS_PROXY, HTTP_PROXY)"
                                                     if proxy else "")
    for cause in chain:
        if isinstance(cause, socket.gaierror):
            return ConnectFailure(f"{via}name lookup failed ({cause.strerror or cause})",
                                  f"check the name{' of the proxy' if proxy else ' of the registry'} and "
                                  f"your DNS settings; {network_hint}")
    for cause in chain:
        if isinstance(cause, ConnectionRefusedError):
            return ConnectFailure(f"{via}connection refused",
                                  "nothing accepts connections at the proxy: check HTTPS_PROXY and HTTP_PROXY"
                                  if proxy else
                                  "nothing accepts connections there: check the host name and port, and that "
                                  "the registry is running")
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH,
                                                          errno.EADDRNOTAVAIL) and cause.strerror:
            return ConnectFailure(f"{via}{cause.strerror.lower()}", network_hint)
    connecting = [c for c in chain if isinstance(c, (urllib3.exceptions.ConnectTimeoutError,
                                                     requests.exceptions.ConnectTimeout))]
    if connecting and not any(isinstance(c, urllib3.exceptions.NewConnectionError) for c in connecting):
        return ConnectFailure(f"{via}no answer to connecting within {connect_timeout:g} s",
                              f"{network_hint}; TOOLBOX_CONNECT_TIMEOUT sets the wait (seconds)")
    if connecting:  # another reason the connection could not be made
        return ConnectFailure(f"{via}{short_reason(err)}", network_hint)
    return None


def _exception_chain(err: BaseException) -> list[BaseException]:
    """`err` and every exception inside it: urllib3's `reason`, exceptions in `args` (requests
    wraps urllib3's), and the causes Python chained (the socket error under urllib3's)."""
    found, pending = [], [err]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        reason = getattr(current, "reason", None)
        pending += [reason if isinstance(reason, BaseException) else None, current.__cause__,
                    current.__context__]
        pending += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
    return found


# urllib3 puts the connection or the pool first in its messages ("HTTPSConnectionPool(host=
# 'x', port=443): Max retries exceeded with url: ... (Caused by ...)"); the host is in our own
# message already.
_POOL_PREFIX = re.compile(r"^\w*(Connection|ConnectionPool)\(host=[^)]*\):\s*")


def short_reason(err: BaseException, limit: int = 200) -> str:
    """What a person can act on: the innermost reason of requests' and urllib3's nested errors,
    a system error's own text where there is one, within `limit` characters cut at a word."""
    chain = _exception_chain(err)
    system = [c for c in chain if isinstance(c, OSError) and c.strerror]
    reason = (system[-1].strerror if system
              else _POOL_PREFIX.sub("", str(chain[-1])) or type(chain[-1]).__name__)
    # Messages quote the URL (a redirect to file://, "Max retries exceeded with url: ...").
    reason = redact_query_values(reason)
    if len(reason) > limit:
        reason = reason[:limit].rsplit(" ", 1)[0] + " …"
    return reason
