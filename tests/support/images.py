"""Small OCI and Docker images built in Python at test time: layer tars, configs, manifests, indexes.

Everything here is deterministic (fixed mtimes, sorted JSON, gzip without a timestamp), so the
same scenario always has the same digests, and nothing touches the network. Layer tars are written
with `tarfile` directly rather than `umoci insert`, which can write a truncated layer.

Member names are written exactly as given (conventionally relative, `bin/sh`), so hostile layers
can carry `../escape` or `/abs` names.
"""

import dataclasses
import functools
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
IN_TOTO = "application/vnd.in-toto+json"

LAYER_MEDIA_TYPES = {
    # (docker_schema2, compression) -> media type
    (False, "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    (False, "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    (False, "none"): "application/vnd.oci.image.layer.v1.tar",
    (True, "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    (True, "none"): "application/vnd.docker.image.rootfs.diff.tar",
    # Docker's schema 2 has no zstd media type.
}

MTIME = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"  # MTIME as RFC 3339
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = (
    "sh", "echo", "cat", "ls", "id", "env", "sleep", "true", "false", "touch", "mkdir", "rm",
    "cp", "mv", "ln", "pwd", "printf", "test", "uname", "whoami", "head", "wc", "grep", "sed",
    "stat", "readlink", "chmod", "date", "hostname", "sha256sum",
)

_KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
}
_DEFAULT_MODES = {"file": 0o644, "dir": 0o755, "symlink": 0o777, "hardlink": 0o644,
                  "fifo": 0o644, "chardev": 0o666, "blockdev": 0o660}


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# Layers


@dataclass(frozen=True)
class Entry:
    """One tar member. `mode=None` picks the usual mode for the kind."""

    path: str
    kind: str = "file"
    data: bytes = b""
    mode: int | None = None
    target: str = ""  # symlink target or hard-link name (as stored in the tar)
    mtime: int = MTIME
    uid: int = 0
    gid: int = 0
    pax_headers: dict | None = field(default=None, hash=False)
    raw_name: bytes | None = None  # overrides `path` with bytes that need not be UTF-8
    device: tuple = (0, 0)  # (major, minor) for chardev/blockdev

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"unknown tar member kind {self.kind!r} for {self.path!r}")


def file(path, data=b"", mode=0o644, **kw):
    return Entry(path, "file", data=data if isinstance(data, bytes) else data.encode(), mode=mode, **kw)


def directory(path, mode=0o755, **kw):
    return Entry(path, "dir", mode=mode, **kw)


def symlink(path, target, **kw):
    return Entry(path, "symlink", target=target, **kw)


def hardlink(path, target, **kw):
    return Entry(path, "hardlink", target=target, **kw)


def whiteout(path):
    """An AUFS-style whiteout deleting `path` from the lower layers (OCI image-spec, layer.md)."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", mode=0o644)


def opaque(directory_path):
    """The opaque-directory marker: hides everything the lower layers had in `directory_path`."""
    return file(f"{directory_path.rstrip('/')}/.wh..wh..opq", mode=0o644)


def _tarinfo(entry):
    # tarfile decodes names with surrogateescape, so undecodable bytes survive the round trip and
    # are written raw (in a PAX header with hdrcharset=BINARY when the format is PAX).
    name = entry.raw_name.decode("utf-8", "surrogateescape") if entry.raw_name is not None else entry.path
    info = tarfile.TarInfo(name)
    info.type = _KINDS[entry.kind]
    info.mode = _DEFAULT_MODES[entry.kind] if entry.mode is None else entry.mode
    info.mtime = entry.mtime
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    if entry.kind in ("symlink", "hardlink"):
        info.linkname = entry.target
    if entry.kind in ("chardev", "blockdev"):
        info.devmajor, info.devminor = entry.device
    if entry.kind == "file":
        info.size = len(entry.data)
    if entry.pax_headers:
        info.pax_headers = dict(entry.pax_headers)
    return info


def layer_tar(entries, format=tarfile.PAX_FORMAT):
    """Uncompressed tar bytes for `entries`, in the order given."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=format, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for entry in entries:
            info = _tarinfo(entry)
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)
    return out.getvalue()


