"""Cold side of `toolbox run`: resolve what the user typed to a stored image and write a run plan,
a small marshal file the launch path reads instead of parsing references, manifests and
configs. A plan stays valid while the image record it was made from is unchanged (same inode
and mtime: a new pull of the tag replaces the record, so the plan is remade)."""

import marshal
import os

from . import fsutil
from .errors import StoreError
from .store import Store

PLAN_VERSION = 1


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
    config = image.config
    plan = {
        "v": PLAN_VERSION,
        "reference": record.reference,
        "record": store.record_path(record),
        "record_id": [record_stat.st_ino, record_stat.st_mtime_ns],
        "layers": _lowerdirs(image.diff_ids),
        "entrypoint": list(config.entrypoint) if config.entrypoint is not None else None,
        "cmd": list(config.cmd) if config.cmd is not None else None,
        "env": list(config.env),
        "working_dir": config.working_dir,
        "user": config.user,
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


def plan_is_current(plan):
    try:
        st = os.stat(plan["record"])
    except (OSError, KeyError, TypeError):
        return False
    return plan.get("v") == PLAN_VERSION and plan.get("record_id") == [st.st_ino, st.st_mtime_ns]
