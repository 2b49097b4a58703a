"""Cold side of `toolbox run`: resolve what the user typed to a stored image and write a run plan,
a small marshal file the launch path reads instead of parsing references, manifests and
configs. A plan stays valid while the image record it was made from is unchanged (same inode
and mtime: a new pull of the tag replaces the record, so the plan is remade)."""

import marshal
import os

from . import fsutil
from .errors import StoreError
from .plan import PLAN_VERSION
from .store import Store


def make_plan(layout, image_text):
    store = Store(layout)
    record = store.get(image_text)
    image = store.load_image(record)
    missing = store.missing_layers(image)
    if missing:
        raise StoreError(
            f"{record.reference} is missing {len(missing)} of its layers",
            hint=f"pull it again: toolbox pull {record.reference}",
        )
    record_stat = os.stat(store.record_path(record))
    config = image.config.to_json()
    plan = {
        "v": PLAN_VERSION,
        "reference": record.reference,
        "record": store.record_path(record),
        "record_id": [record_stat.st_ino, record_stat.st_mtime_ns],
        "layers": _lowerdirs(image.diff_ids),
        **{key: config[key] for key in ("entrypoint", "cmd", "env", "working_dir", "user")},
    }
    data = marshal.dumps(plan)
    for key in {image_text, record.reference}:
        fsutil.atomic_write(layout.run_plan_path(key), data)
    return plan


def _lowerdirs(diff_ids):
    """Layer trees relative to the layers directory, topmost first as overlayfs wants them; a
    layer repeated in an image counts once, at its highest position."""
    seen, lowerdirs = set(), []
    for diff_id in reversed(diff_ids):
        if diff_id not in seen:
            seen.add(diff_id)
            lowerdirs.append(f"{diff_id.algorithm}/{diff_id.hex}/tree")
    return lowerdirs