def compress(tar_bytes, compression):
    if compression == "gzip":
        return gzip.compress(tar_bytes, compresslevel=6, mtime=0)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(tar_bytes)
    if compression == "none":
        return tar_bytes
    raise ValueError(f"unknown compression {compression!r}")


@dataclass(frozen=True)
class Layer:
    entries: tuple
    compression: str = "gzip"
    trailing: bytes = b""  # appended after the tar's end-of-archive blocks (hostile layers)
    cut: int = 0  # bytes cut from the end of the compressed blob: a truncated stream (hostile layers)


@functools.lru_cache(maxsize=None)
def _cached_blob(entries, compression, trailing):
    tar = layer_tar(entries) + trailing
    return tar, compress(tar, compression)


def _layer_bytes(layer):
    try:
        return _cached_blob(tuple(layer.entries), layer.compression, layer.trailing)
    except TypeError:  # an entry with pax_headers is not hashable: build it uncached
        tar = layer_tar(layer.entries) + layer.trailing
        return tar, compress(tar, layer.compression)


# ---------------------------------------------------------------------------------------------
# Images


@dataclass(frozen=True)
class ImageSpec:
    layers: tuple  # of Layer, or of (entries, compression) pairs
    entrypoint: tuple | None = None
    cmd: tuple | None = None
    env: tuple = DEFAULT_ENV
    working_dir: str | None = None
    user: str | None = None
    labels: dict | None = field(default=None, hash=False)
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    docker_schema2: bool = False
    annotations: dict | None = field(default=None, hash=False)  # manifest annotations (OCI only)
    # more of the config's "config" (Volumes, ExposedPorts...)
    extra_config: dict | None = field(default=None, hash=False)


@dataclass(frozen=True)
class BuiltImage:
    manifest_bytes: bytes
    manifest_digest: str
    config_bytes: bytes
    config_digest: str
    blobs: dict  # digest -> bytes: the config and every layer (not the manifest)
    media_type: str
    layers: tuple  # layer descriptors (dicts), in order
    diff_ids: tuple
    platform: dict
    children: tuple = ()  # an image has no child manifests; see BuiltIndex

    @property
    def digest(self):
        return self.manifest_digest

    @property
    def manifest(self):
        return json.loads(self.manifest_bytes)

    @property
    def config(self):
        return json.loads(self.config_bytes)

    def descriptor(self, platform=True, annotations=None):
        desc = {"mediaType": self.media_type, "digest": self.manifest_digest,
                "size": len(self.manifest_bytes)}
        if platform:
            desc["platform"] = dict(self.platform)
        if annotations:
            desc["annotations"] = dict(annotations)
        return desc


@dataclass(frozen=True)
class BuiltIndex:
    index_bytes: bytes
    digest: str
    media_type: str
    children: tuple  # BuiltImage for every manifest the index points to, attestations included
    blobs: dict  # every blob of every child (not the manifests)

    @property
    def manifest_bytes(self):
        return self.index_bytes

    @property
    def manifest_digest(self):
        return self.digest

    @property
    def index(self):
        return json.loads(self.index_bytes)

    @property
    def images(self):
        """The runnable children, attestation manifests left out."""
        return tuple(c for c in self.children if c.platform.get("os") != "unknown")


def _config_json(spec, diff_ids):
    cfg = {"Env": list(spec.env)}
    if spec.entrypoint is not None:
        cfg["Entrypoint"] = list(spec.entrypoint)
    if spec.cmd is not None:
        cfg["Cmd"] = list(spec.cmd)
    if spec.working_dir is not None:
        cfg["WorkingDir"] = spec.working_dir
    if spec.user is not None:
        cfg["User"] = spec.user
    if spec.labels:
        cfg["Labels"] = dict(spec.labels)
    cfg.update(spec.extra_config or {})
    config = {
        "created": CREATED,
        "architecture": spec.architecture,
        "os": spec.os,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": CREATED, "created_by": f"tests.support.images layer {i}"}
                    for i in range(len(diff_ids))],
    }
    if spec.variant:
        config["variant"] = spec.variant
    return canonical_json(config)


