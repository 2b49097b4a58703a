"""`toolbox check`: verify the store and repair it. Every blob is hashed against its name; every
layer tree is counted against what was recorded when it was committed (names below it and bytes
of file content); every image record must parse and name blobs that are there. What is bad is
removed — a bad blob or layer is fetched again by the next pull of an image that needs it — and
the images left incomplete are named, with the pull that repairs them. Temp entries of dead
processes are removed. Runs under the store's exclusive lock, like prune.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from toolbox import fsutil
from toolbox.errors import ToolboxError
from toolbox.store.store import Store


@dataclass
class CheckReport:
    blobs_checked: int = 0
    layers_checked: int = 0
    images_checked: int = 0
    removed: list[str] = field(default_factory=list)  # what was bad, and is gone now
    incomplete_images: list[str] = field(default_factory=list)  # references to pull again
    temp_removed: int = 0

    @property
    def clean(self) -> bool:
        """Nothing was bad (leftover temp entries of killed processes are expected)."""
        return not self.removed and not self.incomplete_images

    def to_json(self) -> dict[str, object]:
        return {"clean": self.clean, "blobs_checked": self.blobs_checked,
                "layers_checked": self.layers_checked, "images_checked": self.images_checked,
                "removed": self.removed, "incomplete_images": self.incomplete_images,
                "temp_removed": self.temp_removed}


def check_store(store: Store) -> CheckReport:
    report = CheckReport()
    store.prepare()
    with store.exclusive_lock():
        report.temp_removed = store.clean_abandoned()
        for digest in store.stored_blobs():
            report.blobs_checked += 1
            path = store.layout.blob_path(digest)
            if not _blob_matches(path, digest):
                fsutil.unlink_quietly(path)
                report.removed.append(f"blob {digest}: content does not match its digest")
        for diff_id in store.stored_layers():
            report.layers_checked += 1
            problem = _layer_problem(store, diff_id)
            if problem:
                store.remove_layer(diff_id)
                report.removed.append(f"layer {diff_id}: {problem}")
        for record in store.records():
            report.images_checked += 1
            try:
                image = store.load_image(record)
            except ToolboxError as err:
                store.remove_record(record)
                report.removed.append(f"image {record.reference}: {err.message}")
                report.incomplete_images.append(record.reference)
                continue
            if store.missing_layers(image):
                report.incomplete_images.append(record.reference)
    return report


def _blob_matches(path, digest):
    hasher = digest.hasher()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(1 << 20):
                hasher.update(chunk)
    except OSError:
        return False
    return hasher.hexdigest() == digest.hex


def _layer_problem(store, diff_id):
    info = store.layer_info(diff_id)
    if info.get("diff_id") != str(diff_id):
        return "its layer.json is missing or names another layer"
    tree = os.path.join(store.layout.layer_dir(diff_id), "tree")
    if not os.path.isdir(tree):
        return "its tree is missing"
    if "tree_names" not in info:
        return None  # committed before toolbox recorded tree sizes: nothing to compare
    _allocated, names, content = fsutil.tree_summary(tree)
    if (names, content) != (info["tree_names"], info["tree_content_bytes"]):
        return (f"its tree has {names} names and {content} bytes of file content, "
                f"{info['tree_names']} and {info['tree_content_bytes']} when it was unpacked")
    return None
