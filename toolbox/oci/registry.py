"""A client for the OCI distribution API: manifests, blobs and tags, nothing about disk.

What it takes care of (the HTTP side, with mirrors, TLS, retries and authentication, is
transport.py's):
- manifests read within a size limit and checked against the digest asked for, or the one the
  registry announced;
- blob streams that count and hash every byte, resume with a Range request after a broken
  connection, and raise IntegrityError when the size or digest is wrong;
- a repository's tags (tags/list), page after page as the Link header leads;
- checking a login against the registry's /v2/, as `docker login` does.

The caller (the pull use case and the store) decides what to keep; nothing here writes files.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass

import requests
import urllib3

from toolbox.errors import AuthError, IntegrityError, NotFound, RegistryError
from toolbox.oci.auth import Credentials, CredentialStore
from toolbox.oci.digest import Digest
from toolbox.oci.endpoints import Endpoint, RegistryConfig
from toolbox.oci.manifest import ACCEPT_MANIFESTS, MAX_MANIFEST_SIZE, Descriptor
from toolbox.oci.network_errors import short_reason
from toolbox.oci.reference import ImageRef
from toolbox.oci.transport import CHUNK, ClientSettings, RegistryTransport

log = logging.getLogger(__name__)

# tags/list: one page is JSON of at most this many bytes, and a repository at most this many
# pages (100,000 tags at 100 a page: far more than the busiest image repositories have).
MAX_TAGS_PAGE_BYTES = 4 * 1024 * 1024
MAX_TAGS_PAGES = 1000


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    content_type: str
    digest: Digest
    endpoint: Endpoint


class RegistryClient:
    def __init__(self, config: RegistryConfig, credentials: CredentialStore,
                 settings: ClientSettings | None = None) -> None:
        self._transport = RegistryTransport(config, credentials, settings)

    def close(self) -> None:
        self._transport.close()

    def endpoints(self, ref: ImageRef) -> list[Endpoint]:
        """Where `ref` can be read from: its registry's mirrors, then the registry itself."""
        return self._transport.endpoints(ref)

    # -- manifests -----------------------------------------------------------------------------
    def get_manifest(self, ref: ImageRef, reference: str | None = None) -> FetchedManifest:
        """Fetch the manifest or index named by `reference` (a tag or digest string; default: the
        reference's own digest or tag), trying mirrors first."""
        reference = reference or ref.reference
        return self._transport.first_answer(ref,
                                            lambda endpoint: self._get_manifest(endpoint, ref, reference))

    def _get_manifest(self, endpoint: Endpoint, ref: ImageRef, reference: str) -> FetchedManifest:
        response = self._transport.request(endpoint, "GET", f"manifests/{reference}",
                                           headers={"Accept": ACCEPT_MANIFESTS}, stream=True)
        what = (f"manifest {reference}" if reference.startswith(("sha256:", "sha512:"))
                else f"tag {reference!r}")
        with response:
            self._transport.raise_for_status(response, endpoint, what)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_MANIFEST_SIZE:
                raise RegistryError(f"manifest {reference} from {endpoint.describe()} is {declared} bytes, "
                                    f"over the {MAX_MANIFEST_SIZE}-byte limit")
            data = self._read_limited(response, MAX_MANIFEST_SIZE, f"manifest {reference}")
        digest = self._verify_manifest_digest(data, reference, response, endpoint)
        return FetchedManifest(data, response.headers.get("Content-Type", ""), digest, endpoint)

    @staticmethod
    def _read_limited(response: requests.Response, limit: int, what: str) -> bytes:
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
    def _verify_manifest_digest(data: bytes, reference: str, response: requests.Response,
                                endpoint: Endpoint) -> Digest:
        if reference.startswith(("sha256:", "sha512:")):
            wanted = Digest.parse(reference)
            if not wanted.matches(data):
                raise IntegrityError(f"manifest from {endpoint.describe()} "
                                     f"does not match its digest {wanted}",
                                     hint="the registry or something between us and it altered the content")
            return wanted
        digest = Digest.of_bytes(data)
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced.startswith("sha256:") and announced != str(digest):
            raise IntegrityError(f"manifest {reference} from {endpoint.describe()} does not match the digest "
                                 f"the registry announced ({announced})")
        return digest

    # -- tags ------------------------------------------------------------------------------------
    def list_tags(self, ref: ImageRef, page_size: int | None = None) -> list[str]:
        """Every tag of `ref`'s repository, in the registry's order (distribution spec, "Listing
        Tags"), mirrors first. `page_size` asks for pages of that many (`n`); without it the
        registry chooses. Either way, a registry that pages says where the next page is in a
        Link header (`<...?last=x&n=100>; rel="next"`), followed until there is none."""
        return self._transport.first_answer(ref, lambda endpoint: self._list_tags(endpoint, page_size))

    def _list_tags(self, endpoint: Endpoint, page_size: int | None) -> list[str]:
        query = f"n={page_size}" if page_size else ""
        tags, asked = [], set()
        for _page in range(MAX_TAGS_PAGES):
            asked.add(query)
            response = self._transport.request(endpoint, "GET", "tags/list" + (f"?{query}" if query else ""),
                                               stream=True)
            with response:
                self._transport.raise_for_status(response, endpoint, "the list of tags")
                data = self._read_limited(response, MAX_TAGS_PAGE_BYTES,
                                          f"the list of tags of {endpoint.describe()}")
                link = response.headers.get("Link", "")
            tags += _tags_of_page(data, endpoint)
            query = _next_page_query(link)
            if query is None or query in asked:  # the last page (or a registry sending us in a circle)
                return list(dict.fromkeys(tags))
        raise RegistryError(f"{endpoint.describe()} lists its tags in more than {MAX_TAGS_PAGES} pages",
                            hint="the registry keeps sending a next page; try again later")

    # -- blobs -----------------------------------------------------------------------------------
    def get_blob_bytes(self, ref: ImageRef, descriptor: Descriptor, endpoint: Endpoint | None = None,
                       limit: int | None = None) -> bytes:
        """A small blob (a config) read whole and verified."""
        with self.open_blob(ref, descriptor, endpoint) as stream:
            data = stream.read_all(limit or descriptor.size)
        return data

    def open_blob(self, ref: ImageRef, descriptor: Descriptor,
                  endpoint: Endpoint | None = None) -> BlobStream:
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
                log.info("blob %s not available from %s (%s); trying the next endpoint",
                         descriptor.digest.short, candidate.describe(), err)
                last_error = err
        raise last_error

    def _open_blob_response(self, endpoint: Endpoint, digest: Digest, offset: int = 0) -> requests.Response:
        # identity: the digest is over the blob's own bytes, and we read them undecoded.
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
        response = self._transport.request(endpoint, "GET", f"blobs/{digest}", headers=headers, stream=True)
        if response.status_code not in (200, 206):
            with response:
                self._transport.raise_for_status(response, endpoint, f"blob {digest.short}")
        return response

    # -- login -----------------------------------------------------------------------------------
    def check_login(self, registry_host: str, credentials: Credentials) -> None:
        """Ask the registry's /v2/ with these credentials, as `docker login` does."""
        # The endpoint rules (insecure, CA) of the registry itself; no mirrors for logins.
        fake_ref = ImageRef.parse(f"{registry_host}/login-check")
        endpoint = self._transport.registry_endpoint(fake_ref)
        response = self._transport.request(endpoint, "GET", "", credentials_override=credentials,
                                           registry_key=fake_ref.registry)
        with response:
            if response.status_code in (401, 403):
                raise AuthError(f"{registry_host} rejected the credentials for {credentials.username!r}",
                                hint="check the user name and password (or token)")
            self._transport.raise_for_status(response, endpoint, "/v2/")


