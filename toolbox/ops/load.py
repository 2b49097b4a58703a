"""Load images from a file instead of a registry: a `docker save` archive, or an OCI image layout
(a directory or a tar of one). Offline, and verified like a pull: blob digests where the format
names them, and always the config's diff_ids."""

import json
import os
import stat
import tarfile
from dataclasses import dataclass

from toolbox.errors import IntegrityError, InvalidReference, ToolboxError, UnsupportedImage
from toolbox.oci.digest import Digest
from toolbox.oci.manifest import (
    MAX_CONFIG_SIZE,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    check_config_matches,
    parse_config,
    parse_manifest,
)
from toolbox.oci.platform import host_platform
from toolbox.oci.reference import ImageRef
from toolbox.ops.pull import NullProgress, PullOptions, fetch_layers, plan_layers
from toolbox.store.store import ImageRecord, now_utc

UNCOMPRESSED_LAYER = "application/vnd.oci.image.layer.v1.tar"


class DirectorySource:
    def __init__(self, path):
        self._root = os.path.realpath(path)

    def _path(self, name):
        full = os.path.realpath(os.path.join(self._root, name))
        if not full.startswith(self._root + os.sep):
            raise UnsupportedImage(f"{name!r} points outside {self._root}")
        return full

    def exists(self, name):
        return os.path.isfile(self._path(name))

    def open(self, name):
        """A regular file of the layout, opened without blocking: a FIFO planted in a layout
        directory would hang the load, a device would never end."""
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise _missing(self._root, name) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsupportedImage(f"{name} in {self._root} is not a regular file",
                                   hint="the layout is damaged; save or copy the image again")
        return os.fdopen(fd, "rb")

    def size(self, name):
        if not self.exists(name):
            raise _missing(self._root, name)
        return os.path.getsize(self._path(name))

    def close(self):
        pass


class TarSource:
    """Random access to the members of a tar archive. Each opened member gets its own file
    handle, so layers can be read in parallel."""

    def __init__(self, path):
        self._path = path
        try:
            with tarfile.open(path, "r:") as tar:  # uncompressed only: members must be seekable
                self._members = {os.path.normpath(m.name.lstrip("/")): m for m in tar.getmembers()
                                 if m.isfile() and not m.issparse()}
        except (tarfile.TarError, OSError) as err:
            raise _unreadable_archive(path, err) from None

    def _member(self, name):
        member = self._members.get(os.path.normpath(name))
        if member is None:
            raise _missing(self._path, name)
        return member

    def exists(self, name):
        return os.path.normpath(name) in self._members

    def open(self, name):
        member = self._member(name)
        file = open(self._path, "rb")
        file.seek(member.offset_data)
        return _BoundedReader(file, member.size)

    def size(self, name):
        return self._member(name).size

    def close(self):
        pass


# gzip, zstd, xz, bzip2: what `docker save | gzip` and friends make.
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"BZh")


def _unreadable_archive(path, err):
    # tarfile notices a member cut off by the end of the file ("unexpected end of data").
    try:
        with open(path, "rb") as file:
            compressed = file.read(8).startswith(_COMPRESSED_MAGIC)
    except OSError:
        compressed = False
    if compressed:
        return UnsupportedImage(f"{path} is not an uncompressed tar archive: {err}",
                                hint="decompress it first (e.g. gunzip), then load the .tar")
    return UnsupportedImage(f"{path} is not a tar archive, or is truncated: {err}",
                            hint="the archive is damaged or was cut off; save or copy the image again")


def _missing(source, name):
    return UnsupportedImage(f"{source} has no {name}",
                            hint="the archive or layout is incomplete; save or copy the image again")


