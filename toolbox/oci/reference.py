"""Image references, normalised the way Docker does it (distribution/reference grammar).

`jq` is `docker.io/library/jq:latest`; `ghcr.io/jqlang/jq:1.7.1` keeps its registry; a reference
may carry a tag, a digest, or both (`name:tag@digest`, where the digest wins when pulling).
All defaulting lives here and nowhere else, and so does Docker Hub's naming: the one registry
known by several names (docker.io in references, registry-1.docker.io for its API,
index.docker.io and https://index.docker.io/v1/ in Docker's config.json).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from toolbox.errors import InvalidReference
from toolbox.oci.digest import Digest

DEFAULT_TAG = "latest"

# Docker Hub's names. toolbox calls it docker.io everywhere: in references, in the config file and
# when it looks up credentials.
DOCKER_HUB = "docker.io"
# The host that serves Docker Hub's registry API (docker.io itself does not).
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
# The old name of Docker Hub, which distribution/reference rewrites to docker.io in references.
DOCKER_HUB_LEGACY = "index.docker.io"
DOCKER_HUB_NAMES = (DOCKER_HUB, DOCKER_HUB_LEGACY, DOCKER_HUB_ENDPOINT)
# Docker files a Docker Hub login under the URL of the v1 index, in `auths` and with credential
# helpers (its registry.IndexServer).
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"
# The keys a credential helper may have filed Docker Hub under (credHelpers), most usual first.
DOCKER_HUB_CREDENTIAL_KEYS = (DOCKER_HUB_SERVER_URL, DOCKER_HUB_LEGACY, DOCKER_HUB, DOCKER_HUB_ENDPOINT,
                              "https://index.docker.io/v1", "https://registry-1.docker.io")

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_COMPONENT_RE = re.compile(rf"^{_COMPONENT}$")
_DOMAIN_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_MAX_NAME_LENGTH = 255


def is_docker_hub(registry: str) -> bool:
    """Whether `registry` (a lowercase host) is one of Docker Hub's names."""
    return registry in DOCKER_HUB_NAMES


def canonical_registry(host: str) -> str:
    """The name a registry is known by in references, the config file and the credentials: the
    host in lowercase, docker.io for any of Docker Hub's names."""
    host = host.lower()
    return DOCKER_HUB if is_docker_hub(host) else host


def api_host(registry: str) -> str:
    """The host that serves `registry`'s API: Docker Hub's is not at docker.io."""
    return DOCKER_HUB_ENDPOINT if registry == DOCKER_HUB else registry


def registry_of_api_host(host: str) -> str:
    """The registry an API host serves (the reverse of `api_host`): what its credentials are filed
    under."""
    return DOCKER_HUB if host == DOCKER_HUB_ENDPOINT else host


def credential_keys(registry: str) -> tuple[str, ...]:
    """The keys Docker's config.json (credHelpers) may file `registry` (lowercase) under."""
    if is_docker_hub(registry):
        return DOCKER_HUB_CREDENTIAL_KEYS
    return (registry, f"https://{registry}", f"http://{registry}")


def credential_server_url(registry: str) -> str:
    """How Docker names `registry` (lowercase) to credential helpers and in `auths` when it
    stores a login."""
    return DOCKER_HUB_SERVER_URL if is_docker_hub(registry) else registry


def _looks_like_domain(component: str) -> bool:
    # distribution/reference: the first component is a registry host if it has a dot or a port,
    # or is "localhost"; otherwise it is part of a Docker Hub repository name.
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


@dataclass(frozen=True)
class ImageRef:
    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        original = text
        if not text or text != text.strip():
            raise InvalidReference(f"invalid image reference {original!r}: empty or surrounded by spaces")
        digest = None
        if "@" in text:
            text, _, digest_text = text.partition("@")
            try:
                digest = Digest.parse(digest_text)
            except InvalidReference as err:
                raise InvalidReference(f"invalid image reference {original!r}: {err}",
                                       hint=err.hint) from None

        tag = None
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:  # a colon after the last slash is a tag, not a port
            text, tag = text[:colon], text[colon + 1 :]
            if not _TAG_RE.match(tag):
                raise InvalidReference(
                    f"invalid tag {tag!r} in {original!r}",
                    hint="a tag is up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
                )

        registry, _, rest = text.partition("/")
        if not rest or not _looks_like_domain(registry):
            registry, rest = DOCKER_HUB, text
        elif not _DOMAIN_RE.match(registry):
            raise InvalidReference(f"invalid registry host {registry!r} in {original!r}")
        if registry == DOCKER_HUB_LEGACY:  # as distribution/reference does: before lowercasing
            registry = DOCKER_HUB
        registry = registry.lower()
        if registry == DOCKER_HUB and "/" not in rest:
            rest = f"library/{rest}"

        for component in rest.split("/"):
            if not _COMPONENT_RE.match(component):
                if component.lower() != component and _COMPONENT_RE.match(component.lower()):
                    raise InvalidReference(f"invalid image reference {original!r}: repository names must be "
                                           "lowercase")
                raise InvalidReference(
                    f"invalid image reference {original!r}: bad name component {component!r}",
                    hint="names are lowercase letters and digits, separated by '.', '_', '__' or '-', with "
                         "'/' between components",
                )
        if len(registry) + 1 + len(rest) > _MAX_NAME_LENGTH:
            raise InvalidReference(f"invalid image reference {original!r}: name longer than "
                                   f"{_MAX_NAME_LENGTH} characters")
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry, rest, tag, digest)

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def endpoint_host(self) -> str:
        """The host that serves the registry API (Docker Hub's API is not at docker.io)."""
        return api_host(self.registry)

    @property
    def reference(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest if known, else the tag."""
        return str(self.digest) if self.digest else self.tag

    def with_digest(self, digest: Digest) -> ImageRef:
        return ImageRef(self.registry, self.repository, self.tag, digest)

    def with_tag(self, tag: str) -> ImageRef:
        return ImageRef(self.registry, self.repository, tag, None)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
