"""A client for the OCI distribution API: manifests and blobs over HTTP(S), nothing about disk.

What it takes care of:
- endpoints: configured mirrors first, then the registry itself (Docker Hub's API host is
  registry-1.docker.io); HTTPS verified against the system CA store or a configured CA file;
  plain HTTP only for registries marked insecure;
- authentication: the Docker token flow from WWW-Authenticate (anonymous or with credentials),
  Basic auth, tokens cached per repository and renewed when they expire or stop working;
- a registry that cannot be reached (refused, a name that does not resolve, no route) tried
  once more, quickly, then named with the cause; retries with backoff on connections that
  break once made, 429 (Retry-After honoured) and 5xx;
- blob streams that count and hash every byte, resume with a Range request after a broken
  connection, and raise IntegrityError when the size or digest is wrong;
- a repository's tags (tags/list), page after page as the Link header leads.

The caller (the pull use case and the store) decides what to keep; nothing here writes files.
"""

import email.utils
import errno
import logging
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass

import requests
import urllib3

from toolbox import __version__
from toolbox.oci.auth import parse_www_authenticate
from toolbox.oci.digest import Digest
from toolbox.errors import AuthError, IntegrityError, NotFound, RegistryError
from toolbox.oci.manifest import ACCEPT_MANIFESTS, MAX_MANIFEST_SIZE

log = logging.getLogger("toolbox.oci.registry")
# A query parameter's value. Registries redirect blob downloads to storage URLs whose query
# carries the credentials (S3's X-Amz-Signature and X-Amz-Credential, Azure's sig=, GCS's
# token=), and urllib3 logs every URL it requests at debug level.
_QUERY_VALUE = re.compile(r"""([?&][^=&?#\s'"]*=)[^&#\s'"]*""")

RETRY_STATUSES = {429, 500, 502, 503, 504}
# A connection that could not be made at all is tried once more, this long after.
CONNECT_RETRIES = 1
CONNECT_RETRY_DELAY = 0.25
CHUNK = 256 * 1024
# A token without expires_in is valid for 60 seconds (Docker token spec).
DEFAULT_TOKEN_SECONDS = 60
# tags/list: one page is JSON of at most this many bytes, and a repository at most this many
# pages (100,000 tags at 100 a page: far more than the busiest image repositories have).
MAX_TAGS_PAGE_BYTES = 4 * 1024 * 1024
MAX_TAGS_PAGES = 1000


@dataclass(frozen=True)
class ClientSettings:
    connect_timeout: float = 15.0
    read_timeout: float = 30.0  # a connection silent this long is stalled: retried or resumed
    retries: int = 5
    backoff: float = 0.5
    max_retry_after: float = 60.0
    pool_size: int = 16

    @classmethod
    def from_env(cls, environ=None):
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            connect_timeout=float(env.get("TOOLBOX_CONNECT_TIMEOUT", defaults.connect_timeout)),
            read_timeout=float(env.get("TOOLBOX_READ_TIMEOUT", defaults.read_timeout)),
            retries=int(env.get("TOOLBOX_RETRIES", defaults.retries)),
            backoff=float(env.get("TOOLBOX_RETRY_BACKOFF", defaults.backoff)),
        )


@dataclass(frozen=True)
class Endpoint:
    """Where one repository can be read from: the registry itself or one of its mirrors."""

    host: str
    repository: str
    schemes: tuple  # tried in order; insecure registries fall back from https to http
    verify: object  # requests' verify: True, False or a CA bundle path
    is_mirror: bool = False

    def describe(self):
        return f"{self.host}/{self.repository}" + (" (mirror)" if self.is_mirror else "")


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    content_type: str
    digest: Digest
    endpoint: Endpoint


def system_ca_bundle():
    """The system's CA store (so a corporate CA installed there works), not certifi's copy."""
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if os.environ.get(var) and os.path.exists(os.environ[var]):
            return os.environ[var]
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and os.path.exists(candidate):
            return candidate
    return True


