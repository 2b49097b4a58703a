"""The HTTP side of talking to a registry: one requests session (pooled, shared by the threads
of a pull), and a request loop that

- tries each endpoint's schemes (https, then http for registries marked insecure) and remembers
  which one answered;
- answers the registry's 401 once (tokens.py), and never a 401 from a storage host the registry
  redirected us to;
- tries a registry that cannot be reached (refused, a name that does not resolve, no route) once
  more, quickly, then names the cause; retries with backoff on connections that break once made,
  429 (Retry-After honoured) and 5xx;
- turns the distribution API's error answers into typed errors with hints;
- goes through the mirrors before the registry (`first_answer`).

It knows nothing of manifests or blobs (registry.py) and keeps URL query values out of the logs.
"""

from __future__ import annotations

import email.utils
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import requests

from toolbox import __version__
from toolbox.errors import AuthError, IntegrityError, NotFound, RegistryError
from toolbox.oci.auth import Credentials, CredentialStore
from toolbox.oci.endpoints import Endpoint, RegistryConfig, endpoint_for, endpoints_for
from toolbox.oci.network_errors import connect_failure, redact_query_values, short_reason
from toolbox.oci.reference import ImageRef
from toolbox.oci.tokens import RegistryAuthenticator

log = logging.getLogger(__name__)

RETRY_STATUSES = {429, 500, 502, 503, 504}
# A connection that could not be made at all is tried once more, this long after.
CONNECT_RETRIES = 1
CONNECT_RETRY_DELAY = 0.25
# What one read from a response asks for.
CHUNK = 256 * 1024

Answer = TypeVar("Answer")


@dataclass(frozen=True)
class ClientSettings:
    connect_timeout: float = 15.0
    read_timeout: float = 30.0  # a connection silent this long is stalled: retried or resumed
    retries: int = 5
    backoff: float = 0.5
    max_retry_after: float = 60.0
    pool_size: int = 16

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientSettings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            connect_timeout=float(env.get("TOOLBOX_CONNECT_TIMEOUT", defaults.connect_timeout)),
            read_timeout=float(env.get("TOOLBOX_READ_TIMEOUT", defaults.read_timeout)),
            retries=int(env.get("TOOLBOX_RETRIES", defaults.retries)),
            backoff=float(env.get("TOOLBOX_RETRY_BACKOFF", defaults.backoff)),
        )


class _RedactQueryValues(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_query_values(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def _redact_http_logs() -> None:
    """Put the filter on our loggers (toolbox.oci.*) and on every urllib3 and requests logger (a
    logger's filters see only its own records, not its children's). Idempotent."""
    names = [name for name in logging.root.manager.loggerDict
             if name.split(".")[0] in ("urllib3", "requests") or name.startswith("toolbox.oci.")]
    for name in [log.name] + names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactQueryValues) for f in logger.filters):
            logger.addFilter(_RedactQueryValues())