class BlobStream:
    """A file-like reader over one blob that checks what it delivers.

    Every byte is counted and hashed; the stream ends exactly at the descriptor's size; at the end
    the digest must match, else IntegrityError. A connection that breaks or stalls is resumed with
    a Range request (a server that ignores Range gets its first bytes skipped), a few times.
    """

    MAX_RESUMES = 5

    def __init__(self, client: RegistryClient, endpoint: Endpoint, descriptor: Descriptor) -> None:
        self._client = client
        self._endpoint = endpoint
        self._descriptor = descriptor
        self._hasher = descriptor.digest.hasher()
        self._offset = 0
        self._resumes = 0
        self._verified = False
        self._response = client._open_blob_response(endpoint, descriptor.digest)

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def size(self) -> int:
        return self._descriptor.size

    def read(self, n: int | None = -1) -> bytes:
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
                self._resume(f"connection broke: {short_reason(err)}")
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

    def read_all(self, limit: int) -> bytes:
        if self._descriptor.size > limit:
            raise RegistryError(f"blob {self._descriptor.digest.short} is {self._descriptor.size} bytes, "
                                f"over the {limit}-byte limit")
        parts = []
        while True:
            chunk = self.read(CHUNK)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)

    def _check_no_trailing_bytes(self) -> None:
        # A server that sends more than the descriptor's size is sending something else.
        try:
            extra = self._response.raw.read(1, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError):
            extra = b""
        if extra:
            raise IntegrityError(
                f"blob {self._descriptor.digest} from {self._endpoint.describe()} is longer than its "
                f"declared {self._descriptor.size} bytes",
                hint="the registry served wrong content; nothing was kept",
            )

    def _verify_once(self) -> None:
        if self._verified:
            return
        if self._hasher.hexdigest() != self._descriptor.digest.hex:
            raise IntegrityError(
                f"blob {self._descriptor.digest} from {self._endpoint.describe()} does not match its digest",
                hint="the registry or something between us and it altered the content; nothing was kept",
            )
        self._verified = True

    def _resume(self, why: str) -> None:
        self._response.close()
        while True:
            self._resumes += 1
            if self._resumes > self.MAX_RESUMES:
                raise RegistryError(f"download of blob {self._descriptor.digest.short} from "
                                    f"{self._endpoint.host} failed: {why}",
                                    hint="the connection keeps breaking; try again later")
            log.info("blob %s: %s at byte %d; resuming", self._descriptor.digest.short, why, self._offset)
            response = self._client._open_blob_response(self._endpoint, self._descriptor.digest, self._offset)
            try:
                if response.status_code == 200 and self._offset:
                    self._skip(response, self._offset)  # the server ignored Range: read past what we have
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError, RegistryError) as err:
                response.close()
                why = f"connection broke while skipping to byte {self._offset}: {short_reason(err)}"
                continue
            self._response = response
            return

    @staticmethod
    def _skip(response: requests.Response, count: int) -> None:
        while count:
            chunk = response.raw.read(min(count, CHUNK), decode_content=False)
            if not chunk:
                raise RegistryError("connection closed while skipping to the resume point")
            count -= len(chunk)

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tags_of_page(data: bytes, endpoint: Endpoint) -> list[str]:
    """The tags of one tags/list answer: {"name": ..., "tags": [...]} (tags may be null)."""
    import json

    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"{endpoint.describe()} answered its list of tags "
                            "with something that is not JSON") from None
    tags = doc.get("tags") if isinstance(doc, dict) else None
    if tags is None and isinstance(doc, dict):
        return []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise RegistryError(f"{endpoint.describe()} answered a list of tags that is not a list of strings")
    return tags


def _next_page_query(link_header: str) -> str | None:
    """The query of the Link header's rel="next" URL (RFC 8288), or None. Only the query is
    taken: the next page is asked of the same endpoint, so a Link naming another host or path
    cannot lead the request (or our credentials) anywhere else."""
    if not link_header:
        return None
    for link in requests.utils.parse_header_links(link_header):
        if "next" in link.get("rel", "").split():
            return urllib.parse.urlsplit(link.get("url", "")).query or None
    return None