def _certs_d_ca(host):
    """containers-certs.d(5) and Docker's certs.d: a per-registry CA dropped in by an admin."""
    home = os.path.expanduser("~")
    for base in (os.path.join(home, ".config", "containers", "certs.d"), "/etc/containers/certs.d", "/etc/docker/certs.d"):
        candidate = os.path.join(base, host, "ca.crt")
        if os.path.isfile(candidate):
            return candidate
    return None


def redact_query_values(text):
    """`text` with the value of every URL query parameter in it replaced by `<redacted>`."""
    return _QUERY_VALUE.sub(r"\1<redacted>", text)


class _RedactQueryValues(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        redacted = redact_query_values(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def _redact_http_logs():
    """Put the filter on our logger and on every urllib3 and requests logger (a logger's filters
    see only its own records, not its children's). Idempotent."""
    names = [name for name in logging.root.manager.loggerDict if name.split(".")[0] in ("urllib3", "requests")]
    for name in [log.name] + names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactQueryValues) for f in logger.filters):
            logger.addFilter(_RedactQueryValues())


class RegistryClient:
    def __init__(self, config, credentials, settings=None):
        self._config = config
        self._credentials = credentials
        self._settings = settings or ClientSettings()
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=self._settings.pool_size, pool_maxsize=self._settings.pool_size)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers["User-Agent"] = f"toolbox/{__version__}"
        self._auth_lock = threading.Lock()
        self._auth = {}  # (host, repository) -> (header value, expires at monotonic)
        self._working_scheme = {}  # host -> the scheme that answered, for insecure registries
        _redact_http_logs()

    def close(self):
        self._session.close()

    # -- endpoints -----------------------------------------------------------------------------
    def endpoints(self, ref):
        registry = self._config.registry(ref.registry)
        endpoints = []
        for mirror in registry.mirrors:
            repository = f"{mirror.path_prefix}/{ref.repository}" if mirror.path_prefix else ref.repository
            endpoints.append(self._endpoint(mirror.host, repository, is_mirror=True, scheme=mirror.scheme))
        endpoints.append(self._endpoint(ref.endpoint_host, ref.repository, registry_key=ref.registry))
        return endpoints

    def _endpoint(self, host, repository, is_mirror=False, scheme=None, registry_key=None):
        settings = self._config.registry(registry_key or host)
        if scheme:  # a mirror written as http://… or https://… in the config: the user chose
            schemes = (scheme,)
        elif settings.insecure:
            schemes = ("https", "http")  # as Docker does: try TLS first, fall back to plain HTTP
        else:
            schemes = ("https",)
        verify = False if settings.insecure else (settings.ca_file or _certs_d_ca(host) or system_ca_bundle())
        return Endpoint(host, repository, schemes, verify, is_mirror)

    # -- manifests -----------------------------------------------------------------------------
    def get_manifest(self, ref, reference=None):
        """Fetch the manifest or index named by `reference` (a tag or digest string; default: the
        reference's own digest or tag), trying mirrors first."""
        reference = reference or ref.reference
        return self._first_answer(ref, lambda endpoint: self._get_manifest(endpoint, ref, reference))

    def _get_manifest(self, endpoint, ref, reference):
        response = self._request(endpoint, "GET", f"manifests/{reference}", headers={"Accept": ACCEPT_MANIFESTS}, stream=True)
        what = f"manifest {reference}" if reference.startswith(("sha256:", "sha512:")) else f"tag {reference!r}"
        with response:
            self._raise_for_status(response, endpoint, what)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_MANIFEST_SIZE:
                raise RegistryError(f"manifest {reference} from {endpoint.describe()} is {declared} bytes, over the {MAX_MANIFEST_SIZE}-byte limit")
            data = self._read_limited(response, MAX_MANIFEST_SIZE, f"manifest {reference}")
        digest = self._verify_manifest_digest(data, reference, response, endpoint)
        return FetchedManifest(data, response.headers.get("Content-Type", ""), digest, endpoint)

    @staticmethod
    def _read_limited(response, limit, what):
        chunks, total = [], 0
        try:
            for chunk in response.iter_content(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise RegistryError(f"{what} is larger than the {limit}-byte limit")
                chunks.append(chunk)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as err:
            raise RegistryError(f"connection broke while reading {what}: {err}") from None
        return b"".join(chunks)

    @staticmethod
    def _verify_manifest_digest(data, reference, response, endpoint):
        if reference.startswith(("sha256:", "sha512:")):
            wanted = Digest.parse(reference)
            if not wanted.matches(data):
                raise IntegrityError(f"manifest from {endpoint.describe()} does not match its digest {wanted}", hint="the registry or something between us and it altered the content")
            return wanted
        digest = Digest.of_bytes(data)
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced.startswith("sha256:") and announced != str(digest):
            raise IntegrityError(f"manifest {reference} from {endpoint.describe()} does not match the digest the registry announced ({announced})")
        return digest

    # -- tags ------------------------------------------------------------------------------------
    def list_tags(self, ref, page_size=None):
        """Every tag of `ref`'s repository, in the registry's order (distribution spec, "Listing
        Tags"), mirrors first. `page_size` asks for pages of that many (`n`); without it the
        registry chooses. Either way, a registry that pages says where the next page is in a
        Link header (`<...?last=x&n=100>; rel="next"`), followed until there is none."""
        return self._first_answer(ref, lambda endpoint: self._list_tags(endpoint, page_size))

    def _list_tags(self, endpoint, page_size):
        query = f"n={page_size}" if page_size else ""
        tags, asked = [], set()
        for _page in range(MAX_TAGS_PAGES):
            asked.add(query)
            response = self._request(endpoint, "GET", "tags/list" + (f"?{query}" if query else ""), stream=True)
            with response:
                self._raise_for_status(response, endpoint, "the list of tags")
                data = self._read_limited(response, MAX_TAGS_PAGE_BYTES, f"the list of tags of {endpoint.describe()}")
                link = response.headers.get("Link", "")
            tags += _tags_of_page(data, endpoint)
            query = _next_page_query(link)
            if query is None or query in asked:  # the last page (or a registry sending us in a circle)
                return list(dict.fromkeys(tags))
        raise RegistryError(f"{endpoint.describe()} lists its tags in more than {MAX_TAGS_PAGES} pages",
                            hint="the registry keeps sending a next page; try again later")

    # -- blobs -----------------------------------------------------------------------------------
    def get_blob_bytes(self, ref, descriptor, endpoint=None, limit=None):
        """A small blob (a config) read whole and verified."""
        with self.open_blob(ref, descriptor, endpoint) as stream:
            data = stream.read_all(limit or descriptor.size)
        return data

    def open_blob(self, ref, descriptor, endpoint=None):
        """A verifying, resuming stream over a blob. `endpoint` (where the manifest came from) is
        tried first, then the others."""
        candidates = self.endpoints(ref)
        if endpoint is not None:
            candidates = [endpoint] + [e for e in candidates if e != endpoint]
        last_error = None
        for candidate in candidates:
            try:
                return BlobStream(self, candidate, descriptor)
            except (NotFound, AuthError, RegistryError) as err:
                if not candidate.is_mirror and candidate is candidates[-1]:
                    raise
                log.info("blob %s not available from %s (%s); trying the next endpoint", descriptor.digest.short, candidate.describe(), err)
                last_error = err
        raise last_error

    def _open_blob_response(self, endpoint, digest, offset=0):
        # identity: the digest is over the blob's own bytes, and we read them undecoded.
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
        response = self._request(endpoint, "GET", f"blobs/{digest}", headers=headers, stream=True)
        if response.status_code not in (200, 206):
            with response:
                self._raise_for_status(response, endpoint, f"blob {digest.short}")
        return response

    # -- login -----------------------------------------------------------------------------------
    def check_login(self, registry_host, credentials):
        """Ask the registry's /v2/ with these credentials, as `docker login` does."""
        from toolbox.oci.reference import ImageRef

        # The endpoint rules (insecure, CA) of the registry itself; no mirrors for logins.
        fake_ref = ImageRef.parse(f"{registry_host}/login-check")
        endpoint = self._endpoint(fake_ref.endpoint_host, "", registry_key=fake_ref.registry)
        response = self._request(endpoint, "GET", "", credentials_override=credentials, registry_key=fake_ref.registry)
        with response:
            if response.status_code in (401, 403):
                raise AuthError(f"{registry_host} rejected the credentials for {credentials.username!r}", hint="check the user name and password (or token)")
            self._raise_for_status(response, endpoint, "/v2/")

    # -- the request loop ------------------------------------------------------------------------
    def _first_answer(self, ref, fetch):
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
            raise NotFound(f"{mirror_not_found.message}; {endpoints[-1].host} itself could not be asked ({err.message})",
                           hint=mirror_not_found.hint) from None

    def _request(self, endpoint, method, path, headers=None, stream=False, credentials_override=None, registry_key=None):
        url_path = f"/v2/{endpoint.repository}/{path}" if endpoint.repository else f"/v2/{path}"
        settings = self._settings
        authenticated_after_401 = False
        attempt = 0
        while True:
            request_headers = dict(headers or {})
            auth_header = self._cached_auth(endpoint)
            if auth_header:
                request_headers["Authorization"] = auth_header
            try:
                response = self._send(endpoint, method, url_path, request_headers, stream)
            except requests.exceptions.SSLError as err:
                raise RegistryError(
                    f"TLS verification failed for {endpoint.host}: {_short_reason(err)}",
                    hint=f'install the registry\'s CA in the system store, or set ca_file under [registries."{endpoint.host}"] in the config file; insecure = true there allows plain HTTP',
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
                        raise RegistryError(f"cannot reach {endpoint.host}: {failure.cause}", hint=failure.hint) from None
                    self._sleep_before_retry(attempt, CONNECT_RETRY_DELAY, f"{endpoint.host}: {failure.cause}")
                    continue
                # Connected, then the connection broke or stalled: transient, retried with backoff.
                if attempt > settings.retries:
                    raise RegistryError(f"cannot reach {endpoint.host}: {_short_reason(err)}", hint="check the network, the registry name and any proxy settings") from None
                self._sleep_before_retry(attempt, None, f"{endpoint.host}: {_short_reason(err)}")
                continue
            except requests.RequestException as err:  # redirect loops, redirects to file://, ...
                raise RegistryError(f"{endpoint.host}: {type(err).__name__}: {_short_reason(err)}") from None
            if response.status_code == 401 and not authenticated_after_401 and _host_of(response.url) == endpoint.host.lower():
                # Only the registry's own challenge is answered: a 401 from a storage host it
                # redirected us to must never receive the registry's credentials.
                authenticated_after_401 = True
                challenge_header = response.headers.get("WWW-Authenticate", "")
                response.close()
                self._authenticate(endpoint, challenge_header, credentials_override, registry_key)
                continue
            if response.status_code in RETRY_STATUSES and attempt < settings.retries:
                attempt += 1
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                response.close()
                self._sleep_before_retry(attempt, retry_after, f"{endpoint.host} answered {response.status_code}")
                continue
            return response

    def _send(self, endpoint, method, url_path, headers, stream):
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
            except requests.ConnectionError as err:  # SSLError included: insecure registries may be plain HTTP
                last = err
        raise last

    def _ordered_schemes(self, endpoint):
        known = self._working_scheme.get(endpoint.host)
        if known in endpoint.schemes:
            return (known,) + tuple(s for s in endpoint.schemes if s != known)
        return endpoint.schemes

    def _sleep_before_retry(self, attempt, retry_after, why):
        delay = retry_after if retry_after is not None else self._settings.backoff * (2 ** (attempt - 1))
        delay = min(delay, self._settings.max_retry_after)
        log.info("%s; retry %d in %.1fs", why, attempt, delay)
        time.sleep(delay)

    def _raise_for_status(self, response, endpoint, what):
        status = response.status_code
        if status in (200, 206):
            return
        code = _error_code(response)
        if status == 404 or code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"):
            raise NotFound(f"{what} not found in {endpoint.describe()}" + (f" ({code})" if code else ""), hint="check the repository name and tag")
        if status in (401, 403):
            # Registries answer 401/403 both for "private" and for "no such repository", so that
            # anonymous users cannot probe names (distribution spec, "Error codes").
            has_credentials = self._credentials.lookup(self._credentials_key(endpoint), endpoint.repository) is not None
            raise AuthError(
                f"access to {endpoint.describe()} denied: the repository does not exist or needs other credentials",
                hint=("your stored credentials do not grant access; check the name, or log in again with `toolbox login " + endpoint.host + "`")
                if has_credentials
                else f"check the name; if the repository is private, run `toolbox login {endpoint.host}`",
            )
        if status in RETRY_STATUSES:
            raise RegistryError(f"{endpoint.host} kept failing ({status}) for {what}", hint="the registry is overloaded or down; try again later")
        raise RegistryError(f"{endpoint.host} answered {status} for {what}" + (f" ({code})" if code else ""))

    # -- authentication --------------------------------------------------------------------------
    def _credentials_key(self, endpoint):
        # Docker Hub's credentials are filed under docker.io, not its API host.
        return "docker.io" if endpoint.host == "registry-1.docker.io" else endpoint.host

    def _cached_auth(self, endpoint):
        with self._auth_lock:
            entry = self._auth.get((endpoint.host, endpoint.repository))
        if entry and (entry[1] is None or entry[1] > time.monotonic()):
            return entry[0]
        return None

    def _authenticate(self, endpoint, challenge_header, credentials_override=None, registry_key=None):
        challenges = parse_www_authenticate(challenge_header)
        credentials = credentials_override or self._credentials.lookup(registry_key or self._credentials_key(endpoint), endpoint.repository or None)
        for challenge in challenges:
            if challenge.scheme == "bearer" and challenge.param("realm"):
                header, expires = self._fetch_token(endpoint, challenge, credentials)
                break
            if challenge.scheme == "basic":
                if credentials is None:
                    raise AuthError(f"{endpoint.host} requires a user name and password", hint=f"run `toolbox login {endpoint.host}`")
                header, expires = credentials.basic_header(), None
                break
        else:
            raise AuthError(f"{endpoint.host} asked for authentication this client does not support ({challenge_header[:80]!r})")
        with self._auth_lock:
            self._auth[(endpoint.host, endpoint.repository)] = (header, expires)

    def _fetch_token(self, endpoint, challenge, credentials):
        realm = challenge.param("realm")
        scope = challenge.param("scope") or (f"repository:{endpoint.repository}:pull" if endpoint.repository else None)
        params = {"service": challenge.param("service")} if challenge.param("service") else {}
        if scope:
            params["scope"] = scope
        realm_scheme = urllib.parse.urlsplit(realm).scheme.lower()
        if realm_scheme not in ("http", "https"):
            raise AuthError(f"{endpoint.host} named a token server that is not an HTTP(S) URL: {realm[:100]!r}")
        if credentials is not None and realm_scheme == "http" and endpoint.verify is not False:
            # Never send a password in clear text to a token server of a registry that is
            # otherwise reached over verified HTTPS.
            raise AuthError(f"the token server {realm} of {endpoint.host} is plain HTTP; refusing to send credentials to it")
        verify = endpoint.verify
        timeout = (self._settings.connect_timeout, self._settings.read_timeout)
        try:
            if credentials is not None and credentials.identity_token:
                response = self._session.post(
                    realm,
                    data={**params, "grant_type": "refresh_token", "refresh_token": credentials.identity_token, "client_id": "toolbox"},
                    verify=verify,
                    timeout=timeout,
                )
            else:
                # Our own header: requests would encode a password as Latin-1 and fail (quoting
                # the character) on anything else; registries expect UTF-8.
                headers = {"Authorization": credentials.basic_header()} if credentials is not None else {}
                response = self._session.get(realm, params=params, headers=headers, verify=verify, timeout=timeout)
        except requests.RequestException as err:
            raise RegistryError(f"cannot reach the token server of {endpoint.host}: {_short_reason(err)}") from None
        with response:
            if response.status_code in (401, 403):
                if credentials is None:
                    raise AuthError(f"{endpoint.host} requires credentials for {endpoint.repository or 'this registry'}", hint=f"run `toolbox login {endpoint.host}`")
                raise AuthError(f"{endpoint.host} rejected the credentials of {credentials.username!r}", hint=f"log in again with `toolbox login {endpoint.host}`")
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
        seconds = expires_in if isinstance(expires_in, (int, float)) and expires_in > 0 else DEFAULT_TOKEN_SECONDS
        # Renew a little early so a token never expires between our check and the registry's.
        return f"Bearer {token}", time.monotonic() + max(seconds - 5, 1)


class BlobStream:
    """A file-like reader over one blob that checks what it delivers.

    Every byte is counted and hashed; the stream ends exactly at the descriptor's size; at the end
    the digest must match, else IntegrityError. A connection that breaks or stalls is resumed with
    a Range request (a server that ignores Range gets its first bytes skipped), a few times.
    """

    MAX_RESUMES = 5

    def __init__(self, client, endpoint, descriptor):
        self._client = client
        self._endpoint = endpoint
        self._descriptor = descriptor
        self._hasher = descriptor.digest.hasher()
        self._offset = 0
        self._resumes = 0
        self._verified = False
        self._response = client._open_blob_response(endpoint, descriptor.digest)

    @property
    def offset(self):
        return self._offset

    @property
    def size(self):
        return self._descriptor.size

    def read(self, n=-1):
        remaining = self._descriptor.size - self._offset
        if remaining <= 0:
            self._verify_once()
            return b""
        want = remaining if n is None or n < 0 else min(n, remaining)
        while True:
            try:
                # read1: what has arrived, up to `want`. read() would wait for all of `want` and,
                # when the connection stalls meanwhile, drop what it had already received.
                chunk = self._response.raw.read1(want, decode_content=False)
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as err:
                self._resume(f"connection broke: {_short_reason(err)}")
                continue
            if not chunk:
                self._resume("connection closed early")
                continue
            self._hasher.update(chunk)
            self._offset += len(chunk)
            if self._offset == self._descriptor.size:
                self._check_no_trailing_bytes()
                self._verify_once()
            return chunk

    def read_all(self, limit):
        if self._descriptor.size > limit:
            raise RegistryError(f"blob {self._descriptor.digest.short} is {self._descriptor.size} bytes, over the {limit}-byte limit")
        parts = []
        while True:
            chunk = self.read(CHUNK)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)

    def _check_no_trailing_bytes(self):
        # A server that sends more than the descriptor's size is sending something else.
        try:
            extra = self._response.raw.read(1, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError):
            extra = b""
        if extra:
            raise IntegrityError(
                f"blob {self._descriptor.digest} from {self._endpoint.describe()} is longer than its declared {self._descriptor.size} bytes",
                hint="the registry served wrong content; nothing was kept",
            )

    def _verify_once(self):
        if self._verified:
            return
        if self._hasher.hexdigest() != self._descriptor.digest.hex:
            raise IntegrityError(
                f"blob {self._descriptor.digest} from {self._endpoint.describe()} does not match its digest",
                hint="the registry or something between us and it altered the content; nothing was kept",
            )
        self._verified = True

    def _resume(self, why):
        self._response.close()
        while True:
            self._resumes += 1
            if self._resumes > self.MAX_RESUMES:
                raise RegistryError(f"download of blob {self._descriptor.digest.short} from {self._endpoint.host} failed: {why}", hint="the connection keeps breaking; try again later")
            log.info("blob %s: %s at byte %d; resuming", self._descriptor.digest.short, why, self._offset)
            response = self._client._open_blob_response(self._endpoint, self._descriptor.digest, self._offset)
            try:
                if response.status_code == 200 and self._offset:
                    self._skip(response, self._offset)  # the server ignored Range: read past what we have
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError, RegistryError) as err:
                response.close()
                why = f"connection broke while skipping to byte {self._offset}: {_short_reason(err)}"
                continue
            self._response = response
            return

    @staticmethod
    def _skip(response, count):
        while count:
            chunk = response.raw.read(min(count, CHUNK), decode_content=False)
            if not chunk:
                raise RegistryError("connection closed while skipping to the resume point")
            count -= len(chunk)

    def close(self):
        self._response.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _tags_of_page(data, endpoint):
    """The tags of one tags/list answer: {"name": ..., "tags": [...]} (tags may be null)."""
    import json

    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"{endpoint.describe()} answered its list of tags with something that is not JSON") from None
    tags = doc.get("tags") if isinstance(doc, dict) else None
    if tags is None and isinstance(doc, dict):
        return []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise RegistryError(f"{endpoint.describe()} answered a list of tags that is not a list of strings")
    return tags