class RegistryTransport:
    """Requests to a registry's endpoints, with their retries, TLS settings and authentication."""

    def __init__(self, config: RegistryConfig, credentials: CredentialStore,
                 settings: ClientSettings | None = None) -> None:
        self._config = config
        self._settings = settings or ClientSettings()
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=self._settings.pool_size,
                                                pool_maxsize=self._settings.pool_size)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers["User-Agent"] = f"toolbox/{__version__}"
        self._authenticator = RegistryAuthenticator(
            self._session, credentials, (self._settings.connect_timeout, self._settings.read_timeout))
        self._working_scheme = {}  # host -> the scheme that answered, for insecure registries
        _redact_http_logs()

    def close(self) -> None:
        self._session.close()

    # -- endpoints -----------------------------------------------------------------------------
    def endpoints(self, ref: ImageRef) -> list[Endpoint]:
        return endpoints_for(self._config, ref)

    def registry_endpoint(self, ref: ImageRef) -> Endpoint:
        """The registry of `ref` itself, for requests outside any repository (/v2/): no mirrors."""
        return endpoint_for(self._config, ref.endpoint_host, "", registry_key=ref.registry)

    # -- the request loop ------------------------------------------------------------------------
    def first_answer(self, ref: ImageRef, fetch: Callable[[Endpoint], Answer]) -> Answer:
        """`fetch`'s answer from the first of `ref`'s endpoints that gives one: the mirrors in
        turn, then the registry. The registry's error is the one raised, told together with a
        mirror's "not found" when the registry itself could not be asked."""
        endpoints = self.endpoints(ref)
        mirror_not_found = None
        for endpoint in endpoints[:-1]:
            try:
                return fetch(endpoint)
            except (RegistryError, IntegrityError) as err:
                log.info("mirror %s failed (%s); falling back", endpoint.describe(), err)
                if isinstance(err, NotFound) and mirror_not_found is None:
                    mirror_not_found = err
        try:
            return fetch(endpoints[-1])
        except RegistryError as err:
            if mirror_not_found is None or isinstance(err, (NotFound, AuthError)):
                raise
            # A mirror's "not found" says more than an upstream that cannot be reached (offline,
            # or a mirror-only network): both are told.
            raise NotFound(f"{mirror_not_found.message}; {endpoints[-1].host} itself could not be asked "
                           f"({err.message})",
                           hint=mirror_not_found.hint) from None

    def request(self, endpoint: Endpoint, method: str, path: str, headers: Mapping[str, str] | None = None,
                stream: bool = False, credentials_override: Credentials | None = None,
                registry_key: str | None = None) -> requests.Response:
        """`method` on `path` under the endpoint's /v2/ (its repository's, if it names one): the
        first answer that is neither a 401 we could answer nor a retried failure. The caller
        closes the response."""
        url_path = f"/v2/{endpoint.repository}/{path}" if endpoint.repository else f"/v2/{path}"
        settings = self._settings
        authenticated_after_401 = False
        attempt = 0
        while True:
            request_headers = dict(headers or {})
            auth_header = self._authenticator.header(endpoint)
            if auth_header:
                request_headers["Authorization"] = auth_header
            try:
                response = self._send(endpoint, method, url_path, request_headers, stream)
            except requests.exceptions.SSLError as err:
                raise RegistryError(
                    f"TLS verification failed for {endpoint.host}: {short_reason(err)}",
                    hint='install the registry\'s CA in the system store, or set ca_file under '
                         f'[registries."{endpoint.host}"] in the config file; '
                         'insecure = true there allows plain HTTP',
                ) from None
            except (requests.ConnectionError, requests.Timeout) as err:
                attempt += 1
                failure = connect_failure(err, settings.connect_timeout)
                if failure is not None:
                    # No connection was made: nothing listens there, the name does not resolve,
                    # no route. Waiting rarely changes that, so one quick retry (a registry
                    # restarting, a lost packet), then the cause; the mirrors before this
                    # endpoint were tried the same way.
                    if attempt > min(settings.retries, CONNECT_RETRIES):
                        raise RegistryError(f"cannot reach {endpoint.host}: {failure.cause}",
                                            hint=failure.hint) from None
                    self._sleep_before_retry(attempt, CONNECT_RETRY_DELAY,
                                             f"{endpoint.host}: {failure.cause}")
                    continue
                # Connected, then the connection broke or stalled: transient, retried with backoff.
                if attempt > settings.retries:
                    raise RegistryError(f"cannot reach {endpoint.host}: {short_reason(err)}",
                                        hint="check the network, the registry name "
                                             "and any proxy settings") from None
                self._sleep_before_retry(attempt, None, f"{endpoint.host}: {short_reason(err)}")
                continue
            except requests.RequestException as err:  # redirect loops, redirects to file://, ...
                raise RegistryError(f"{endpoint.host}: {type(err).__name__}: {short_reason(err)}") from None
            if (response.status_code == 401 and not authenticated_after_401
                and _host_of(response.url) == endpoint.host.lower()):
                # Only the registry's own challenge is answered: a 401 from a storage host it
                # redirected us to must never receive the registry's credentials.
                authenticated_after_401 = True
                challenge_header = response.headers.get("WWW-Authenticate", "")
                response.close()
                self._authenticator.authenticate(endpoint, challenge_header, credentials_override,
                                                 registry_key)
                continue
            if response.status_code in RETRY_STATUSES and attempt < settings.retries:
                attempt += 1
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                response.close()
                self._sleep_before_retry(attempt, retry_after,
                                         f"{endpoint.host} answered {response.status_code}")
                continue
            return response

    def _send(self, endpoint: Endpoint, method: str, url_path: str, headers: dict[str, str],
              stream: bool) -> requests.Response:
        schemes = self._ordered_schemes(endpoint)
        last = None
        for scheme in schemes:
            try:
                response = self._session.request(
                    method,
                    f"{scheme}://{endpoint.host}{url_path}",
                    headers=headers,
                    stream=stream,
                    verify=endpoint.verify,
                    timeout=(self._settings.connect_timeout, self._settings.read_timeout),
                )
                if len(schemes) > 1:
                    self._working_scheme[endpoint.host] = scheme
                return response
            except requests.ConnectionError as err:
                # SSLError included: insecure registries may be plain HTTP
                last = err
        raise last

    def _ordered_schemes(self, endpoint: Endpoint) -> tuple[str, ...]:
        known = self._working_scheme.get(endpoint.host)
        if known in endpoint.schemes:
            return (known,) + tuple(s for s in endpoint.schemes if s != known)
        return endpoint.schemes

    def _sleep_before_retry(self, attempt: int, retry_after: float | None, why: str) -> None:
        delay = retry_after if retry_after is not None else self._settings.backoff * (2 ** (attempt - 1))
        delay = min(delay, self._settings.max_retry_after)
        log.info("%s; retry %d in %.1fs", why, attempt, delay)
        time.sleep(delay)

    def raise_for_status(self, response: requests.Response, endpoint: Endpoint, what: str) -> None:
        """Nothing for a 200 or 206; else the registry's answer as a typed error about `what`."""
        status = response.status_code
        if status in (200, 206):
            return
        code = _error_code(response)
        if status == 404 or code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"):
            raise NotFound(f"{what} not found in {endpoint.describe()}" + (f" ({code})" if code else ""),
                           hint="check the repository name and tag")
        if status in (401, 403):
            # Registries answer 401/403 both for "private" and for "no such repository", so that
            # anonymous users cannot probe names (distribution spec, "Error codes").
            has_credentials = self._authenticator.has_stored_credentials(endpoint)
            raise AuthError(
                f"access to {endpoint.describe()} denied: the repository does not exist or needs other "
                "credentials",
                hint=("your stored credentials do not grant access; check the name, or log in again with "
                      "`toolbox login " + endpoint.host + "`")
                if has_credentials
                else f"check the name; if the repository is private, run `toolbox login {endpoint.host}`",
            )
        if status in RETRY_STATUSES:
            raise RegistryError(f"{endpoint.host} kept failing ({status}) for {what}",
                                hint="the registry is overloaded or down; try again later")
        raise RegistryError(f"{endpoint.host} answered {status} for {what}" + (f" ({code})" if code else ""))


def _host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc.lower()


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_code(response: requests.Response) -> str | None:
    try:
        errors = response.json().get("errors") or []
        return errors[0].get("code") if errors and isinstance(errors[0], dict) else None
    except (ValueError, AttributeError):
        return None
