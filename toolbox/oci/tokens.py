"""Answering a registry's 401: the Docker token flow (distribution's "Token Authentication
Specification") from the WWW-Authenticate challenge, anonymous or with the stored credentials,
or HTTP Basic; the Authorization header kept per repository until it expires.

The transport sends the requests and asks this module only after a 401 from the registry itself.
"""

from __future__ import annotations

import threading
import time
import urllib.parse

import requests

from toolbox.errors import AuthError, RegistryError
from toolbox.oci.auth import Challenge, Credentials, CredentialStore, parse_www_authenticate
from toolbox.oci.endpoints import Endpoint
from toolbox.oci.network_errors import short_reason
from toolbox.oci.reference import registry_of_api_host

# A token without expires_in is valid for 60 seconds (Docker token spec).
DEFAULT_TOKEN_SECONDS = 60


class RegistryAuthenticator:
    """The Authorization header for each (host, repository), got by answering its challenge.

    Shared by the threads of one pull: the cache is guarded by a lock; two threads answering the
    same challenge at once both fetch a token, and the later one is kept.
    """

    def __init__(self, session: requests.Session, credentials: CredentialStore,
                 timeout: tuple[float, float]) -> None:
        self._session = session
        self._credentials = credentials
        self._timeout = timeout  # (connect, read), for the token server
        self._lock = threading.Lock()
        self._headers = {}  # (host, repository) -> (header value, expires at monotonic or None)

    def header(self, endpoint: Endpoint) -> str | None:
        """The cached Authorization header for `endpoint`, while it has not expired."""
        with self._lock:
            entry = self._headers.get((endpoint.host, endpoint.repository))
        if entry and (entry[1] is None or entry[1] > time.monotonic()):
            return entry[0]
        return None

    def has_stored_credentials(self, endpoint: Endpoint) -> bool:
        return self._credentials.lookup(_credentials_key(endpoint), endpoint.repository) is not None

    def authenticate(self, endpoint: Endpoint, challenge_header: str,
                     credentials_override: Credentials | None = None,
                     registry_key: str | None = None) -> None:
        """Answer `endpoint`'s WWW-Authenticate challenge and cache the header it earns, with
        `credentials_override` or else the credentials stored for `registry_key` (default: the
        registry the endpoint's host serves)."""
        challenges = parse_www_authenticate(challenge_header)
        credentials = credentials_override or self._credentials.lookup(
            registry_key or _credentials_key(endpoint), endpoint.repository or None)
        for challenge in challenges:
            if challenge.scheme == "bearer" and challenge.param("realm"):
                header, expires = self._fetch_token(endpoint, challenge, credentials)
                break
            if challenge.scheme == "basic":
                if credentials is None:
                    raise AuthError(f"{endpoint.host} requires a user name and password",
                                    hint=f"run `toolbox login {endpoint.host}`")
                header, expires = credentials.basic_header(), None
                break
        else:
            raise AuthError(f"{endpoint.host} asked for authentication this client does not support "
                            f"({challenge_header[:80]!r})")
        with self._lock:
            self._headers[(endpoint.host, endpoint.repository)] = (header, expires)

    def _fetch_token(self, endpoint: Endpoint, challenge: Challenge,
                     credentials: Credentials | None) -> tuple[str, float]:
        realm = challenge.param("realm")
        scope = challenge.param("scope") or (f"repository:{endpoint.repository}:pull"
                                             if endpoint.repository else None)
        params = {"service": challenge.param("service")} if challenge.param("service") else {}
        if scope:
            params["scope"] = scope
        realm_scheme = urllib.parse.urlsplit(realm).scheme.lower()
        if realm_scheme not in ("http", "https"):
            raise AuthError(f"{endpoint.host} named a token server that is not an HTTP(S) URL: "
                            f"{realm[:100]!r}")
        if credentials is not None and realm_scheme == "http" and endpoint.verify is not False:
            # Never send a password in clear text to a token server of a registry that is
            # otherwise reached over verified HTTPS.
            raise AuthError(f"the token server {realm} of {endpoint.host} is plain HTTP; refusing to send "
                            "credentials to it")
        verify = endpoint.verify
        timeout = self._timeout
        try:
            if credentials is not None and credentials.identity_token:
                response = self._session.post(
                    realm,
                    data={**params, "grant_type": "refresh_token",
                          "refresh_token": credentials.identity_token, "client_id": "toolbox"},
                    verify=verify,
                    timeout=timeout,
                )
            else:
                # Our own header: requests would encode a password as Latin-1 and fail (quoting
                # the character) on anything else; registries expect UTF-8.
                headers = {"Authorization": credentials.basic_header()} if credentials is not None else {}
                response = self._session.get(realm, params=params, headers=headers, verify=verify,
                                             timeout=timeout)
        except requests.RequestException as err:
            raise RegistryError(f"cannot reach the token server of {endpoint.host}: "
                                f"{short_reason(err)}") from None
        with response:
            if response.status_code in (401, 403):
                if credentials is None:
                    raise AuthError(f"{endpoint.host} requires credentials for "
                                    f"{endpoint.repository or 'this registry'}",
                                    hint=f"run `toolbox login {endpoint.host}`")
                raise AuthError(f"{endpoint.host} rejected the credentials of {credentials.username!r}",
                                hint=f"log in again with `toolbox login {endpoint.host}`")
            if response.status_code != 200:
                raise RegistryError(f"the token server of {endpoint.host} answered {response.status_code}")
            try:
                body = response.json()
            except ValueError:
                raise RegistryError(f"the token server of {endpoint.host} did not answer JSON") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token server of {endpoint.host} answered without a token")
        expires_in = body.get("expires_in")
        seconds = (expires_in if isinstance(expires_in, (int, float)) and expires_in > 0
                   else DEFAULT_TOKEN_SECONDS)
        # Renew a little early so a token never expires between our check and the registry's.
        return f"Bearer {token}", time.monotonic() + max(seconds - 5, 1)


def _credentials_key(endpoint: Endpoint) -> str:
    # Docker Hub's credentials are filed under docker.io, not its API host.
    return registry_of_api_host(endpoint.host)
