"""Pull an image: resolve the manifest for this platform, then download, verify and unpack its
layers in parallel, each streamed straight from the network into its own tree.

For each layer the bytes flow: registry → BlobStream (counts, hashes, resumes, checks the blob
digest) → decompressor → DiffIdReader (hashes the tar, checks the config's diff_id) → unpacker
(writes a temp tree). Only when both digests match is the tree renamed into the store.
"""

import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

from toolbox.errors import Cancelled, IntegrityError, LayerError, StoreError, ToolboxError, UnsupportedImage
from toolbox.fsutil import is_disk_full
from toolbox.oci.compression import open_decompressed
from toolbox.oci.manifest import MAX_CONFIG_SIZE, Index, check_config_matches, parse_config, parse_manifest
from toolbox.oci.platform import host_platform
from toolbox.store.store import ImageRecord, now_utc
from toolbox.store.unpack import UnpackLimits, unpack_layer

READ_SIZE = 256 * 1024
# What may follow a layer's end-of-archive blocks: far more than the record padding tar adds
# (10 KiB by default), far less than a decompression bomb.
MAX_TRAILING_BYTES = 1024 * 1024


@dataclass(frozen=True)
class PullOptions:
    platform: object = None  # Platform; None means this machine's
    max_parallel: int = 4


@dataclass(frozen=True)
class LayerPlan:
    descriptor: object  # Descriptor of the compressed blob
    diff_id: object  # Digest of the uncompressed tar
    stored: bool


class NullProgress:
    """What a pull reports as it goes; the CLI renders it, tests may record it."""

    def resolved(self, reference, digest, platform, layers):
        pass

    def layer_advanced(self, layer, done_bytes):
        pass

    def layer_done(self, layer, stats):
        pass


class DiffIdReader:
    """Hashes the uncompressed stream: the config's diff_id names these bytes, not the blob's."""

    def __init__(self, stream, diff_id):
        self._stream = stream
        self._diff_id = diff_id
        self._hasher = diff_id.hasher()

    def read(self, n=-1):
        data = self._stream.read(n)
        self._hasher.update(data)
        return data

    def finish(self, what):
        """Read and hash what follows the tar's end-of-archive blocks. tar pads its output to a
        whole record (10 KiB by default), and the diff_id covers that padding; anything much
        longer is not part of the layer and would only cost time (a few kB of gzip can expand
        to gigabytes of zeros), so it is refused."""
        trailing = 0
        while data := self.read(READ_SIZE):
            trailing += len(data)
            if trailing > MAX_TRAILING_BYTES:
                raise LayerError(
                    f"{what} has more than {MAX_TRAILING_BYTES} bytes after the end of the tar archive",
                    hint="a layer is a tar archive and nothing after it; this one is broken or hostile, and "
                         "nothing of it was kept",
                )
        if self._hasher.hexdigest() != self._diff_id.hex:
            raise IntegrityError(
                f"{what}: the uncompressed layer does not match the diff_id {self._diff_id} in the image "
                "config",
                hint="the image is inconsistent or was tampered with; nothing was kept",
            )


class CountingReader:
    """Reports progress and stops promptly when the pull is cancelled."""

    def __init__(self, stream, on_bytes, cancelled):
        self._stream = stream
        self._on_bytes = on_bytes
        self._cancelled = cancelled
        self.done = 0

    def read(self, n=-1):
        if self._cancelled.is_set():
            raise Cancelled("pull interrupted")
        data = self._stream.read(n)
        if data:
            self.done += len(data)
            self._on_bytes(self.done)
        return data


def resolve(client, store, ref, platform):
    """Fetch (and keep) the manifest for `platform`, its config, and the index if there is one.
    Returns (manifest, config, manifest_digest, index_digest, endpoint)."""
    fetched = client.get_manifest(ref)
    document = parse_manifest(fetched.data, fetched.content_type, what=f"manifest of {ref}")
    index_digest = None
    if isinstance(document, Index):
        store.put_blob(fetched.digest, fetched.data)
        index_digest = fetched.digest
        entry = document.select(platform)
        fetched = client.get_manifest(ref, str(entry.digest))
        document = parse_manifest(fetched.data, fetched.content_type,
                                  what=f"manifest {entry.digest.short} of {ref}")
        if isinstance(document, Index):
            raise UnsupportedImage(f"{ref}: an index inside an index is not supported")
    manifest = document
    if store.has_blob(manifest.config.digest):
        config_bytes = store.read_blob(manifest.config.digest)
    else:
        config_bytes = client.get_blob_bytes(ref, manifest.config, fetched.endpoint, MAX_CONFIG_SIZE)
    config = parse_config(config_bytes, what=f"config of {ref}")
    check_config_matches(manifest, config, what=str(ref))
    _check_platform(ref, config, platform, chosen_from_index=index_digest is not None)
    store.put_blob(manifest.config.digest, config_bytes)
    store.put_blob(fetched.digest, fetched.data)
    return manifest, config, fetched.digest, index_digest, fetched.endpoint


