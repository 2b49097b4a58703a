"""The commands for stored images: `pull`, `images`, `inspect`, `rmi`, `prune`, `check`, `df`,
`load`. Where an image is expected, a tool's name works too (jq, node@20: the image it runs
here)."""

import json
import sys

import typer

from toolbox.cli import common
from toolbox.cli import support as complete
from toolbox.cli.render import print_json, print_listing, print_table
from toolbox.errors import ToolboxError


def register(app):
    common.add_commands(app, pull, images, inspect, rmi, prune, check, df, load)


def pull(
    reference: str = typer.Argument(..., metavar="REFERENCE", autocompletion=complete.tools_or_images,
                                    help="A tool (jq, python@3.11: the image it runs here) or an image "
                                         "reference (ghcr.io/jqlang/jq:1.7.1, docker.io/library/jq, "
                                         "name@sha256:…)."),
    platform: str = common.PLATFORM_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the reference and digest."),
):
    """Download an image into the local store (verified, deduplicated, unpacked)."""
    from toolbox.oci.reference import ImageRef
    from toolbox.ops.progress import progress_for
    from toolbox.ops.pull import PullOptions, pull_image

    ref = ImageRef.parse(_image_word(reference, resolve=True))
    services = common.services()
    client = services.registry_client()
    try:
        record = pull_image(ref, store=services.store, client=client,
                            options=PullOptions(platform=common.platform(platform)),
                            progress=progress_for(quiet, digest_in_result=True))
    finally:
        client.close()
    print(f"{record.reference}@{record.index_digest or record.digest}"
          if not record.reference.count("@") else record.reference)


def images(as_json: bool = common.JSON_OPTION):
    """List stored images, with the tool and version each is and the projects whose locks use it."""
    from toolbox.ops.images import list_images
    from toolbox.ops.progress import human_bytes

    services = common.services()
    summaries = list_images(services.store)
    use, records = _store_use(services), {r.reference: r for r in services.store.records()}

    def row(s):
        size = human_bytes(s.size) + ("" if s.complete else " (incomplete)")
        return (_label(use, records.get(s.reference)), _short_reference(s.reference),
                s.digest.split(":", 1)[1][:12], s.platform, size, s.pulled_at[:16])

    print_listing(summaries, as_json, ("TOOL", "REFERENCE", "DIGEST", "PLATFORM", "SIZE", "PULLED"), row,
                  lambda s: dict(s.to_json(), **_use_json(use, records.get(s.reference))))


def _store_use(services):
    """Which tool each stored image is and which locks use it (usage.StoreUse): the locks
    toolbox has seen here and the current project's, the recipes that apply here."""
    from toolbox.ops.context import Context
    from toolbox.ops.usage import StoreUse, known_locks

    recipes, current = (), ()
    try:
        context = Context(services)
        recipes = list(context.catalog.recipes.values())
        current = (context.pins.path,) if context.pins.is_project else ()
    except (ToolboxError, OSError):
        # no project to read here (a broken one, a current directory deleted): the other locks still count
        pass
    return StoreUse(known_locks(services.layout, current), recipes, services.environ.get("HOME"))


def _label(use, record):
    return (use.label(record) if record is not None else "") or "-"


def _use_json(use, record):
    users = use.users(record) if record is not None else []
    return {"tool": (use.label(record) or None) if record is not None else None,
            "used_by": [{"tool": tool, "version": version, "pins": lock.pins_path, "lock": lock.lock_path}
                        for tool, version, lock in users]}


def _image_word(text, resolve=False):
    """A tool name where an image is expected (tools.image_for_word)."""
    from toolbox.ops.context import context_here, image_for_word, parse_tool_spec

    if parse_tool_spec(text) is None:
        return text
    context = context_here()
    try:
        return image_for_word(context, text, resolve)
    finally:
        context.close()


def _print_container(info, as_json):
    if as_json:
        print_json(info)
        return
    fields = (("Name", info["name"]), ("Kind", info["kind"]),
              ("Image", f"{info['image']} ({info['reference']})"), ("Status", info["status"]),
              ("Pid", info["pid"]), ("Command", json.dumps(info["command"])),
              ("WorkingDir", info["working_dir"]), ("User", info["user"]), ("Network", info["network"]),
              ("Ports", ", ".join(info["ports"])), ("Volumes", ", ".join(info["volumes"])),
              ("StopSignal", info["stop_signal"]), ("Log", info["log"]), ("Layer", info["writable_layer"]))
    for label, value in fields:
        if value not in (None, ""):
            print(f"{label + ':':<12} {value}")
    if info["env"]:
        print("Env:")
        for entry in info["env"]:
            print(f"  {entry}")