def build_image(spec):
    blobs = {}
    layers = []
    diff_ids = []
    for layer in spec.layers:
        if not isinstance(layer, Layer):
            layer = Layer(tuple(layer[0]), layer[1])
        key = (spec.docker_schema2, layer.compression)
        if key not in LAYER_MEDIA_TYPES:
            raise ValueError(f"no media type for a {layer.compression} layer in a Docker schema 2 image")
        tar, blob = _layer_bytes(layer)
        blob = blob[:-layer.cut] if layer.cut else blob
        digest = sha256_digest(blob)
        blobs[digest] = blob
        diff_ids.append(sha256_digest(tar))
        layers.append({"mediaType": LAYER_MEDIA_TYPES[key], "digest": digest, "size": len(blob)})
    config_bytes = _config_json(spec, diff_ids)
    config_digest = sha256_digest(config_bytes)
    blobs[config_digest] = config_bytes
    media_type = DOCKER_MANIFEST if spec.docker_schema2 else OCI_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": DOCKER_CONFIG if spec.docker_schema2 else OCI_CONFIG,
                   "digest": config_digest, "size": len(config_bytes)},
        "layers": layers,
    }
    if spec.annotations and not spec.docker_schema2:
        manifest["annotations"] = dict(spec.annotations)
    manifest_bytes = canonical_json(manifest)
    platform = {"architecture": spec.architecture, "os": spec.os}
    if spec.variant:
        platform["variant"] = spec.variant
    return BuiltImage(
        manifest_bytes=manifest_bytes,
        manifest_digest=sha256_digest(manifest_bytes),
        config_bytes=config_bytes,
        config_digest=config_digest,
        blobs=blobs,
        media_type=media_type,
        layers=tuple(layers),
        diff_ids=tuple(diff_ids),
        platform=platform,
    )


def _attestation_for(image):
    """A BuildKit-style attestation manifest (an in-toto SPDX statement) about `image`."""
    statement = canonical_json({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [{"name": "pkg:docker/toolbox-test",
                     "digest": {"sha256": image.manifest_digest.split(":", 1)[1]}}],
        "predicate": {"spdxVersion": "SPDX-2.3", "name": "toolbox-test"},
    })
    statement_digest = sha256_digest(statement)
    config_bytes = canonical_json({
        "architecture": "unknown", "os": "unknown", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [statement_digest]},
    })
    config_digest = sha256_digest(config_bytes)
    layer = {"mediaType": IN_TOTO, "digest": statement_digest, "size": len(statement),
             "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"}}
    manifest_bytes = canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [layer],
    })
    return BuiltImage(
        manifest_bytes=manifest_bytes,
        manifest_digest=sha256_digest(manifest_bytes),
        config_bytes=config_bytes,
        config_digest=config_digest,
        blobs={statement_digest: statement, config_digest: config_bytes},
        media_type=OCI_MANIFEST,
        layers=(layer,),
        diff_ids=(statement_digest,),
        platform={"architecture": "unknown", "os": "unknown"},
    )


