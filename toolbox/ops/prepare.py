"""Cold side of `toolbox run`, and the one module the launch path reaches on a plan miss. It
writes the two plans the launch path reads instead of parsing TOML, references, manifests and
configs (hot/plans.py):

- a run plan (ensure_plan): what the user typed resolved to a stored image, pulled first when
  the --pull policy says so. It stays valid while the image record it was made from is
  unchanged (same inode and mtime: a new pull of the tag replaces the record, so the plan is
  remade).
- a tool plan (run_settings): what `toolbox run TOOL` runs, from the recipes, the pins, the
  lock and trust (context.py), valid while the files it was made from are unchanged.

A plan miss also checks the launch bundle (ops/bundle.py), rewritten when toolbox's sources
changed since it was written."""

import functools
import marshal
import os

from toolbox.errors import ImageNotStored, StoreError
from toolbox.hot.plans import PLAN_VERSION
from toolbox.store.store import Store


def ensure_plan(layout, image_text, pull="missing", platform_text=None):
    """The run plan of `image_text`, pulling first when `pull` asks for it: "always"; "missing"
    when the image (for `platform_text`, if given) is not stored; never with "never"."""
    import gc

    from toolbox.oci.platform import Platform

    gc.enable()  # the launch path turns it off; pulling makes cycles
    _refresh_launch_bundle()
    platform = Platform.parse(platform_text) if platform_text else None
    if pull == "always" or (pull == "missing" and not _is_stored(layout, image_text, platform)):
        _pull(layout, image_text, platform)
    elif platform is not None and not _is_stored(layout, image_text, platform):
        raise ImageNotStored(f"{image_text} is not stored for {platform}",
                             hint=f"pull it: toolbox pull --platform {platform} {image_text}")
    return make_plan(layout, image_text)


@functools.cache
def _refresh_launch_bundle():
    from toolbox.ops import bundle

    bundle.refresh()


def _is_stored(layout, image_text, platform):
    try:
        record = Store(layout).get(image_text)
    except ImageNotStored:
        return False
    return platform is None or record.platform == str(platform)


def _pull(layout, image_text, platform):
    from toolbox.oci.reference import ImageRef
    from toolbox.ops.progress import progress_for
    from toolbox.ops.pull import PullOptions, pull_image
    from toolbox.ops.wiring import load_services

    ref = ImageRef.parse(image_text)
    services = load_services(layout)
    client = services.registry_client()
    try:
        pull_image(ref, store=services.store, client=client, options=PullOptions(platform=platform),
                   progress=progress_for(quiet=False))
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
        **{key: config[key] for key in ("entrypoint", "cmd", "env", "working_dir", "user", "stop_signal")},
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


# -- tool plans ---------------------------------------------------------------------------------
def run_settings(text, frozen=False, cwd=None, pull="missing", platform=None, confirm=None, warn=None,
                 tell=None):
    """For the launch path: what `toolbox run TEXT` runs, as plain values (ToolRun.run_settings),
    also written as a tool plan (hot/plans.py) so the next run reads it without this module. A
    locked tool's image is pulled here (unless `pull` is "never") so that the lock entry is
    checked against its index before the plan is written. The first run of a pinned tool
    after its lock entry changed says so (`warn`): a changed lock makes the plan stale, so
    that run comes here."""
    import gc

    from toolbox.hot import plans
    from toolbox.ops.context import Context
    from toolbox.ops.locking import check_stored
    from toolbox.ops.wiring import load_services

    gc.enable()  # a shim turns it off for the launch path; resolving and pulling make cycles
    _refresh_launch_bundle()
    cwd = cwd or os.getcwd()
    services = load_services()
    pins_file = plans.pins_file(services.layout, cwd)
    context = Context(services, cwd, confirm)
    try:
        run = context.tool_run(text, frozen)
        if run.entry is not None:
            from toolbox.oci.platform import Platform, host_platform

            # the lock's own word first
            run.entry.manifest_for(Platform.parse(platform) if platform else host_platform())
            if pull != "never":
                ensure_plan(services.layout, run.image, "missing", platform)
                check_stored(context, run.entry)
            notice = lock_change_notice(services.layout, run)
            if notice:
                context.warnings.append(notice)
        settings = run.run_settings()
        _ensure_pinned_shims(context, tell)
    finally:
        context.close()
        context.report_warnings(warn)
    if context.cacheable and context.pins.path == pins_file:
        path = plans.plan_path(services.layout, pins_file, text)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with services.store.new_file(path) as file:
            file.write(plans.plan_bytes(pins_file, text, settings, context.plan_stamps(), services.environ))
    return settings


def lock_change_notice(layout, run):
    """One line when the pinned `run` (a ToolRun) runs by another lock entry than the last time
    it ran from its pins file ("jq is now 1.7.2 (was 1.7.1), from /p/toolbox.lock"), else None;
    never on a tool's first run."""
    from toolbox.ops import lastrun
    from toolbox.project.lockfile import short_digest

    entry = run.entry
    before = lastrun.swap(layout, run.pinned_by, run.recipe.name, entry.version, entry.digest)
    if before is None or before == (entry.version, entry.digest):
        return None
    version, digest = before
    if version != entry.version:
        return f"{run.recipe.name} is now {entry.version} (was {version}), from {run.lock_path}"
    return (f"{run.recipe.name} {entry.version} is now {short_digest(entry.digest)} "
            f"(was {short_digest(digest)}), from {run.lock_path}")


def _ensure_pinned_shims(context, tell):
    """The first call of a tool after the pins or the lock changed (its plan is made again):
    the tools pinned here that have no shim yet get one, once shims are in use."""
    from toolbox.ops import shimgen as shims

    added = shims.ensure(context.layout, context.pinned_tools())
    if added and tell is not None:
        tell(f"installed shims for {', '.join(added)}, pinned here")