def inspect(
    reference: str = typer.Argument(..., metavar="REFERENCE",
                                    help="A container, a tool (jq, node@20) or a stored image: "
                                         "reference or digest prefix.",
                                    autocompletion=complete.image_references),
    as_json: bool = common.JSON_OPTION,
):
    """Show a container's settings and state, or a stored image's configuration and layers (a
    container of that name first, as Docker's inspect looks)."""
    from toolbox.ops import services
    from toolbox.ops.images import inspect_image
    from toolbox.ops.progress import human_bytes

    layout = common.services().layout
    if services.exists(layout, reference):
        _print_container(services.inspect(layout, reference), as_json)
        return
    info = inspect_image(common.services().store, _image_word(reference))
    if as_json:
        print_json(info)
        return
    config = info["config"]
    print(f"Reference:   {info['reference']}")
    print(f"Digest:      {info['digest']}")
    if info["index_digest"]:
        print(f"Index:       {info['index_digest']}")
    print(f"Platform:    {config['platform']}")
    print(f"Entrypoint:  {json.dumps(config['entrypoint'])}")
    print(f"Cmd:         {json.dumps(config['cmd'])}")
    print(f"WorkingDir:  {config['working_dir'] or '/'}")
    print(f"User:        {config['user'] or '(image default: root)'}")
    print("Env:")
    for entry in config["env"]:
        print(f"  {entry}")
    print("Layers:")
    for layer in info["layers"]:
        print(f"  {layer['digest'].split(':', 1)[1][:12]}  {human_bytes(layer['size']):>9} compressed  "
              f"{human_bytes(layer['unpacked_bytes']):>9} on disk")


def rmi(references: list[str] = typer.Argument(..., metavar="REFERENCE",
                                               help="Stored images to remove, or tools (node@20) whose "
                                                    "images to remove.",
                                               autocompletion=complete.image_references)):
    """Remove images, and the layers no other image uses."""
    from toolbox.ops.images import remove_images
    from toolbox.ops.progress import counted, human_bytes

    services = common.services()
    use = _store_use(services)
    removed, report = remove_images(services.store, [_image_word(reference) for reference in references],
                                    typed=references)
    for record in removed:
        # before what follows on stderr, in a shared pipe too
        print(f"Removed {record.reference}", flush=True)
    for pins, tool in use.orphaned(removed, services.store.records()):
        print(f"toolbox: warning: {pins} pins {tool} to an image removed: its next run pulls it again",
              file=sys.stderr)
    print(f"Freed {human_bytes(report.bytes_freed)} ({counted(report.layers_removed, 'layer')})",
          file=sys.stderr)


def prune(
    unused: bool = typer.Option(False, "--unused", help="Also remove the images no lock toolbox has seen "
                                                        "uses (projects used here, global pins)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n",
                                 help="Say what would be removed, and remove nothing."),
):
    """Remove layers and blobs no stored image needs, and leftovers of interrupted work; with
    --unused, also the images no lock toolbox has seen uses."""
    from toolbox.ops.images import disk_usage, prune_unused, unused_images
    from toolbox.ops.images import prune as prune_store
    from toolbox.ops.progress import counted, human_bytes

    services = common.services()
    use = _store_use(services)
    if dry_run:
        dangling = disk_usage(services.store).reclaimable
        if unused:
            found = unused_images(services.store, use.used)
            _print_unused(use, found, "Would remove")
            print(f"Would free {human_bytes(found.bytes_freed + dangling)}")
            _print_kept(use)
        else:
            print(f"Would free {human_bytes(dangling)} of layers and blobs no image needs")
            _offer_unused(services, use)
        return
    if unused:
        from toolbox.ops.usage import forget_missing

        result = prune_unused(services.store, use.used)
        _print_unused(use, result, "Removed")
        forget_missing(services.layout)
        report = result.report
        print(f"Removed {counted(len(result.images), 'image')}, {counted(report.layers_removed, 'layer')}, "
              f"{counted(report.blobs_removed, 'blob')}, {counted(report.temp_removed, 'leftover')}; freed "
              f"{human_bytes(report.bytes_freed)}")
        _print_kept(use)
        return
    report = prune_store(services.store)
    print(f"Removed {counted(report.layers_removed, 'layer')}, {counted(report.blobs_removed, 'blob')}, "
          f"{counted(report.temp_removed, 'leftover')}; freed {human_bytes(report.bytes_freed)}")
    _offer_unused(services, use)


