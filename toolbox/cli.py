"""The `toolbox` command. Each command parses its options, calls a use case, renders the result.
Errors become one message, a hint, and an exit code here and nowhere else."""

import json
import logging
import sys

import typer

from . import __version__
from .errors import EXIT_TOOLBOX_FAILED, ToolboxError

app = typer.Typer(
    name="toolbox",
    help="Run command-line tools from OCI images as if they were installed: rootless, daemonless, pinned per project.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


volume_app = typer.Typer(help="Named volumes: data kept between runs (toolbox run -v NAME:/path).", no_args_is_help=True)
app.add_typer(volume_app, name="volume")


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
    from .services import load_services

    return load_services()


def _print_json(value):
    print(json.dumps(value, indent=2, sort_keys=True))


def _platform(text):
    if text is None:
        return None
    from .platform import Platform

    return Platform.parse(text)


@app.command()
def pull(
    reference: str = typer.Argument(..., help="A tool (jq, python@3.11: the image it runs here) or an image reference (ghcr.io/jqlang/jq:1.7.1, docker.io/library/jq, name@sha256:…)."),
    platform: str = typer.Option(None, "--platform", help="os/arch[/variant] to pull instead of this machine's."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the reference and digest."),
):
    """Download an image into the local store (verified, deduplicated, unpacked)."""
    from .progress import progress_for
    from .pull import PullOptions, pull_image
    from .reference import ImageRef

    ref = ImageRef.parse(_image_word(reference, resolve=True))
    services = _services()
    client = services.registry_client()
    try:
        record = pull_image(ref, store=services.store, client=client, options=PullOptions(platform=_platform(platform)), progress=progress_for(quiet))
    finally:
        client.close()
    print(f"{record.reference}@{record.index_digest or record.digest}" if not record.reference.count("@") else record.reference)


@app.command()
def images(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """List stored images."""
    from .images import list_images
    from .progress import human_bytes

    services = _services()
    summaries = list_images(services.store)
    labels = _tool_labels(services)
    if as_json:
        _print_json([dict(s.to_json(), tool=_label(labels, s.reference) or None) for s in summaries])
        return
    rows = [("TOOL", "REFERENCE", "DIGEST", "PLATFORM", "SIZE", "PULLED")]
    for s in summaries:
        size = human_bytes(s.size) + ("" if s.complete else " (incomplete)")
        reference = s.reference.split("@")[0] + "@" + s.reference.split("@")[1][:19] if "@" in s.reference else s.reference
        rows.append((_label(labels, s.reference) or "-", reference, s.digest.split(":", 1)[1][:12], s.platform, size, s.pulled_at[:16]))
    _print_table(rows)


def _tool_labels(services):
    """Which tool each stored image is, as seen from here (tools.tool_labels); none when the
    project's files cannot be read (images are listed all the same)."""
    from .tools import Context, tool_labels

    try:
        return tool_labels(Context(services))
    except ToolboxError:
        return {}


def _label(labels, reference):
    from .tools import label_for

    return label_for(labels, reference)


def _image_word(text, resolve=False):
    """A tool name where an image is expected (tools.image_for_word)."""
    from .tools import Context, image_for_word, parse_tool_spec

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


@app.command()
def inspect(
    reference: str = typer.Argument(..., help="A tool (jq, node@20) or a stored image: reference or digest prefix."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
):
    """Show a stored image's configuration and layers."""
    from .images import inspect_image
    from .progress import human_bytes

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


@app.command()
def rmi(references: list[str] = typer.Argument(..., help="Stored images to remove, or tools (node@20) whose images to remove.")):
    """Remove images, and the layers no other image uses."""
    from .images import remove_images
    from .progress import human_bytes

    from .tools import projects_using

    services = _services()
    removed, report = remove_images(services.store, [_image_word(reference) for reference in references])
    for reference in removed:
        print(f"Removed {reference}")
    for pins, tool in projects_using(services.layout, removed):
        print(f"toolbox: warning: {pins} pins {tool} to an image removed: its next run pulls it again", file=sys.stderr)
    print(f"Freed {human_bytes(report.bytes_freed)} ({report.layers_removed} layers)", file=sys.stderr)


@app.command()
def prune():
    """Remove layers and blobs no stored image needs, and leftovers of interrupted work."""
    from .images import prune as prune_store
    from .progress import human_bytes

    report = prune_store(_services().store)
    print(f"Removed {report.layers_removed} layers, {report.blobs_removed} blobs, {report.temp_removed} leftovers; freed {human_bytes(report.bytes_freed)}")


@app.command()
def check(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Verify every blob and layer in the store, remove what is damaged, and name the images to pull again."""
    from .check import check_store

    report = check_store(_services().store)
    if as_json:
        _print_json(report.to_json())
        return
    print(f"Checked {report.blobs_checked} blobs, {report.layers_checked} layers, {report.images_checked} images")
    for line in report.removed:
        print(f"removed {line}")
    for reference in report.incomplete_images:
        print(f"incomplete: {reference} (repair it: toolbox pull {reference})")
    if report.temp_removed:
        print(f"removed {report.temp_removed} temp entries of interrupted toolbox processes")
    print("The store is clean" if report.clean else "The store is consistent again; pull the incomplete images")


@app.command()
def df(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Disk use of the store: per image, what is shared with other images and what is its own."""
    from .images import disk_usage
    from .progress import human_bytes

    usage = disk_usage(_services().store)
    if as_json:
        _print_json(usage.to_json())
        return
    rows = [("IMAGE", "SIZE", "SHARED", "UNIQUE")]
    rows += [(u.reference, human_bytes(u.size), human_bytes(u.shared), human_bytes(u.unique)) for u in usage.images]
    _print_table(rows)
    print()
    print(f"Layers: {usage.layers_count}, {human_bytes(usage.layers_bytes)}")
    print(f"Blobs:  {usage.blobs_count}, {human_bytes(usage.blobs_bytes)}")
    print(f"Reclaimable by `toolbox prune`: {human_bytes(usage.reclaimable)}")


@app.command()
def load(
    path: str = typer.Argument(..., help="A `docker save` archive, or an OCI image layout (directory or tar)."),
    name: str = typer.Argument(None, help="Reference to store the image under (when the archive names none)."),
    platform: str = typer.Option(None, "--platform", help="os/arch[/variant] to pick from a multi-platform layout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Load images from a file, offline."""
    from .load import load_images
    from .progress import progress_for

    records = load_images(path, store=_services().store, name=name, platform=_platform(platform), progress=progress_for(quiet))
    for record in records:
        print(f"Loaded {record.reference}@{record.digest}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def run(ctx: typer.Context):
    """Run a command in a stored image (see `toolbox run --help`)."""
    from .launch import main as launch

    raise typer.Exit(launch(list(ctx.args)))


@app.command()
def ps(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """List named containers: writable layers kept by `toolbox run --name NAME`."""
    import datetime

    from . import containers
    from .progress import human_bytes

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


@app.command()
def rm(names: list[str] = typer.Argument(..., help="Named containers to remove, with their writable layer.")):
    """Remove named containers (made by `toolbox run --name`); a running one is refused."""
    from . import containers

    layout = _services().layout
    for name in names:
        containers.describe(layout, name)  # all names checked before anything is removed
    for name in names:
        containers.remove(layout, name)
        print(f"Removed container {name}")


DOCTOR_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Check what this host lets toolbox do, with the fix for each problem (exit 1 if a check fails)."""
    from .doctor import ChecksFailed, failed, report_json, run_checks
    from .layout import Layout

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


@volume_app.command("ls")
def volume_ls(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """List named volumes."""
    from .progress import human_bytes
    from .volumes import list_volumes

    volumes = list_volumes(_services().layout)
    if as_json:
        _print_json([v.to_json() for v in volumes])
        return
    _print_table([("NAME", "SIZE", "CREATED", "PATH")] + [(v.name, human_bytes(v.size), v.created, v.path) for v in volumes])


@volume_app.command("create")
def volume_create(name: str = typer.Argument(..., help="The volume's name (letters, digits, '.', '_', '-').")):
    """Create a named volume (what `toolbox run -v NAME:/path` also does on first use)."""
    from .volumes import create_volume

    info, existed = create_volume(_services().layout, name)
    print(name if not existed else f"{name} (exists already)")


@volume_app.command("inspect")
def volume_inspect(name: str):
    """Show where a named volume lives and how big it is."""
    from .volumes import inspect_volume

    _print_json(inspect_volume(_services().layout, name).to_json())


@volume_app.command("rm")
def volume_rm(names: list[str] = typer.Argument(..., help="Volumes to remove, with their content.")):
    """Remove named volumes and everything in them."""
    from .volumes import inspect_volume, remove_volume

    layout = _services().layout
    for name in names:
        inspect_volume(layout, name)  # all names checked before anything is removed
    for name in names:
        remove_volume(layout, name)
        print(f"Removed volume {name}")


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
    app.command(name=_command, hidden=True, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})(_not_a_daemon(_command))


@app.command()
def login(
    registry: str = typer.Argument(..., help="Registry host, e.g. ghcr.io or docker.io."),
    username: str = typer.Option(None, "--username", "-u"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password or token from standard input."),
):
    """Store credentials for a registry (checked against it first), as `docker login` does."""
    from .auth import Credentials

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


@app.command()
def logout(registry: str = typer.Argument(..., help="Registry host.")):
    """Forget the stored credentials for a registry."""
    host = _registry_host(registry)
    if _services().credentials.erase(host):
        print(f"Removed credentials for {host}")
    else:
        raise ToolboxError(f"no stored credentials for {host}")


def _registry_host(text):
    from .reference import DOCKER_HUB

    host = text.removeprefix("https://").removeprefix("http://").split("/", 1)[0].lower()
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host


EXIT_INTERRUPTED = 130
from . import cli_tools  # noqa: E402  (after the app and its helpers it uses)

cli_tools.register(app)

# Work in progress lives in locked temp directories, removed on the way out (or by the next
# toolbox run if this one was killed outright), so an interrupt never leaves half an image.
INTERRUPTED_MESSAGE = "toolbox: interrupted; nothing partial was kept"


def report_error(err, stream=None):
    stream = stream or sys.stderr
    print(f"toolbox: error: {err.message}", file=stream)
    if err.hint:
        print(f"toolbox: hint: {err.hint}", file=stream)


def main(argv=None):
    try:
        app(args=argv, prog_name="toolbox")
    except ToolboxError as err:
        report_error(err)
        return err.exit_code
    except KeyboardInterrupt:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:  # a file toolbox needed and could not use: one line, not a traceback
        report_error(ToolboxError(f"{err.strerror or err}{': ' + str(err.filename) if err.filename else ''}"))
        return EXIT_TOOLBOX_FAILED
    except SystemExit as exit_:
        return _exit_code(exit_.code)
    return 0


def _exit_code(code):
    """typer ends every run with SystemExit: 0, 130 for Ctrl-C inside a command (after printing
    nothing), 1 or 2 for its own usage errors (already printed), which are toolbox failures."""
    if code is None or code == 0:
        return 0
    if code == EXIT_INTERRUPTED:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return EXIT_INTERRUPTED
    if code in (1, 2):
        return EXIT_TOOLBOX_FAILED
    return code if isinstance(code, int) else EXIT_TOOLBOX_FAILED


if __name__ == "__main__":
    sys.exit(main())
