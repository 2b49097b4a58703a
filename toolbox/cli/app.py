"""The `toolbox` command. Each command parses its options, calls a use case, renders the result.
Errors become one message, a hint, and an exit code here and nowhere else."""

import json
import logging
import sys

import typer

from toolbox import __version__
from toolbox.cli import support as complete
from toolbox.cli.support import HelpCommand, RunCommand
from toolbox.errors import EXIT_TOOLBOX_FAILED, ToolboxError

app = typer.Typer(
    name="toolbox",
    help="Run command-line tools from OCI images as if they were installed: rootless, daemonless, pinned per project.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)


volume_app = typer.Typer(help="Named volumes: data kept between runs (toolbox run -v NAME:/path).", no_args_is_help=True)
app.add_typer(volume_app, name="volume")
self_app = typer.Typer(help="toolbox itself: `toolbox self uninstall`.", no_args_is_help=True)
app.add_typer(self_app, name="self")


def command(typer_app=app, name=None, **settings):
    """@command(): a command of `typer_app` whose help is written in the usual notation."""
    return typer_app.command(name, cls=settings.pop("cls", HelpCommand), **settings)


JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
PLATFORM_OPTION = typer.Option(None, "--platform", metavar="OS/ARCH[/VARIANT]", help="The platform to pull instead of this machine's.")


def _version(value):
    if value:
        print(f"toolbox {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Log registry traffic and retries to stderr (never secrets)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="toolbox: %(message)s")


def _services():
    from toolbox.ops.wiring import load_services

    return load_services()


def _print_json(value):
    print(json.dumps(value, indent=2, sort_keys=True))


def _platform(text):
    if text is None:
        return None
    from toolbox.oci.platform import Platform

    return Platform.parse(text)


@command()
def pull(
    reference: str = typer.Argument(..., metavar="REFERENCE", autocompletion=complete.tools_or_images,
                                    help="A tool (jq, python@3.11: the image it runs here) or an image reference (ghcr.io/jqlang/jq:1.7.1, docker.io/library/jq, name@sha256:…)."),
    platform: str = PLATFORM_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the reference and digest."),
):
    """Download an image into the local store (verified, deduplicated, unpacked)."""
    from toolbox.ops.progress import progress_for
    from toolbox.ops.pull import PullOptions, pull_image
    from toolbox.oci.reference import ImageRef

    ref = ImageRef.parse(_image_word(reference, resolve=True))
    services = _services()
    client = services.registry_client()
    try:
        record = pull_image(ref, store=services.store, client=client, options=PullOptions(platform=_platform(platform)),
                            progress=progress_for(quiet, digest_in_result=True))
    finally:
        client.close()
    print(f"{record.reference}@{record.index_digest or record.digest}" if not record.reference.count("@") else record.reference)


@command()
def images(as_json: bool = JSON_OPTION):
    """List stored images, with the tool and version each is and the projects whose locks use it."""
    from toolbox.ops.images import list_images
    from toolbox.ops.progress import human_bytes

    services = _services()
    summaries = list_images(services.store)
    use, records = _store_use(services), {r.reference: r for r in services.store.records()}
    if as_json:
        _print_json([dict(s.to_json(), **_use_json(use, records.get(s.reference))) for s in summaries])
        return
    rows = [("TOOL", "REFERENCE", "DIGEST", "PLATFORM", "SIZE", "PULLED")]
    for s in summaries:
        size = human_bytes(s.size) + ("" if s.complete else " (incomplete)")
        rows.append((_label(use, records.get(s.reference)), _short_reference(s.reference), s.digest.split(":", 1)[1][:12], s.platform, size, s.pulled_at[:16]))
    _print_table(rows)


def _store_use(services):
    """Which tool each stored image is and which locks use it (usage.StoreUse): the locks
    toolbox has seen here and the current project's, the recipes that apply here."""
    from toolbox.ops.tools import Context
    from toolbox.ops.usage import StoreUse, known_locks

    recipes, current = (), ()
    try:
        context = Context(services)
        recipes = list(context.catalog.recipes.values())
        current = (context.pins.path,) if context.pins.is_project else ()
    except (ToolboxError, OSError):  # no project to read here (a broken one, a current directory deleted): the other locks still count
        pass
    return StoreUse(known_locks(services.layout, current), recipes, services.environ.get("HOME"))


def _label(use, record):
    return (use.label(record) if record is not None else "") or "-"


def _use_json(use, record):
    users = use.users(record) if record is not None else []
    return {"tool": (use.label(record) or None) if record is not None else None,
            "used_by": [{"tool": tool, "version": version, "pins": lock.pins_path, "lock": lock.lock_path} for tool, version, lock in users]}


def _image_word(text, resolve=False):
    """A tool name where an image is expected (tools.image_for_word)."""
    from toolbox.ops.tools import Context, image_for_word, parse_tool_spec

    if parse_tool_spec(text) is None:
        return text
    context = Context(_services())
    try:
        return image_for_word(context, text, resolve)
    finally:
        context.close()


def _print_table(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


@command()
def inspect(
    reference: str = typer.Argument(..., metavar="REFERENCE", help="A tool (jq, node@20) or a stored image: reference or digest prefix.",
                                    autocompletion=complete.image_references),
    as_json: bool = JSON_OPTION,
):
    """Show a stored image's configuration and layers."""
    from toolbox.ops.images import inspect_image
    from toolbox.ops.progress import human_bytes

    info = inspect_image(_services().store, _image_word(reference))
    if as_json:
        _print_json(info)
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
        print(f"  {layer['digest'].split(':', 1)[1][:12]}  {human_bytes(layer['size']):>9} compressed  {human_bytes(layer['unpacked_bytes']):>9} on disk")


@command()
def rmi(references: list[str] = typer.Argument(..., metavar="REFERENCE", help="Stored images to remove, or tools (node@20) whose images to remove.",
                                               autocompletion=complete.image_references)):
    """Remove images, and the layers no other image uses."""
    from toolbox.ops.images import remove_images
    from toolbox.ops.progress import counted, human_bytes

    services = _services()
    use = _store_use(services)
    removed, report = remove_images(services.store, [_image_word(reference) for reference in references], typed=references)
    for record in removed:
        print(f"Removed {record.reference}", flush=True)  # before what follows on stderr, in a shared pipe too
    for pins, tool in use.orphaned(removed, services.store.records()):
        print(f"toolbox: warning: {pins} pins {tool} to an image removed: its next run pulls it again", file=sys.stderr)
    print(f"Freed {human_bytes(report.bytes_freed)} ({counted(report.layers_removed, 'layer')})", file=sys.stderr)


@command()
def prune(
    unused: bool = typer.Option(False, "--unused", help="Also remove the images no lock toolbox has seen uses (projects used here, global pins)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Say what would be removed, and remove nothing."),
):
    """Remove layers and blobs no stored image needs, and leftovers of interrupted work; with
    --unused, also the images no lock toolbox has seen uses."""
    from toolbox.ops.images import disk_usage, prune_unused, unused_images
    from toolbox.ops.images import prune as prune_store
    from toolbox.ops.progress import counted, human_bytes

    services = _services()
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
              f"{counted(report.blobs_removed, 'blob')}, {counted(report.temp_removed, 'leftover')}; freed {human_bytes(report.bytes_freed)}")
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
        print(f"{counted(len(found.images), 'image')} no lock toolbox knows uses; removing them would free {human_bytes(found.bytes_freed)}: "
              "`toolbox prune --unused --dry-run` lists them, `toolbox prune --unused` removes them")


def _print_unused(use, result, verb):
    from toolbox.ops.progress import human_bytes

    if not result.images:
        print("Every stored image is used by a lock toolbox knows (or by a named container)")
        return
    print(f"{verb} these images, which no lock toolbox knows uses:")
    _print_table([(f"  {_short_reference(record.reference)}", _label(use, record), human_bytes(size)) for record, size in result.images])


def _print_kept(use):
    """Which locks counted: what to look at when an image you wanted was among the unused."""
    wheres = [lock.where(use.home) + (f" (its lock cannot be read: {lock.problem}; every digest written in it is kept)" if lock.problem else "")
              for lock in use.locks]
    print(f"Kept what these locks use: {', '.join(wheres)}" if wheres else "No lock is known: toolbox has not read one here yet")


@command()
def check(as_json: bool = JSON_OPTION):
    """Verify every blob and layer in the store, remove what is damaged, and name the images to pull again."""
    from toolbox.store.check import check_store
    from toolbox.ops.progress import counted

    report = check_store(_services().store)
    if as_json:
        _print_json(report.to_json())
        return
    print(f"Checked {counted(report.blobs_checked, 'blob')}, {counted(report.layers_checked, 'layer')}, {counted(report.images_checked, 'image')}")
    for line in report.removed:
        print(f"removed {line}")
    for reference in report.incomplete_images:
        print(f"incomplete: {reference} (repair it: toolbox pull {reference})")
    if report.temp_removed:
        print(f"removed {counted(report.temp_removed, 'temp entry', 'temp entries')} of interrupted toolbox processes")
    print("The store is clean" if report.clean else "The store is consistent again; pull the incomplete images")


@command()
def df(as_json: bool = JSON_OPTION):
    """Disk use of the store: per image, what is shared with other images and what is its own,
    and which tool and version it is for which project."""
    from toolbox.ops.images import disk_usage, unused_images
    from toolbox.ops.progress import human_bytes

    services = _services()
    usage = disk_usage(services.store)
    use, records = _store_use(services), {r.reference: r for r in services.store.records()}
    unused = unused_images(services.store, use.used)
    if as_json:
        doc = usage.to_json()
        for image in doc["images"]:
            image.update(_use_json(use, records.get(image["reference"])))
        doc["unused"] = {"references": [record.reference for record, _size in unused.images], "bytes_freed": unused.bytes_freed}
        _print_json(doc)
        return
    rows = [("TOOL", "IMAGE", "SIZE", "SHARED", "UNIQUE")]
    rows += [(_label(use, records.get(u.reference)), _short_reference(u.reference), human_bytes(u.size), human_bytes(u.shared),
              human_bytes(u.unique)) for u in usage.images]
    _print_table(rows)
    print()
    print(f"Layers: {usage.layers_count}, {human_bytes(usage.layers_bytes)}")
    print(f"Blobs:  {usage.blobs_count}, {human_bytes(usage.blobs_bytes)}")
    print(f"Reclaimable by `toolbox prune`: {human_bytes(usage.reclaimable)}")
    if unused.images:
        print(f"Images no lock toolbox knows uses: {len(unused.images)}; removing them would free {human_bytes(unused.bytes_freed)} "
              "(`toolbox prune --unused --dry-run` lists them)")


def _short_reference(reference):
    """A reference by digest with its digest cut to 12 digits, as `images` shows it."""
    name, at, digest = reference.partition("@")
    return f"{name}@{digest[:19]}" if at else reference


@command()
def load(
    path: str = typer.Argument(..., metavar="PATH", help="A `docker save` archive, or an OCI image layout (directory or tar)."),
    name: str = typer.Argument(None, metavar="REFERENCE", help="Reference to store the image under (when the archive names none)."),
    platform: str = typer.Option(None, "--platform", metavar="OS/ARCH[/VARIANT]", help="The platform to pick from a multi-platform layout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only what was loaded."),
):
    """Load images from a file, offline."""
    from toolbox.ops.load import load_images
    from toolbox.ops.progress import progress_for

    records = load_images(path, store=_services().store, name=name, platform=_platform(platform), progress=progress_for(quiet))
    for record in records:
        print(f"Loaded {record.reference}@{record.digest}")


@command(
    cls=RunCommand,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def run(ctx: typer.Context):
    """Run a command in a stored image (see `toolbox run --help`)."""
    from toolbox.hot.launch import main as launch

    raise typer.Exit(launch(list(ctx.args)))


@command()
def ps(as_json: bool = JSON_OPTION):
    """List named containers: writable layers kept by `toolbox run --name NAME`."""
    import datetime

    from toolbox.runtime import containers
    from toolbox.ops.progress import human_bytes

    layout = _services().layout
    found = [containers.describe(layout, name) for name in containers.names(layout)]
    if as_json:
        _print_json(found)
        return
    rows = [("NAME", "IMAGE", "STATUS", "SIZE", "CREATED")]
    for c in found:
        created = datetime.datetime.fromtimestamp(c["created"], datetime.timezone.utc).isoformat()
        rows.append((c["name"], c["reference"], "running" if c["running"] else "stopped", human_bytes(c["size"]), created))
    _print_table(rows)


@command()
def rm(names: list[str] = typer.Argument(..., metavar="NAME", help="Named containers to remove, with their writable layer.",
                                         autocompletion=complete.container_names)):
    """Remove named containers (made by `toolbox run --name`); a running one is refused."""
    from toolbox.runtime import containers

    layout = _services().layout
    for name in names:
        containers.describe(layout, name)  # all names checked before anything is removed
    for name in names:
        containers.remove(layout, name)
        print(f"Removed container {name}")


DOCTOR_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


@command()
def doctor(as_json: bool = JSON_OPTION):
    """Check what this host lets toolbox do, with the fix for each problem (exit 1 if a check fails)."""
    from toolbox.ops.doctor import ChecksFailed, failed, report_json, run_checks
    from toolbox.layout import Layout

    checks = run_checks(Layout.from_env())
    if as_json:
        _print_json(report_json(checks))
    else:
        width = max(len(check.name) for check in checks)
        for check in checks:
            print(f"{DOCTOR_MARKS[check.status]}  {check.name.ljust(width)}  {check.detail}")
            if check.fix and check.status != "ok":
                print(f"{' ' * (width + 8)}fix: {check.fix}")
    broken = failed(checks)
    if broken:
        names = ", ".join(check.name for check in broken)
        raise ChecksFailed(f"{len(broken)} check{'s' if len(broken) > 1 else ''} failed: {names}", hint="each failed check names its fix")


@command(volume_app, "ls")
def volume_ls(as_json: bool = JSON_OPTION):
    """List named volumes."""
    from toolbox.ops.progress import human_bytes
    from toolbox.store.volumes import list_volumes

    volumes = list_volumes(_services().layout)
    if as_json:
        _print_json([v.to_json() for v in volumes])
        return
    _print_table([("NAME", "SIZE", "CREATED", "PATH")] + [(v.name, human_bytes(v.size), v.created, v.path) for v in volumes])


@command(volume_app, "create")
def volume_create(name: str = typer.Argument(..., metavar="NAME", help="The volume's name (letters, digits, '.', '_', '-').")):
    """Create a named volume (what `toolbox run -v NAME:/path` also does on first use)."""
    from toolbox.store.volumes import create_volume

    info, existed = create_volume(_services().layout, name)
    print(name if not existed else f"{name} (exists already)")


@command(volume_app, "inspect")
def volume_inspect(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete.volume_names)):
    """Show where a named volume lives and how big it is."""
    from toolbox.store.volumes import inspect_volume

    _print_json(inspect_volume(_services().layout, name).to_json())


@command(volume_app, "rm")
def volume_rm(names: list[str] = typer.Argument(..., metavar="NAME", help="Volumes to remove, with their content.",
                                                autocompletion=complete.volume_names)):
    """Remove named volumes and everything in them."""
    from toolbox.store.volumes import inspect_volume, remove_volume

    layout = _services().layout
    for name in names:
        inspect_volume(layout, name)  # all names checked before anything is removed
    for name in names:
        remove_volume(layout, name)
        print(f"Removed volume {name}")


@command(self_app, "uninstall")
def self_uninstall(
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="List what would be removed, and remove nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove the config directory too, without asking."),
):
    """Remove toolbox: its launcher and virtualenv (what scripts/install made), the shims, the
    store, the data directory (volumes, kept containers, trust), and, when you say so, the config
    directory; then name the rc file lines to remove."""
    from toolbox.ops import shimgen as shims, uninstall
    from toolbox.layout import Layout
    from toolbox.ops.progress import human_bytes
    from toolbox.prompt import can_ask, confirm_on_terminal
    from toolbox.ops.usage import tilde

    layout = Layout.from_env()
    found = uninstall.parts(layout)
    config = next((part for part in found if part.what == "config"), None)
    ask = config is not None and not yes and not dry_run and can_ask()
    config_note = ("" if yes else " (only with --yes, or if you answer yes)" if dry_run else
                   " (if you answer yes below)" if ask else " (kept: no terminal to ask; --yes removes it)")
    print("Would remove:" if dry_run else "Removing:")
    _print_table([(f"  {part.what}", tilde(part.path) + (f" ({part.detail})" if part.detail else ""),
                   human_bytes(part.size) + (config_note if part is config else "")) for part in found]
                 or [("  nothing: toolbox left nothing here",)])
    keep_config = config is not None and not yes and (not ask or not confirm_on_terminal(
        f"remove your configuration too, {tilde(config.path)} (config.toml, your recipes, global pins)?"))
    lines = uninstall.rc_lines()
    rc, line = shims.rc_file_and_line()
    if not dry_run:  # the venv this runs from goes last, and nothing is imported after it
        for part in sorted(found, key=lambda part: uninstall.REMOVAL_ORDER.index(part.what)):
            if part is not config or not keep_config:
                uninstall.remove(part)
        print("Removed toolbox" + (f"; kept {tilde(config.path)} (remove it by hand, or run this again with --yes)" if keep_config else ""))
    if lines:
        print("Remove the line that runs `toolbox shell-init` from your shell's startup file:" if len(lines) == 1 else
              "Remove the lines that run `toolbox shell-init` from your shells' startup files:")
        for name, number, text in lines:
            quiet = " (it does nothing once toolbox is gone)" if ("[ -x " in text or "test -x " in text) else ""
            print(f"  {name}:{number}: {text.strip()}{quiet}")
    else:
        print(f"If you added a line that runs `toolbox shell-init` to your shell's startup file, remove it ({rc}: {line})")


# -- what Docker users type first: what toolbox does instead ---------------------------------------
_NOT_A_DAEMON = {
    "exec": ("toolbox keeps no container running to exec into: a tool runs in the foreground, as an installed program does",
             "for a shell in a kept container: toolbox run --name NAME IMAGE sh (again later: the same command)"),
    "logs": ("toolbox keeps no logs: a tool writes to your terminal, or wherever you redirect it",
             "redirect it as you would an installed program: toolbox run IMAGE CMD > out.log 2>&1"),
    "stop": ("toolbox starts no background containers: a tool stops as any program does",
             "Ctrl-C in its terminal, or kill its process (it is toolbox's own pid; `toolbox ps` lists named containers)"),
    "start": ("toolbox has no stopped containers to start: each run is a new process",
              "a named container keeps its writable layer: toolbox run --name NAME IMAGE CMD runs in it again"),
}


def _not_a_daemon(command):
    def explain(args: list[str] = typer.Argument(None, hidden=True)):
        message, hint = _NOT_A_DAEMON[command]
        raise ToolboxError(f"`{command}`: {message}", hint=hint)

    explain.__doc__ = f"(Docker's `{command}`: says what toolbox does instead.)"
    return explain


for _command in _NOT_A_DAEMON:
    command(name=_command, hidden=True, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})(_not_a_daemon(_command))


