"""The store's garbage collection (`toolbox prune`): what no image record, named container or
running tool needs is removed, with flattened trees whose layers are gone and work in progress
whose owner died. Callers hold the store's exclusive lock, so no pull is adding content
meanwhile (pulls hold it shared).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from toolbox import fsutil
from toolbox.errors import InvalidReference
from toolbox.layout import Layout
from toolbox.oci.digest import Digest
from toolbox.store.records import ImageRecord


@dataclass(frozen=True)
class GcReport:
    blobs_removed: int
    layers_removed: int
    temp_removed: int
    bytes_freed: int


class GarbageCollection:
    """Mixed into Store (store.py), whose content it judges: it reads the store's image records
    (records, load_image), its layers' layer.json (layer_info) and its temp entries
    (clean_abandoned)."""

    layout: Layout

    def referenced(self, records: Iterable[ImageRecord] | None = None) -> tuple[set[Digest], set[Digest]]:
        """Blobs and layers that some image record (of `records`, by default all) or named
        container needs, or a running tool."""
        blobs, layers = self.needed_by(self.records() if records is None else records)
        layers.update(self._layers_in_use())
        return blobs, layers

    def needed_by(self, records: Iterable[ImageRecord]) -> tuple[set[Digest], set[Digest]]:
        """The blobs and layers these image records need."""
        blobs, layers = set(), set()
        for record in records:
            blobs.add(record.digest)
            if record.index_digest:
                blobs.add(record.index_digest)
            try:
                image = self.load_image(record)
            except Exception:  # a broken record keeps what it names; `toolbox check` deals with it
                continue
            blobs.add(image.config_digest)
            layers.update(image.diff_ids)
        return blobs, layers

    def _layers_in_use(self):
        """Named containers keep their layers (their writable layer only makes sense on them),
        and so do the tools running now."""
        from toolbox.runtime import containers, inuse

        for relative in containers.used_layers(self.layout) | inuse.layers_in_use(self.layout):
            algorithm, hex_digest, _ = (relative.split("/") + ["", ""])[:3]
            try:
                yield Digest.parse(f"{algorithm}:{hex_digest}")
            except InvalidReference:
                continue

    def stored_blobs(self) -> list[Digest]:
        return list(_digests_below(self.layout.blobs_dir))

    def stored_layers(self) -> list[Digest]:
        return list(_digests_below(self.layout.layers_dir))

    def collect_garbage(self) -> GcReport:
        """Remove unreferenced blobs and layers and abandoned temp entries. Callers hold the
        exclusive lock."""
        blobs, layers = self.referenced()
        freed = blobs_removed = layers_removed = 0
        for digest in self.stored_blobs():
            if digest not in blobs:
                path = self.layout.blob_path(digest)
                freed += allocated_bytes(path)
                fsutil.unlink_quietly(path)
                blobs_removed += 1
        for diff_id in self.stored_layers():
            if diff_id not in layers:
                freed += self.layer_info(diff_id).get("disk_bytes", 0)
                self.remove_layer(diff_id)
                layers_removed += 1
        freed += self._remove_stale_flat_trees()
        from toolbox.runtime import containers

        temp_removed = self.clean_abandoned() + containers.sweep_removals(self.layout)
        return GcReport(blobs_removed, layers_removed, temp_removed, freed)

    def _remove_stale_flat_trees(self):
        """Flattened images (read-only root mode) whose layers are gone, and half-made ones."""
        from toolbox.runtime.rootfs import LAYERS_FILE

        freed = 0
        try:
            entries = os.listdir(self.layout.flat_dir)
        except FileNotFoundError:
            return 0
        for entry in entries:
            path = os.path.join(self.layout.flat_dir, entry)
            try:
                with open(os.path.join(path, LAYERS_FILE)) as file:
                    layers = file.read().split()
            except OSError:
                layers = None  # a staging directory: its maker died, or it is being made now
                if _maker_is_alive(entry):
                    continue
            if (layers is None
                or not all(os.path.isdir(os.path.join(self.layout.layers_dir, layer)) for layer in layers)):
                freed += fsutil.disk_usage(path)
                fsutil.remove_tree(path)
        return freed

    def remove_layer(self, diff_id: Digest) -> None:
        # Rename first so the layer disappears at once; a crash mid-delete leaves only temp junk.
        fsutil.ensure_dir(self.layout.tmp_dir)
        doomed = os.path.join(self.layout.tmp_dir, f"doomed-{os.getpid()}-{secrets.token_hex(6)}")
        try:
            os.rename(self.layout.layer_dir(diff_id), doomed)
        except FileNotFoundError:
            return
        fsutil.remove_tree(doomed)


def allocated_bytes(path: str) -> int:
    """What one file takes on disk; 0 when it is gone."""
    try:
        return os.lstat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def _digests_below(root: str) -> Iterator[Digest]:
    """Yield the digests stored as root/<algorithm>/<hex>."""
    try:
        algorithms = os.listdir(root)
    except FileNotFoundError:
        return
    for algorithm in algorithms:
        for name in os.listdir(os.path.join(root, algorithm)):
            try:
                yield Digest.parse(f"{algorithm}:{name}")
            except InvalidReference:
                continue  # a stray temp file, not content


def _maker_is_alive(staging_name):
    """Staging directories end in .tmp-PID (rootfs.flattened_tree)."""
    return fsutil.process_is_alive(staging_name.rpartition(".tmp-")[2])