def _check_platform(ref, config, platform, chosen_from_index):
    if chosen_from_index or not config.platform.architecture:
        return
    if (config.platform.os, config.platform.architecture) != (platform.os, platform.architecture):
        raise UnsupportedImage(
            f"{ref} is an image for {config.platform}, not for {platform}",
            hint=f"pull it with --platform {config.platform} to store it anyway (it will not run natively "
                 "here)",
        )


def pull_image(ref, *, store, client, options=None, progress=None):
    options = options or PullOptions()
    progress = progress or NullProgress()
    platform = options.platform or host_platform()
    store.prepare()
    with store.shared_lock():
        store.clean_abandoned()
        manifest, config, manifest_digest, index_digest, endpoint = resolve(client, store, ref, platform)
        plans = plan_layers(store, manifest, config)
        # By tag: what the tag named. By digest (a locked tool's index): the manifest it chose.
        progress.resolved(ref, manifest_digest if ref.digest else index_digest or manifest_digest,
                          config.platform, plans)
        fetch_layers(plans, store, lambda descriptor: client.open_blob(ref, descriptor, endpoint), options,
                     progress, str(ref))
        record = ImageRecord(
            reference=str(ref),
            digest=manifest_digest,
            index_digest=index_digest,
            platform=str(config.platform) if config.platform.architecture else str(platform),
            pulled_at=now_utc(),
        )
        store.put_image(record)
        return record


def plan_layers(store, manifest, config):
    plans, seen = [], set()
    for descriptor, diff_id in zip(manifest.layers, config.diff_ids):
        if diff_id in seen:
            continue  # the same layer twice in one image is unpacked once
        seen.add(diff_id)
        plans.append(LayerPlan(descriptor, diff_id, store.has_layer(diff_id)))
    return plans


def fetch_layers(plans, store, open_blob, options, progress, image_name):
    """Unpack every layer not yet stored, in parallel. `open_blob(descriptor)` gives a stream that
    checks the blob's digest when read to its end (a registry download or a local file)."""
    plans = [plan for plan in plans if not plan.stored]
    if not plans:
        return
    cancelled = threading.Event()
    executor = ThreadPoolExecutor(max_workers=max(1, min(options.max_parallel, len(plans))),
                                  thread_name_prefix="layer")
    futures = [executor.submit(fetch_layer, plan, store, open_blob, options, progress, cancelled, image_name)
               for plan in plans]
    try:
        done, _pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and f.exception() is not None]
        if failed:
            cancelled.set()
            wait(futures)
            raise _first_real_error(failed)
    except BaseException:
        # Ctrl-C or a failed layer: stop the others at their next read; their temp trees go.
        cancelled.set()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _first_real_error(failed):
    errors = [f.exception() for f in failed]
    for err in errors:
        if not isinstance(err, Cancelled):
            return err
    return errors[0]


def fetch_layer(plan, store, open_blob, options, progress, cancelled, image_name):
    """Download, verify and unpack one layer unless another process already has."""
    what = f"layer {plan.descriptor.digest.short} of {image_name}"
    with store.layer_lock(plan.diff_id):
        if store.has_layer(plan.diff_id):  # a concurrent pull committed it while we waited
            progress.layer_done(plan, None)
            return
        with store.staging("layer") as staging:
            # Refused at once where even the compressed blob would not fit above the reserve,
            # and as soon as what it unpacks to reaches the reserve.
            store.check_free_space(f"unpack {what}", plan.descriptor.size)
            on_write = store.free_space_watch(f"unpack {what}")
            tree = os.path.join(staging, "tree")
            os.mkdir(tree, 0o755)
            with open_blob(plan.descriptor) as blob:
                counted = CountingReader(blob, lambda n: progress.layer_advanced(plan, n), cancelled)
                tar = DiffIdReader(open_decompressed(counted), plan.diff_id)
                try:
                    stats = unpack_layer(tar, tree, store.layer_limits or UnpackLimits(), on_write)
                    tar.finish(what)
                except LayerError:
                    _raise_integrity_error_first(counted)
                    raise
                except OSError as err:
                    raise store_write_error(err, what) from None
                # Read the blob to its end: the digest check happens there.
                while counted.read(READ_SIZE):
                    pass
            store.commit_layer(
                staging,
                plan.diff_id,
                {"blob": str(plan.descriptor.digest), "media_type": plan.descriptor.media_type,
                 "files": stats.files, "bytes": stats.bytes},
            )
    progress.layer_done(plan, stats)


def _raise_integrity_error_first(blob):
    """A layer that does not decompress or unpack may simply be damaged in transit: if its bytes
    do not match their digest, say that, which is the more accurate diagnosis."""
    try:
        while blob.read(READ_SIZE):
            pass
    except IntegrityError:
        raise
    except ToolboxError:
        pass


def store_write_error(err, what):
    if is_disk_full(err):
        return StoreError(f"no space left while unpacking {what}",
                          hint="free some space (e.g. `toolbox prune`) and pull again; "
                               "nothing partial was kept")
    return StoreError(f"cannot write {what} into the store: {err.strerror or err}")
