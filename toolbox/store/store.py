"""The content-addressed store: verified blobs, unpacked layers and image records.

On disk (see Layout):
    store/blobs/sha256/<hex>          manifests, indexes and configs, verified before they land
    store/layers/sha256/<diff_id>/    one unpacked layer: tree/ plus layer.json
    store/images/<quoted reference>   one JSON record per stored reference
    store/tmp/                        work in progress, renamed into place when complete
    store/locks/                      flock files

Sharing: layers are keyed by diff_id (the digest of the uncompressed tar), and each is unpacked
once into its own tree. An image is the ordered list of its layer trees; the runtime stacks them
as overlayfs lower directories (read-only) under a writable scratch layer. Whiteouts are stored
in overlayfs's own format (0/0 character devices, `user.overlay.opaque` xattrs), so a layer
tree never depends on the layers below it and two images with the same base share its tree.
Compressed layer blobs are not kept: they are verified while streaming and unpacked on the fly.

Atomicity: nothing appears under blobs/, layers/ or images/ until it is complete and verified
(a temp directory in tmp/, holding the temp file or tree, then rename). Work in progress holds
an flock on its temp directory, so the next toolbox process can tell an abandoned temp directory
(its owner died) from a live one and removes only the former.

Locks: pulls hold the store lock shared; garbage collection takes it exclusively. Unpacking a
layer holds that layer's lock, so concurrent pulls of one image unpack each layer once.

Free space: a pull leaves a reserve free on the store's filesystem (SpaceReserve), so filling
the store never fills the disk for everything else on it.

The image records' values are in records.py; garbage collection, which Store takes from
gc.GarbageCollection, in gc.py.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from toolbox import fsutil
from toolbox.errors import ConfigError, ImageNotStored, IntegrityError, InvalidReference, StoreError
from toolbox.layout import Layout
from toolbox.oci.digest import Digest
from toolbox.oci.manifest import parse_config, parse_manifest
from toolbox.oci.reference import ImageRef
from toolbox.store.gc import GarbageCollection, allocated_bytes
from toolbox.store.records import ImageRecord, StoredImage

if TYPE_CHECKING:  # the unpacker (tarfile) is not loaded where only the store is needed
    from toolbox.store.layertar import UnpackLimits

LAYER_INFO = "layer.json"
MIN_FREE_ENV = "TOOLBOX_MIN_FREE_BYTES"
DEFAULT_MIN_FREE_BYTES = 1024**3
DEFAULT_MIN_FREE_PERCENT = 5  # of the filesystem's size, where that is less
# While a layer is written, the free space is looked at again after this much file data or this
# many members (directories and empty files take space too); a statvfs costs about a microsecond.
SPACE_CHECK_BYTES = 1024 * 1024
SPACE_CHECK_MEMBERS = 256


@dataclass(frozen=True)
class SpaceReserve:
    """How much free space pulls leave on the store's filesystem. A layer or blob that would
    go below it is refused: before it is written, where its size is known (a layer unpacks to
    at least about its compressed size), and while it is written, since what a layer unpacks
    to is known only then (a few kB of gzip can expand to gigabytes)."""

    min_free_bytes: int | None = None  # None: the default, 1 GiB or 5% of a smaller filesystem

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SpaceReserve:
        value = environ.get(MIN_FREE_ENV, "").strip()
        if not value:
            return cls()
        try:
            min_free = int(value)
        except ValueError:
            min_free = -1
        if min_free < 0:
            raise ConfigError(f"{MIN_FREE_ENV}={value!r} is not a number of bytes",
                              hint="0 turns the reserve off")
        return cls(min_free)

    def bytes_on(self, statvfs: os.statvfs_result) -> int:
        if self.min_free_bytes is not None:
            return self.min_free_bytes
        size = statvfs.f_blocks * statvfs.f_frsize
        return min(DEFAULT_MIN_FREE_BYTES, size * DEFAULT_MIN_FREE_PERCENT // 100)


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


class Store(GarbageCollection):
    def __init__(self, layout: Layout, layer_limits: UnpackLimits | None = None,
                 reserve: SpaceReserve | None = None) -> None:
        self.layout = layout
        # What one layer may unpack to here (an UnpackLimits; None: the defaults), and the free
        # space pulls leave. Set from TOOLBOX_MAX_LAYER_BYTES and TOOLBOX_MIN_FREE_BYTES by
        # services.load_services.
        self.layer_limits = layer_limits
        self.reserve = reserve or SpaceReserve()

    def prepare(self) -> None:
        for path in (self.layout.blobs_dir, self.layout.layers_dir, self.layout.images_dir,
                     self.layout.tmp_dir, self.layout.locks_dir):
            fsutil.ensure_dir(path)

    # -- locks -----------------------------------------------------------------------------------
    def shared_lock(self) -> AbstractContextManager[int]:
        """Held by pulls (and runs): garbage collection waits for them."""
        return fsutil.locked(self.layout.store_lock, shared=True)

    def exclusive_lock(self) -> AbstractContextManager[int]:
        return fsutil.locked(self.layout.store_lock, shared=False)

    def layer_lock(self, diff_id: Digest) -> AbstractContextManager[int]:
        return fsutil.locked(os.path.join(self.layout.locks_dir,
                                          f"layer-{diff_id.algorithm}-{diff_id.hex}.lock"))

    # -- staging ---------------------------------------------------------------------------------
    @contextmanager
    def staging(self, kind: str) -> Iterator[str]:
        """A fresh temp directory in the store's filesystem, locked while we work in it and
        removed afterwards unless its content was committed (renamed away)."""
        fsutil.ensure_dir(self.layout.tmp_dir)
        path = os.path.join(self.layout.tmp_dir, f"{kind}-{os.getpid()}-{secrets.token_hex(6)}")
        # Lock before the directory exists: a cleaner that sees the directory finds it locked.
        with fsutil.locked(path + ".lock"):
            try:
                os.mkdir(path, 0o700)
                yield path
            finally:
                fsutil.remove_tree(path)
                fsutil.unlink_quietly(path + ".lock")

    @contextmanager
    def new_file(self, path: str) -> Iterator[IO[bytes]]:
        """fsutil.atomic_file, with the temp file in a staging directory: a writer killed midway
        leaves it in tmp/, where clean_abandoned removes it once its lock is free, and never
        beside the content in blobs/ or images/."""
        with self.staging("write") as staging, fsutil.atomic_file(path, tmp_dir=staging) as file:
            yield file

    def clean_abandoned(self) -> int:
        """Remove temp entries whose owner died (their lock is free). Returns how many."""
        try:
            names = os.listdir(self.layout.tmp_dir)
        except FileNotFoundError:
            return 0
        removed = 0
        for base in sorted({name.removesuffix(".lock") for name in names}):
            path = os.path.join(self.layout.tmp_dir, base)
            try:
                with fsutil.locked(path + ".lock", blocking=False):
                    if os.path.lexists(path):
                        fsutil.remove_tree(path)
                        removed += 1
                    # Unlinked while we hold it: a process that opened it meanwhile notices
                    # (fsutil.locked checks the inode) and retries on a fresh file.
                    fsutil.unlink_quietly(path + ".lock")
            except StoreError:
                continue  # a live process is working there
        return removed

    # -- free space ------------------------------------------------------------------------------
    def check_free_space(self, action: str, needed: int = 0) -> None:
        """Raise StoreError unless `needed` more bytes leave the reserve free. `action` says
        what was to be done ("unpack layer ..."), for the message. A reserve of 0 turns the
        checks off: the filesystem's own ENOSPC is all there is then."""
        if self.reserve.min_free_bytes == 0:
            return
        fsutil.ensure_dir(self.layout.tmp_dir)
        statvfs = os.statvfs(self.layout.tmp_dir)
        free = statvfs.f_bavail * statvfs.f_frsize
        reserve = self.reserve.bytes_on(statvfs)
        if free - needed >= reserve:
            return
        needs = f"; it needs about {_size(needed)}" if needed else ""
        raise StoreError(
            f"not enough free space to {action}: {_size(free)} free on the filesystem of the store "
            f"({self.layout.store_dir}){needs}, "
            f"and toolbox leaves {_size(reserve)} free there",
            hint="free some space (`toolbox prune` removes what no image needs), or lower the reserve with "
                 f"{MIN_FREE_ENV}=BYTES (now {reserve}; 0 turns it off); nothing partial was kept",
        )

    def free_space_watch(self, action: str) -> Callable[[int], None]:
        """For unpack_layer's on_write: check_free_space again every SPACE_CHECK_BYTES of data
        or SPACE_CHECK_MEMBERS members written, so a layer is stopped when it reaches the
        reserve, whatever it claimed."""
        written = members = 0

        def on_write(count):
            nonlocal written, members
            written += count
            members += count == 0
            if written >= SPACE_CHECK_BYTES or members >= SPACE_CHECK_MEMBERS:
                written = members = 0
                self.check_free_space(action)

        return on_write

    # -- blobs -----------------------------------------------------------------------------------
    def has_blob(self, digest: Digest) -> bool:
        return os.path.exists(self.layout.blob_path(digest))

    def put_blob(self, digest: Digest, data: bytes) -> None:
        if not digest.matches(data):
            raise IntegrityError(f"content does not match its digest {digest}; not stored")
        path = self.layout.blob_path(digest)
        if not os.path.exists(path):
            self.check_free_space(f"store blob {digest.short}", len(data))
            with self.new_file(path) as file:
                file.write(data)

    def blob_size(self, digest: Digest) -> int:
        return allocated_bytes(self.layout.blob_path(digest))

    def read_blob(self, digest: Digest) -> bytes:
        try:
            with open(self.layout.blob_path(digest), "rb") as file:
                return file.read()
        except FileNotFoundError:
            raise ImageNotStored(f"blob {digest} is missing from the store",
                                 hint="pull the image again, or run `toolbox prune`") from None

    # -- layers ----------------------------------------------------------------------------------
    def has_layer(self, diff_id: Digest) -> bool:
        # A layer directory only ever appears by rename, after its tree and layer.json are done.
        return os.path.exists(self.layout.layer_dir(diff_id))

    def layer_info(self, diff_id: Digest) -> dict:
        try:
            with open(os.path.join(self.layout.layer_dir(diff_id), LAYER_INFO), "rb") as file:
                return json.load(file)
        except (FileNotFoundError, ValueError):
            return {}

    def commit_layer(self, staging_dir: str, diff_id: Digest, info: dict) -> None:
        """Move a finished layer (staging_dir/tree) into place. If another process committed the
        same layer meanwhile, ours is dropped: both are the same content."""
        allocated, names, content = fsutil.tree_summary(os.path.join(staging_dir, "tree"))
        info = dict(info, diff_id=str(diff_id), disk_bytes=allocated, tree_names=names,
                    tree_content_bytes=content, unpacked_at=now_utc())
        with open(os.path.join(staging_dir, LAYER_INFO), "w") as file:
            json.dump(info, file, indent=1, sort_keys=True)
        final = self.layout.layer_dir(diff_id)
        fsutil.ensure_dir(os.path.dirname(final))
        try:
            os.rename(staging_dir, final)
        except OSError as err:
            if not self.has_layer(diff_id):  # else another process won the race: same content
                raise StoreError(f"cannot move layer {diff_id.short} into the store: "
                                 f"{err.strerror}") from None

    # -- images ----------------------------------------------------------------------------------
    def _record_path(self, reference):
        return os.path.join(self.layout.images_dir, urllib.parse.quote(reference, safe=""))

    def record_path(self, record: ImageRecord) -> str:
        return self._record_path(record.reference)

    def put_image(self, record: ImageRecord) -> None:
        with self.new_file(self._record_path(record.reference)) as file:
            file.write(json.dumps(record.to_json(), indent=1, sort_keys=True).encode())

    def records(self) -> list[ImageRecord]:
        try:
            names = sorted(os.listdir(self.layout.images_dir))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.startswith("."):
                continue
            try:
                with open(os.path.join(self.layout.images_dir, name), "rb") as file:
                    found.append(ImageRecord.from_json(json.load(file)))
            except (OSError, ValueError, KeyError):
                continue  # `toolbox check` reports unreadable records
        return found

    def find(self, text: str) -> list[ImageRecord]:
        """Records matching what a user typed: a reference (normalised like a pull), or a prefix of
        an image digest of at least 4 hex digits."""
        records = self.records()
        try:
            ref = ImageRef.parse(text)
        except InvalidReference:
            ref = None
        if ref is not None:
            exact = [r for r in records if r.reference == str(ref)]
            if exact:
                return exact
            if ref.digest:  # name@digest finds name:tag records of that digest too
                return [r for r in records
                        if r.digest == ref.digest and ImageRef.parse(r.reference).name == ref.name]
        prefix = text.removeprefix("sha256:").lower()
        if len(prefix) >= 4 and all(c in "0123456789abcdef" for c in prefix):
            return [r for r in records if r.digest.hex.startswith(prefix)]
        return []

    def get_all(self, text: str) -> list[ImageRecord]:
        """Every record `text` names; at least one."""
        matches = self.find(text)
        if not matches:
            raise ImageNotStored(f"image {text!r} is not in the store",
                                 hint=f"pull it first: toolbox pull {text}")
        return matches

    def get(self, text: str) -> ImageRecord:
        """The one image `text` names (several references to one digest count as one)."""
        matches = self.get_all(text)
        if len({r.digest for r in matches}) > 1:
            raise StoreError(f"{text!r} matches several images", hint="use more digits or the full reference")
        return matches[0]

    def remove_record(self, record: ImageRecord) -> None:
        fsutil.unlink_quietly(self._record_path(record.reference))

    def load_image(self, record: ImageRecord) -> StoredImage:
        manifest = parse_manifest(self.read_blob(record.digest), what=f"manifest of {record.reference}")
        config = parse_config(self.read_blob(manifest.config.digest), what=f"config of {record.reference}")
        return StoredImage(record, manifest, config, manifest.config.digest)

    def missing_layers(self, image: StoredImage) -> list[Digest]:
        return [d for d in image.diff_ids if not self.has_layer(d)]


def _size(count):
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
