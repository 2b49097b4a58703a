"""Cold side of `toolbox run`: resolve what the user typed to a stored image (pulling it when the
--pull policy says so) and write a run plan, a small marshal file the launch path reads instead
of parsing references, manifests and configs. A plan stays valid while the image record it was
made from is unchanged (same inode and mtime: a new pull of the tag replaces the record, so the
plan is remade)."""

import marshal
import os

from toolbox.errors import ImageNotStored, StoreError
from toolbox.hot.plans import PLAN_VERSION
from toolbox.store.store import Store


def ensure_plan(layout, image_text, pull="missing", platform_text=None):
    """The run plan of `image_text`, pulling first when `pull` asks for it: "always"; "missing"
    when the image (for `platform_text`, if given) is not stored; never with "never"."""
    from toolbox.oci.platform import Platform

    platform = Platform.parse(platform_text) if platform_text else None
    if pull == "always" or (pull == "missing" and not _is_stored(layout, image_text, platform)):
        _pull(layout, image_text, platform)
    elif platform is not None and not _is_stored(layout, image_text, platform):
        raise ImageNotStored(f"{image_text} is not stored for {platform}", hint=f"pull it: toolbox pull --platform {platform} {image_text}")
    return make_plan(layout, image_text)


def _is_stored(layout, image_text, platform):
    try:
        record = Store(layout).get(image_text)
    except ImageNotStored:
        return False
    return platform is None or record.platform == str(platform)


def _pull(layout, image_text, platform):
    from toolbox.ops.progress import progress_for
    from toolbox.ops.pull import PullOptions, pull_image
    from toolbox.oci.reference import ImageRef
    from toolbox.ops.wiring import load_services

    ref = ImageRef.parse(image_text)
    services = load_services(layout)
    client = services.registry_client()
    try:
        pull_image(ref, store=services.store, client=client, options=PullOptions(platform=platform), progress=progress_for(quiet=False))
    finally:
        client.close()


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
        os.makedirs(layout.plans_dir, exist_ok=True)
        with store.new_file(layout.run_plan_path(key)) as file:  # a killed writer leaves nothing in plans/
            file.write(data)
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