def build_index(images, attestation=True, docker_list=False):
    """An OCI index (or Docker manifest list) over `images`.

    With `attestation`, every image gets a BuildKit-style attestation entry after the images:
    platform unknown/unknown, annotated vnd.docker.reference.type=attestation-manifest and
    vnd.docker.reference.digest=<that image's digest>. Docker manifest lists never carry them.
    """
    if docker_list and attestation:
        raise ValueError("BuildKit puts attestations only in OCI indexes; pass attestation=False")
    children = list(images)
    entries = [image.descriptor() for image in images]
    if attestation:
        for image in images:
            att = _attestation_for(image)
            children.append(att)
            entries.append(att.descriptor(annotations={
                "vnd.docker.reference.digest": image.manifest_digest,
                "vnd.docker.reference.type": "attestation-manifest",
            }))
    media_type = DOCKER_LIST if docker_list else OCI_INDEX
    index_bytes = canonical_json({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
    blobs = {}
    for child in children:
        blobs.update(child.blobs)
    return BuiltIndex(index_bytes=index_bytes, digest=sha256_digest(index_bytes), media_type=media_type,
                      children=tuple(children), blobs=blobs)


def write_oci_layout(directory, built, tag):
    """Write `built` (image or index) into an OCI image layout, tagged `tag`.

    An existing layout is extended: other tags stay, an entry with the same tag is replaced.
    """
    root = Path(directory)
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    everything = dict(built.blobs)
    for child in built.children:
        everything[child.manifest_digest] = child.manifest_bytes
    everything[built.manifest_digest] = built.manifest_bytes
    for digest, data in everything.items():
        path = blob_dir / digest.split(":", 1)[1]
        if not path.exists():
            path.write_bytes(data)
    index_path = root / "index.json"
    index = json.loads(index_path.read_bytes()) if index_path.exists() else {"schemaVersion": 2,
                                                                             "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    desc = {"mediaType": built.media_type, "digest": built.manifest_digest, "size": len(built.manifest_bytes),
            "annotations": {"org.opencontainers.image.ref.name": tag}}
    index["manifests"].append(desc)
    index_path.write_bytes(canonical_json(index))


def write_skopeo_dir(directory, built):
    """Write an image in skopeo's `dir:` format (manifest.json and blobs named by hex digest).

    skopeo 1.9's `oci:` source ignores index.json entries with Docker media types, so a Docker
    schema 2 image can only be pushed unchanged from here. Indexes are not supported.
    """
    if built.children:
        raise ValueError("the dir: transport holds one image, not an index")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    (root / "version").write_text("Directory Transport Version: 1.1\n")
    (root / "manifest.json").write_bytes(built.manifest_bytes)
    for digest, data in built.blobs.items():
        (root / digest.split(":", 1)[1]).write_bytes(data)


# ---------------------------------------------------------------------------------------------
# Scenarios


@functools.lru_cache(maxsize=None)
def _busybox_binary():
    if not BUSYBOX.is_file():
        raise FileNotFoundError(f"{BUSYBOX} is missing: install Debian's busybox-static")
    return BUSYBOX.read_bytes()


def busybox_entries():
    """A minimal root filesystem: a static busybox, applet symlinks, /etc/passwd and /etc/group."""
    entries = [directory(d) for d in ("bin", "dev", "etc", "home", "proc", "sys", "usr", "usr/bin", "var")]
    entries += [directory("root", 0o700), directory("tmp", 0o1777)]
    entries.append(file("bin/busybox", _busybox_binary(), 0o755))
    entries += [symlink(f"bin/{applet}", "busybox") for applet in BUSYBOX_APPLETS]
    entries.append(file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                                      "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
    entries.append(file("etc/group", "root:x:0:\nnogroup:x:65534:\n"))
    return entries


def busybox_layer(compression="gzip"):
    return Layer(tuple(busybox_entries()), compression)


def busybox_spec(**overrides):
    spec = ImageSpec(layers=(busybox_layer(),), cmd=("sh",), labels={"org.example.scenario": "busybox"})
    return dataclasses.replace(spec, **overrides)


def busybox_image():
    return build_image(busybox_spec())


def two_images_sharing_base():
    """(A, B): the identical busybox base layer blob, then one different file each."""
    a = busybox_spec(layers=(busybox_layer(), Layer((file("a.txt", "image A\n"),))),
                     cmd=("cat", "/a.txt"), labels={"org.example.scenario": "shared-a"})
    b = busybox_spec(layers=(busybox_layer(), Layer((file("b.txt", "image B\n"),))),
                     cmd=("cat", "/b.txt"), labels={"org.example.scenario": "shared-b"})
    return build_image(a), build_image(b)


def whiteout_image():
    """Layer 1: /a/x, /a/y, /d/old. Layer 2: whiteout of /a/x, /d made opaque, /d/new.

    Unpacked, the image has /a/y and /d/new only (besides busybox's files)."""
    lower = Layer((directory("a"), file("a/x", "x\n"), file("a/y", "y\n"), directory("d"),
                   file("d/old", "old\n")))
    upper = Layer((directory("a"), whiteout("a/x"), directory("d"), opaque("d"), file("d/new", "new\n")))
    return build_image(busybox_spec(layers=(busybox_layer(), lower, upper),
                                    labels={"org.example.scenario": "whiteout"}))


def arch_image(architecture, variant=None, docker_schema2=False):
    name = architecture + (f"/{variant}" if variant else "")
    return build_image(busybox_spec(
        layers=(busybox_layer(), Layer((file("arch", name + "\n"),))),
        architecture=architecture, variant=variant, docker_schema2=docker_schema2,
        cmd=("cat", "/arch"), labels={"org.example.scenario": f"arch-{name}"}))


def multiarch_index():
    """OCI index: linux/amd64 and linux/arm64/v8 (each with /arch naming it), plus attestations."""
    return build_index([arch_image("amd64"), arch_image("arm64", "v8")], attestation=True)


def zstd_image():
    return build_image(busybox_spec(
        layers=(busybox_layer("zstd"), Layer((file("zstd.txt", "zstd layer\n"),), "zstd")),
        labels={"org.example.scenario": "zstd"}))


def uncompressed_image():
    return build_image(busybox_spec(
        layers=(busybox_layer("none"), Layer((file("plain.txt", "uncompressed layer\n"),), "none")),
        labels={"org.example.scenario": "uncompressed"}))


def docker_schema2_image():
    return build_image(busybox_spec(
        layers=(busybox_layer(), Layer((file("docker.txt", "docker schema 2\n"),))),
        docker_schema2=True, labels={"org.example.scenario": "docker-schema2"}))


def docker_manifest_list():
    return build_index([arch_image("amd64", docker_schema2=True),
                        arch_image("arm64", "v8", docker_schema2=True)],
                       attestation=False, docker_list=True)


# Hostile images: one small layer each, no busybox, so a test can see exactly what was refused.

def _single_layer(entries, scenario, trailing=b""):
    return build_image(ImageSpec(layers=(Layer(tuple(entries), trailing=trailing),), cmd=("/bin/true",),
                                 labels={"org.example.scenario": scenario}))


def dotdot_image():
    return _single_layer([file("../escape", "escaped\n")], "dotdot")


def symlink_escape_image():
    return _single_layer([symlink("evil", "/"), directory("evil/tmp"), file("evil/tmp/pwned", "pwned\n")],
                         "symlink-escape")


def hardlink_escape_image():
    return _single_layer([hardlink("passwd", "/etc/passwd")], "hardlink-escape")


def too_deep_image():
    """A file 600 directories down: a short name (1201 bytes), but deeper than toolbox allows."""
    return _single_layer([file("d/" * 600 + "f", "deep\n")], "too-deep")


def trailing_data_image():
    """A valid tar followed by 3 MiB that are no part of it (gzip makes them 3 kB)."""
    return _single_layer([file("f", "f\n")], "trailing-data", trailing=bytes(3 * 1024 * 1024))


def absolute_paths_image():
    """Absolute member names: to be made relative, not written to the host's /."""
    return _single_layer([directory("/abs"), file("/abs/file", "absolute\n")], "absolute-paths")


def special_files_image():
    """A char device, a FIFO, a setuid and a setgid file, a read-only directory with a file in it."""
    return _single_layer([
        Entry("null", "chardev", device=(1, 3), mode=0o666),
        Entry("fifo", "fifo"),
        file("setuid", "#!/bin/sh\n", 0o4755),
        file("setgid", "#!/bin/sh\n", 0o2755),
        directory("ro", 0o555),
        file("ro/inner", "inner\n", 0o444),
    ], "special-files")


def odd_names_image():
    """A non-UTF-8 name, a 150-character path (needs a PAX header) and a PAX mtime with a fraction."""
    long_name = "long/" + "n" * 145
    return _single_layer([
        Entry("latin1", raw_name=b"caf\xe9.txt", data=b"latin-1 name\n"),
        directory("long"),
        file(long_name, "long name\n"),
        Entry("pax-mtime", data=b"pax\n", pax_headers={"mtime": "1700000000.5"}),
    ], "odd-names")


def tampered_image():
    """A small image whose single layer is unique, so it can be corrupted in a registry's storage
    (see RegistryServer.tamper_blob) without breaking any other scenario."""
    return _single_layer([file("tampered.txt", "this layer will be corrupted after the push\n")], "tampered")


def layer_digest(built, index=-1):
    return built.layers[index]["digest"]


def file_digest(path):
    return sha256_digest(Path(path).read_bytes())