def _next_page_query(link_header):
    """The query of the Link header's rel="next" URL (RFC 8288), or None. Only the query is
    taken: the next page is asked of the same endpoint, so a Link naming another host or path
    cannot lead the request (or our credentials) anywhere else."""
    if not link_header:
        return None
    for link in requests.utils.parse_header_links(link_header):
        if "next" in link.get("rel", "").split():
            return urllib.parse.urlsplit(link.get("url", "")).query or None
    return None


def _host_of(url):
    return urllib.parse.urlsplit(url).netloc.lower()


def _retry_after_seconds(value):
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_code(response):
    try:
        errors = response.json().get("errors") or []
        return errors[0].get("code") if errors and isinstance(errors[0], dict) else None
    except (ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class ConnectFailure:
    cause: str  # "connection refused", "name lookup failed (...)", ...
    hint: str


def connect_failure(err, connect_timeout):
    """Why no connection could be made, for a requests error raised before anything was sent
    (urllib3 raises NewConnectionError, NameResolutionError or ConnectTimeoutError only while
    connecting); None for a connection that broke or stalled once made."""
    chain = _exception_chain(err)
    proxy = isinstance(err, requests.exceptions.ProxyError)
    via = "the proxy: " if proxy else ""
    network_hint = "check the network connection" + (" and the proxy settings (HTTPS_PROXY, HTTP_PROXY)" if proxy else "")
    for cause in chain:
        if isinstance(cause, socket.gaierror):
            return ConnectFailure(f"{via}name lookup failed ({cause.strerror or cause})",
                                  f"check the name{' of the proxy' if proxy else ' of the registry'} and your DNS settings; {network_hint}")
    for cause in chain:
        if isinstance(cause, ConnectionRefusedError):
            return ConnectFailure(f"{via}connection refused",
                                  "nothing accepts connections at the proxy: check HTTPS_PROXY and HTTP_PROXY" if proxy else
                                  "nothing accepts connections there: check the host name and port, and that the registry is running")
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL) and cause.strerror:
            return ConnectFailure(f"{via}{cause.strerror.lower()}", network_hint)
    connecting = [c for c in chain if isinstance(c, (urllib3.exceptions.ConnectTimeoutError, requests.exceptions.ConnectTimeout))]
    if connecting and not any(isinstance(c, urllib3.exceptions.NewConnectionError) for c in connecting):
        return ConnectFailure(f"{via}no answer to connecting within {connect_timeout:g} s",
                              f"{network_hint}; TOOLBOX_CONNECT_TIMEOUT sets the wait (seconds)")
    if connecting:  # another reason the connection could not be made
        return ConnectFailure(f"{via}{_short_reason(err)}", network_hint)
    return None