class _BoundedReader:
    def __init__(self, file, size):
        self._file = file
        self._left = size

    def read(self, n=-1):
        if n is None or n < 0 or n > self._left:
            n = self._left
        data = self._file.read(n)
        self._left -= len(data)
        return data

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalBlob:
    """Reads a blob from the archive, checking its size and digest at the end like BlobStream."""

    def __init__(self, file, descriptor):
        self._file = file
        self._descriptor = descriptor
        self._hasher = descriptor.digest.hasher()
        self._count = 0

    def read(self, n=-1):
        data = self._file.read(n)
        self._hasher.update(data)
        self._count += len(data)
        if not data or (n and n < 0):
            self._check()
        return data

    def _check(self):
        if self._count != self._descriptor.size or self._hasher.hexdigest() != self._descriptor.digest.hex:
            raise IntegrityError(f"blob {self._descriptor.digest} in the archive does not match its digest "
                                 "or size", hint="the archive is damaged or was altered")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


@dataclass(frozen=True)
class LoadedImage:
    reference: str
    manifest: Manifest
    manifest_bytes: bytes
    config_bytes: bytes
    blob_paths: dict  # Digest -> member name


def open_source(path):
    if os.path.isdir(path):
        return DirectorySource(path)
    if os.path.isfile(path):
        return TarSource(path)
    raise ToolboxError(f"{path}: no such file or directory",
                       hint="give the path of a `docker save` archive, or of an OCI image layout (a "
                            "directory or a tar)")


def load_images(path, *, store, name=None, platform=None, options=None, progress=None):
    options = options or PullOptions()
    progress = progress or NullProgress()
    source = open_source(path)
    try:
        if source.exists("oci-layout") and source.exists("index.json"):
            images = list(_oci_layout_images(source, name, platform or host_platform(), path))
        elif source.exists("manifest.json"):
            images = list(_docker_archive_images(source, name, path))
        else:
            raise UnsupportedImage(f"{path} is neither a `docker save` archive nor an OCI image layout",
                                   hint="expected manifest.json, or oci-layout and index.json, at its top")
        if not images:
            raise UnsupportedImage(f"{path} contains no images")
        store.prepare()
        with store.shared_lock():
            return [_store_image(image, source, store, options, progress) for image in images]
    finally:
        source.close()


def _store_image(image, source, store, options, progress):
    config = parse_config(image.config_bytes, what=f"config of {image.reference}")
    check_config_matches(image.manifest, config, what=image.reference)
    manifest_digest = Digest.of_bytes(image.manifest_bytes)
    plans = plan_layers(store, image.manifest, config)
    progress.resolved(image.reference, manifest_digest, config.platform, plans)

    def open_blob(descriptor):
        return LocalBlob(source.open(image.blob_paths[descriptor.digest]), descriptor)

    fetch_layers(plans, store, open_blob, options, progress, image.reference)
    store.put_blob(image.manifest.config.digest, image.config_bytes)
    store.put_blob(manifest_digest, image.manifest_bytes)
    record = ImageRecord(image.reference, manifest_digest, str(config.platform), now_utc(), source="load")
    store.put_image(record)
    return record


def _reference(text, what):
    try:
        return str(ImageRef.parse(text))
    except InvalidReference as err:
        raise UnsupportedImage(f"{what}: {err}", hint="name the image: toolbox load FILE NAME") from None


def _blob_name(descriptor):
    return f"blobs/{descriptor.digest.algorithm}/{descriptor.digest.hex}"


def _read_verified(source, descriptor):
    name = _blob_name(descriptor)
    with source.open(name) as file:
        data = file.read(descriptor.size + 1)
    if len(data) != descriptor.size or not descriptor.digest.matches(data):
        raise IntegrityError(f"{name} in the layout does not match its digest or size",
                             hint="the layout is damaged or was altered")
    return data


def _oci_layout_images(source, name, platform, path):
    with source.open("index.json") as file:
        # index.json is an image index (image-spec, image-layout.md), with or without mediaType.
        index = parse_manifest(file.read(), OCI_INDEX, what=f"{path}: index.json")
    if not isinstance(index, Index):
        raise UnsupportedImage(f"{path}: index.json is not an image index")
    entries = list(index.manifests)
    if name and len(entries) > 1:
        raise UnsupportedImage(f"{path} holds {len(entries)} images; a NAME fits only one")
    for entry in entries:
        reference = _reference(name or _layout_name(entry, path), path)
        data = _read_verified(source, entry)
        document = parse_manifest(data, entry.media_type, what=f"{path}: manifest {entry.digest.short}")
        if isinstance(document, Index):
            chosen = document.select(platform)
            data = _read_verified(source, chosen)
            document = parse_manifest(data, chosen.media_type, what=f"{path}: manifest {chosen.digest.short}")
        config_bytes = _read_verified(source, document.config)
        paths = {layer.digest: _blob_name(layer) for layer in document.layers}
        # Checked before anything is stored: layers are unpacked in parallel, and one found
        # missing midway would leave the others behind.
        for layer_name in paths.values():
            if not source.exists(layer_name):
                raise _missing(path, layer_name)
        yield LoadedImage(reference, document, data, config_bytes, paths)