@command()
def login(
    registry: str = typer.Argument(..., metavar="REGISTRY", help="Registry host, e.g. ghcr.io or docker.io."),
    username: str = typer.Option(None, "--username", "-u", metavar="USER", help="The user name (asked on the terminal if not given)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password or token from standard input."),
):
    """Store credentials for a registry (checked against it first), as `docker login` does."""
    from toolbox.oci.auth import Credentials

    # The user name is asked on standard input, the password on the terminal (getpass).
    if (username is None and not sys.stdin.isatty()) or (not password_stdin and not _has_terminal()):
        raise ToolboxError(f"toolbox login needs a terminal to ask for the {'user name' if username is None else 'password'}",
                           hint="give both without one: toolbox login -u USER --password-stdin REGISTRY < file-with-the-password")
    if username is None:
        username = typer.prompt("Username")
    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    if not password:
        raise ToolboxError("empty password", hint="pass the password or token on standard input with --password-stdin")
    host = _registry_host(registry)
    services = _services()
    credentials = Credentials(username, password)
    client = services.registry_client()
    try:
        client.check_login(host, credentials)
    finally:
        client.close()
    path = services.credentials.store(host, credentials)
    print(f"Login succeeded; credentials stored in {path}")


@command()
def logout(registry: str = typer.Argument(..., metavar="REGISTRY", help="Registry host.")):
    """Forget the stored credentials for a registry."""
    host = _registry_host(registry)
    if _services().credentials.erase(host):
        print(f"Removed credentials for {host}")
    else:
        raise ToolboxError(f"no stored credentials for {host}", hint="nothing to forget; `toolbox login` stores them")


