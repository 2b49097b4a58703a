"""Where a repository can be read from: the registry's mirrors first, then the registry itself
(Docker Hub's API host is registry-1.docker.io), each with the schemes to try and the CA to
verify it against (the system CA store, a configured CA file, or none for insecure registries).

The settings come from the user's config file; this module needs only the few fields below
(oci is below project in the dependency order, so it names them instead of importing them).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Protocol

from toolbox.oci.reference import ImageRef


class MirrorSettings(Protocol):
    host: str
    path_prefix: str
    scheme: str | None  # from an explicit http:// or https:// in the config


class RegistrySettings(Protocol):
    mirrors: tuple[MirrorSettings, ...]
    insecure: bool
    ca_file: str | None


class RegistryConfig(Protocol):
    def registry(self, host: str) -> RegistrySettings: ...


@dataclass(frozen=True)
class Endpoint:
    """Where one repository can be read from: the registry itself or one of its mirrors."""

    host: str
    repository: str
    schemes: tuple[str, ...]  # tried in order; insecure registries fall back from https to http
    verify: bool | str  # requests' verify: True, False or a CA bundle path
    is_mirror: bool = False

    def describe(self) -> str:
        return f"{self.host}/{self.repository}" + (" (mirror)" if self.is_mirror else "")


def endpoints_for(config: RegistryConfig, ref: ImageRef) -> list[Endpoint]:
    """The mirrors of `ref`'s registry, in the configured order, then the registry itself."""
    registry = config.registry(ref.registry)
    endpoints = []
    for mirror in registry.mirrors:
        repository = f"{mirror.path_prefix}/{ref.repository}" if mirror.path_prefix else ref.repository
        endpoints.append(endpoint_for(config, mirror.host, repository, is_mirror=True, scheme=mirror.scheme))
    endpoints.append(endpoint_for(config, ref.endpoint_host, ref.repository, registry_key=ref.registry))
    return endpoints


def endpoint_for(config: RegistryConfig, host: str, repository: str, is_mirror: bool = False,
                 scheme: str | None = None, registry_key: str | None = None) -> Endpoint:
    """`host` serving `repository`, with the settings of `registry_key` (default: the host's own)."""
    settings = config.registry(registry_key or host)
    if scheme:  # a mirror written as http://… or https://… in the config: the user chose
        schemes = (scheme,)
    elif settings.insecure:
        schemes = ("https", "http")  # as Docker does: try TLS first, fall back to plain HTTP
    else:
        schemes = ("https",)
    verify = False if settings.insecure else (settings.ca_file or _certs_d_ca(host) or system_ca_bundle())
    return Endpoint(host, repository, schemes, verify, is_mirror)


def system_ca_bundle() -> str | bool:
    """The system's CA store (so a corporate CA installed there works), not certifi's copy."""
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if os.environ.get(var) and os.path.exists(os.environ[var]):
            return os.environ[var]
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt",
                      "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and os.path.exists(candidate):
            return candidate
    return True


def _certs_d_ca(host: str) -> str | None:
    """containers-certs.d(5) and Docker's certs.d: a per-registry CA dropped in by an admin."""
    home = os.path.expanduser("~")
    for base in (os.path.join(home, ".config", "containers", "certs.d"), "/etc/containers/certs.d",
                 "/etc/docker/certs.d"):
        candidate = os.path.join(base, host, "ca.crt")
        if os.path.isfile(candidate):
            return candidate
    return None