def _layout_name(entry, path):
    # containerd and docker write the full name here; other tools only the tag.
    full = entry.annotation("io.containerd.image.name")
    if full:
        return full
    tag = entry.annotation("org.opencontainers.image.ref.name")
    if not tag:
        raise UnsupportedImage(f"{path}: image {entry.digest.short} has no name",
                               hint="name it: toolbox load FILE NAME")
    if "/" in tag or ":" in tag:
        return tag
    return f"localhost/{os.path.basename(os.path.normpath(path)).split('.')[0] or 'image'}:{tag}"


def _docker_archive_images(source, name, path):
    with source.open("manifest.json") as file:
        try:
            entries = json.load(file)
        except ValueError as err:
            raise UnsupportedImage(f"{path}: manifest.json is not valid JSON: {err}") from None
    if not isinstance(entries, list):
        raise UnsupportedImage(f"{path}: manifest.json is not a list")
    for number, entry in enumerate(entries, 1):
        config_name, layer_names, tags = _docker_entry(entry, f"{path}: manifest.json entry {number}")
        if name:
            tags = [name]
        if not tags:
            raise UnsupportedImage(f"{path}: an image in the archive has no tag",
                                   hint="name it: toolbox load FILE NAME")
        with source.open(config_name) as file:
            config_bytes = file.read(MAX_CONFIG_SIZE + 1)
        config = parse_config(config_bytes, what=f"{path}: {config_name}")
        if len(layer_names) != len(config.diff_ids):
            raise UnsupportedImage(f"{path}: {len(layer_names)} layers but {len(config.diff_ids)} diff_ids "
                                   "in the config")
        # A docker save layer is the uncompressed tar, so its digest is its diff_id.
        layers = tuple(Descriptor(UNCOMPRESSED_LAYER, diff_id, source.size(layer))
                       for diff_id, layer in zip(config.diff_ids, layer_names))
        config_descriptor = Descriptor("application/vnd.oci.image.config.v1+json",
                                       Digest.of_bytes(config_bytes), len(config_bytes))
        manifest = Manifest(OCI_MANIFEST, config_descriptor, layers)
        manifest_bytes = _manifest_json(manifest)
        paths = {d.digest: layer for d, layer in zip(layers, layer_names)}
        for tag in tags:
            yield LoadedImage(_reference(tag, path), manifest, manifest_bytes, config_bytes, paths)


def _docker_entry(entry, what):
    """(config name, layer names, tags) of one image in a `docker save` manifest.json."""
    if not isinstance(entry, dict):
        raise UnsupportedImage(f"{what} is not a JSON object")
    config_name, layer_names, tags = (entry.get("Config"), entry.get("Layers") or [],
                                      entry.get("RepoTags") or [])
    if not _is_name(config_name):
        raise UnsupportedImage(f"{what}: 'Config' must be the name of the image's config file")
    for key, value in (("Layers", layer_names), ("RepoTags", tags)):
        if not isinstance(value, list) or not all(_is_name(item) for item in value):
            raise UnsupportedImage(f"{what}: {key!r} must be a list of names")
    return config_name, layer_names, tags


def _is_name(value):
    return isinstance(value, str) and value != "" and "\0" not in value


def _manifest_json(manifest):
    def descriptor(d):
        return {"mediaType": d.media_type, "digest": str(d.digest), "size": d.size}

    doc = {"schemaVersion": 2, "mediaType": manifest.media_type, "config": descriptor(manifest.config),
           "layers": [descriptor(d) for d in manifest.layers]}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