def _exception_chain(err):
    """`err` and every exception inside it: urllib3's `reason`, exceptions in `args` (requests
    wraps urllib3's), and the causes Python chained (the socket error under urllib3's)."""
    found, pending = [], [err]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        reason = getattr(current, "reason", None)
        pending += [reason if isinstance(reason, BaseException) else None, current.__cause__, current.__context__]
        pending += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
    return found


# urllib3 puts the connection or the pool first in its messages ("HTTPSConnectionPool(host=
# 'x', port=443): Max retries exceeded with url: ... (Caused by ...)"); the host is in our own
# message already.
_POOL_PREFIX = re.compile(r"^\w*(Connection|ConnectionPool)\(host=[^)]*\):\s*")


def _short_reason(err, limit=200):
    """What a person can act on: the innermost reason of requests' and urllib3's nested errors,
    a system error's own text where there is one, within `limit` characters cut at a word."""
    chain = _exception_chain(err)
    system = [c for c in chain if isinstance(c, OSError) and c.strerror]
    reason = system[-1].strerror if system else _POOL_PREFIX.sub("", str(chain[-1])) or type(chain[-1]).__name__
    # Messages quote the URL (a redirect to file://, "Max retries exceeded with url: ...").
    reason = redact_query_values(reason)
    if len(reason) > limit:
        reason = reason[:limit].rsplit(" ", 1)[0] + " …"
    return reason