def _has_terminal():
    import os

    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


def _registry_host(text):
    from toolbox.oci.reference import canonical_registry

    return canonical_registry(text.removeprefix("https://").removeprefix("http://").split("/", 1)[0])


EXIT_INTERRUPTED = 130
from toolbox.cli import tools as cli_tools  # noqa: E402  (after the app and its helpers it uses)

cli_tools.register(app)


@command(name="help")
def help_(names: list[str] = typer.Argument(None, metavar="COMMAND", help="A command, or a group and its command: pull, volume ls.",
                                            autocompletion=complete.command_words)):
    """Show the help of toolbox, or of one of its commands (as --help or -h after it does)."""
    raise typer.Exit(main([*(names or []), "--help"]))


# Work in progress lives in locked temp directories, removed on the way out (or by the next
# toolbox run if this one was killed outright), so an interrupt never leaves half an image.
INTERRUPTED_MESSAGE = "toolbox: interrupted; nothing partial was kept"


def report_error(err, stream=None):
    stream = stream or sys.stderr
    print(f"toolbox: error: {err.message}", file=stream)
    if err.hint:
        print(f"toolbox: hint: {err.hint}", file=stream)


def main(argv=None):
    """The edge of every command but `run` (entry.py): whatever goes wrong below ends here as
    one `toolbox: error:` line, a `toolbox: hint:` line and an exit status, never a traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _exit_code(_invoke(argv))
    except ToolboxError as err:
        report_error(err)
        return err.exit_code
    except KeyboardInterrupt:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exit_:  # shell completion, and sys.exit() in typer or below
        return _exit_code(exit_.code)
    except OSError as err:  # a file toolbox needed and could not use
        from toolbox.errors import from_os_error
        from toolbox.layout import Layout

        report_error(from_os_error(err, Layout.from_env()))
        return EXIT_TOOLBOX_FAILED
    except Exception as err:  # noqa: BLE001 — a bug: still one line, and toolbox's status
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            import traceback

            traceback.print_exc()
        report_error(ToolboxError(f"unexpected {type(err).__name__}: {err}",
                                  hint="this is a bug in toolbox: run the command again with --debug (before the command) to see where, and report it"))
        return EXIT_TOOLBOX_FAILED


def _invoke(argv):
    """The app, with its usage errors (unknown commands and options, missing arguments) raised
    as ToolboxError. Returns the exit status typer ended with."""
    import typer.main

    click = complete.click_module()
    root = typer.main.get_command(app)
    unknown = complete.unknown_command(root, argv)
    if unknown is not None:
        raise ToolboxError(*unknown)
    try:
        result = root.main(args=argv, prog_name="toolbox", standalone_mode=False)
    except click.exceptions.UsageError as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # `toolbox`, `toolbox volume`: the help is the answer
            print(err.ctx.get_help())
            return 0
        raise ToolboxError(*complete.usage_error(err)) from None
    except typer.Abort as err:  # a prompt that got Ctrl-C, or end of input
        if isinstance(err.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise ToolboxError("a question got no answer (end of input)",
                           hint="answer it on a terminal, or give the value as an option (see --help)") from None
    except click.exceptions.ClickException as err:
        raise ToolboxError(err.format_message(), hint="`toolbox --help` lists the commands; COMMAND --help shows one") from None
    # typer returns the status a command ended with (typer.Exit), or the command's own return
    # value, which toolbox's commands do not use.
    return result if isinstance(result, int) else 0


def _exit_code(code):
    """The status to exit with: a command's own (`run` passes the tool's on), 130 for Ctrl-C
    inside a command (said here, after the command printed nothing)."""
    if code is None:
        return 0
    if code == EXIT_INTERRUPTED:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else EXIT_TOOLBOX_FAILED


if __name__ == "__main__":
    sys.exit(main())
