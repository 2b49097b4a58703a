"""OCI and Docker manifests, indexes and image configs, parsed into small frozen values.

Accepted: OCI image index and manifest (image-spec v1), Docker schema 2 manifest list and manifest.
Refused with a clear message: Docker schema 1 (deprecated in 2015 and unverifiable by digest),
foreign/non-distributable layers, and anything else we cannot run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from toolbox.errors import InvalidReference, NotFound, UnsupportedImage
from toolbox.oci.digest import Digest
from toolbox.oci.platform import Platform

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
# The Accept header for manifest requests: everything we can parse, most preferred first.
ACCEPT_MANIFESTS = ", ".join(INDEX_TYPES + MANIFEST_TYPES)

LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
}
FOREIGN_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
}

# Manifests are small; distribution itself refuses to store ones over 4 MiB. A larger answer is
# an attack or a mistake, and we will not hold it in memory.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_CONFIG_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: tuple = ()

    @classmethod
    def from_json(cls, data: object, where: str) -> Descriptor:
        if not isinstance(data, dict):
            raise UnsupportedImage(f"{where}: a descriptor is not a JSON object")
        if not isinstance(data.get("digest"), str):
            raise UnsupportedImage(f"{where}: a descriptor has no digest")
        try:
            digest = Digest.parse(data["digest"])
        except InvalidReference as err:
            raise UnsupportedImage(f"{where}: {err}") from None
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise UnsupportedImage(f"{where}: descriptor {digest} has no valid size")
        platform = data.get("platform")
        annotations = data.get("annotations") or {}
        return cls(
            media_type=str(data.get("mediaType") or ""),
            digest=digest,
            size=size,
            platform=Platform.from_descriptor(platform) if isinstance(platform, dict) else None,
            annotations=(tuple(sorted((str(k), str(v)) for k, v in annotations.items()))
                         if isinstance(annotations, dict) else ()),
        )

    def annotation(self, key: str) -> str | None:
        return dict(self.annotations).get(key)


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple

    def runnable_entries(self) -> Iterator[Descriptor]:
        """Entries that are images for some platform, not attestations or signatures."""
        for entry in self.manifests:
            if entry.annotation("vnd.docker.reference.type") == "attestation-manifest":
                continue
            if entry.platform is None or entry.platform.os == "unknown":
                continue
            yield entry

    def select(self, platform: Platform) -> Descriptor:
        candidates = [e for e in self.runnable_entries() if platform.matches(e.platform)]
        if not candidates:
            available = ", ".join(sorted({str(e.platform) for e in self.runnable_entries()})) or "none"
            raise NotFound(
                f"no image for platform {platform} in this index (available: {available})",
                hint="choose one of the available platforms with --platform",
            )
        # Prefer the exact variant when several match (e.g. arm/v7 over arm/v6).
        exact = [e for e in candidates if e.platform == platform]
        return (exact or candidates)[0]


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple

    @property
    def compressed_size(self) -> int:
        return sum(layer.size for layer in self.layers)


@dataclass(frozen=True)
class ImageConfig:
    platform: Platform
    diff_ids: tuple
    entrypoint: tuple | None = None
    cmd: tuple | None = None
    env: tuple = ()
    working_dir: str = ""
    user: str = ""
    labels: tuple = ()
    created: str | None = None
    stop_signal: str | None = None
    exposed_ports: tuple = field(default_factory=tuple)
    volumes: tuple = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": str(self.platform),
            "entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
            "cmd": list(self.cmd) if self.cmd is not None else None,
            "env": list(self.env),
            "working_dir": self.working_dir,
            "user": self.user,
            "labels": dict(self.labels),
            "created": self.created,
            "stop_signal": self.stop_signal,
            "exposed_ports": list(self.exposed_ports),
            "volumes": list(self.volumes),
            "diff_ids": [str(d) for d in self.diff_ids],
        }


def _load_json(data, what):
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise UnsupportedImage(f"{what} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise UnsupportedImage(f"{what} is not a JSON object")
    return value


def parse_manifest(data: bytes, content_type: str | None = None, what: str = "manifest") -> Index | Manifest:
    """Parse a manifest or an index. `content_type` is the registry's Content-Type header, used
    only when the document does not carry its own mediaType (OCI documents may omit it)."""
    if len(data) > MAX_MANIFEST_SIZE:
        raise UnsupportedImage(f"{what} is {len(data)} bytes, over the {MAX_MANIFEST_SIZE}-byte limit")
    doc = _load_json(data, what)
    media_type = doc.get("mediaType") or (content_type or "").split(";")[0].strip()
    if not media_type:
        # OCI lets both omit mediaType; the shape tells them apart.
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise UnsupportedImage(
            f"{what} uses Docker image manifest schema 1, which toolbox does not support",
            hint="schema 1 was deprecated in 2015; push the image again with a current Docker, podman or "
                 "skopeo",
        )
    if doc.get("schemaVersion") != 2:
        raise UnsupportedImage(f"{what} has schemaVersion {doc.get('schemaVersion')!r}; expected 2")
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise UnsupportedImage(f"{what}: index has no 'manifests' list")
        return Index(media_type, tuple(Descriptor.from_json(e, what) for e in entries))
    if media_type in MANIFEST_TYPES:
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise UnsupportedImage(f"{what}: manifest has no 'layers' list")
        manifest = Manifest(
            media_type,
            Descriptor.from_json(doc.get("config"), what),
            tuple(Descriptor.from_json(layer, what) for layer in layers),
        )
        _check_layer_types(manifest, what)
        return manifest
    raise UnsupportedImage(f"{what} has media type {media_type!r}, which is not an image manifest or index")


def _check_layer_types(manifest, what):
    for layer in manifest.layers:
        if layer.media_type in FOREIGN_LAYER_TYPES:
            raise UnsupportedImage(
                f"{what}: layer {layer.digest.short} is a foreign (non-distributable) layer",
                hint="such layers are for Windows images; toolbox runs Linux images",
            )
        if layer.media_type not in LAYER_TYPES:
            raise UnsupportedImage(f"{what}: layer {layer.digest.short} has unsupported media type "
                                   f"{layer.media_type!r}")


def _string_list(value, key, what):
    if value is None:
        return None
    if isinstance(value, str):  # tolerated: some builders write a bare string
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UnsupportedImage(f"{what}: {key} must be a list of strings")
    return tuple(value)


def parse_config(data: bytes, what: str = "image config") -> ImageConfig:
    if len(data) > MAX_CONFIG_SIZE:
        raise UnsupportedImage(f"{what} is {len(data)} bytes, over the {MAX_CONFIG_SIZE}-byte limit")
    doc = _load_json(data, what)
    rootfs = doc.get("rootfs") or {}
    raw_ids = rootfs.get("diff_ids")
    if not isinstance(raw_ids, list):
        raise UnsupportedImage(f"{what} has no rootfs.diff_ids")
    try:
        diff_ids = tuple(Digest.parse(d) for d in raw_ids)
    except InvalidReference as err:
        raise UnsupportedImage(f"{what}: {err}") from None
    run = doc.get("config") or {}
    if not isinstance(run, dict):
        raise UnsupportedImage(f"{what}: 'config' is not an object")
    labels = run.get("Labels") or {}
    return ImageConfig(
        platform=Platform(str(doc.get("os") or ""), str(doc.get("architecture") or ""),
                          doc.get("variant") or None),
        diff_ids=diff_ids,
        entrypoint=_string_list(run.get("Entrypoint"), "Entrypoint", what),
        cmd=_string_list(run.get("Cmd"), "Cmd", what),
        env=_string_list(run.get("Env"), "Env", what) or (),
        working_dir=str(run.get("WorkingDir") or ""),
        user=str(run.get("User") or ""),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())) if isinstance(labels, dict) else (),
        created=doc.get("created") if isinstance(doc.get("created"), str) else None,
        stop_signal=run.get("StopSignal") if isinstance(run.get("StopSignal"), str) else None,
        exposed_ports=(tuple(sorted(run.get("ExposedPorts") or {}))
                       if isinstance(run.get("ExposedPorts"), dict) else ()),
        volumes=tuple(sorted(run.get("Volumes") or {})) if isinstance(run.get("Volumes"), dict) else (),
    )


def check_config_matches(manifest: Manifest, config: ImageConfig, what: str = "image") -> None:
    if len(config.diff_ids) != len(manifest.layers):
        raise UnsupportedImage(
            f"{what}: the manifest lists {len(manifest.layers)} layers but the config lists "
            f"{len(config.diff_ids)} diff_ids"
        )