def _offer_unused(services, use):
    from toolbox.ops.images import unused_images
    from toolbox.ops.progress import counted, human_bytes

    found = unused_images(services.store, use.used)
    if found.images:
        print(f"{counted(len(found.images), 'image')} no lock toolbox knows uses; removing them would free "
              f"{human_bytes(found.bytes_freed)}: "
              "`toolbox prune --unused --dry-run` lists them, `toolbox prune --unused` removes them")


def _print_unused(use, result, verb):
    from toolbox.ops.progress import human_bytes

    if not result.images:
        print("Every stored image is used by a lock toolbox knows (or by a named container)")
        return
    print(f"{verb} these images, which no lock toolbox knows uses:")
    print_table([(f"  {_short_reference(record.reference)}", _label(use, record), human_bytes(size))
                 for record, size in result.images])


def _print_kept(use):
    """Which locks counted: what to look at when an image you wanted was among the unused."""
    wheres = [lock.where(use.home) + (f" (its lock cannot be read: {lock.problem}; every digest written in "
                                      "it is kept)" if lock.problem else "")
              for lock in use.locks]
    print(f"Kept what these locks use: {', '.join(wheres)}" if wheres
          else "No lock is known: toolbox has not read one here yet")


def check(as_json: bool = common.JSON_OPTION):
    """Verify every blob and layer in the store, remove what is damaged, and name the images to pull again."""
    from toolbox.ops.progress import counted
    from toolbox.store.check import check_store

    report = check_store(common.services().store)
    if as_json:
        print_json(report.to_json())
        return
    print(f"Checked {counted(report.blobs_checked, 'blob')}, {counted(report.layers_checked, 'layer')}, "
          f"{counted(report.images_checked, 'image')}")
    for line in report.removed:
        print(f"removed {line}")
    for reference in report.incomplete_images:
        print(f"incomplete: {reference} (repair it: toolbox pull {reference})")
    if report.temp_removed:
        print(f"removed {counted(report.temp_removed, 'temp entry', 'temp entries')} of interrupted toolbox "
              "processes")
    print("The store is clean" if report.clean else "The store is consistent again; pull the incomplete "
                                                    "images")


def df(as_json: bool = common.JSON_OPTION):
    """Disk use of the store: per image, what is shared with other images and what is its own,
    and which tool and version it is for which project."""
    from toolbox.ops.images import disk_usage, unused_images
    from toolbox.ops.progress import human_bytes

    services = common.services()
    usage = disk_usage(services.store)
    use, records = _store_use(services), {r.reference: r for r in services.store.records()}
    unused = unused_images(services.store, use.used)
    if as_json:
        doc = usage.to_json()
        for image in doc["images"]:
            image.update(_use_json(use, records.get(image["reference"])))
        doc["unused"] = {"references": [record.reference for record, _size in unused.images],
                         "bytes_freed": unused.bytes_freed}
        print_json(doc)
        return
    rows = [("TOOL", "IMAGE", "SIZE", "SHARED", "UNIQUE")]
    rows += [(_label(use, records.get(u.reference)), _short_reference(u.reference), human_bytes(u.size),
              human_bytes(u.shared), human_bytes(u.unique)) for u in usage.images]
    print_table(rows)
    print()
    print(f"Layers: {usage.layers_count}, {human_bytes(usage.layers_bytes)}")
    print(f"Blobs:  {usage.blobs_count}, {human_bytes(usage.blobs_bytes)}")
    print(f"Reclaimable by `toolbox prune`: {human_bytes(usage.reclaimable)}")
    if unused.images:
        print(f"Images no lock toolbox knows uses: {len(unused.images)}; removing them would free "
              f"{human_bytes(unused.bytes_freed)} "
              "(`toolbox prune --unused --dry-run` lists them)")


def _short_reference(reference):
    """A reference by digest with its digest cut to 12 digits, as `images` shows it."""
    name, at, digest = reference.partition("@")
    return f"{name}@{digest[:19]}" if at else reference


def load(
    path: str = typer.Argument(..., metavar="PATH",
                               help="A `docker save` archive, or an OCI image layout (directory or tar)."),
    name: str = typer.Argument(None, metavar="REFERENCE",
                               help="Reference to store the image under (when the archive names none)."),
    platform: str = typer.Option(None, "--platform", metavar="OS/ARCH[/VARIANT]",
                                 help="The platform to pick from a multi-platform layout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only what was loaded."),
):
    """Load images from a file, offline."""
    from toolbox.ops.load import load_images
    from toolbox.ops.progress import progress_for

    records = load_images(path, store=common.services().store, name=name, platform=common.platform(platform),
                          progress=progress_for(quiet))
    for record in records:
        print(f"Loaded {record.reference}@{record.digest}")
