"""The commands for what runs: `run` and `exec` (parsed on the launch path: hot/launch.py,
hot/join.py); `ps`, `logs`, `stop`, `start`, `restart` and `rm` for services (`run -d`) and named
containers (ops/services.py)."""

import time

import typer

from toolbox.cli import common
from toolbox.cli import support as complete
from toolbox.cli.render import human_duration, print_listing
from toolbox.cli.support import RunCommand


def register(app):
    common.add_command(app, run, cls=RunCommand, add_help_option=False,
                       context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                         "help_option_names": []})
    common.add_command(app, exec_, "exec", add_help_option=False,
                       context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                         "help_option_names": []})
    common.add_commands(app, ps, logs, stop, start, restart, rm)


def run(ctx: typer.Context):
    """Run a command in a stored image (see `toolbox run --help`)."""
    from toolbox.hot.launch import main as launch

    raise typer.Exit(launch(list(ctx.args)))


def exec_(ctx: typer.Context):
    """Run a command in a running service (see `toolbox exec --help`)."""
    from toolbox.hot.join import main as exec_in_service

    raise typer.Exit(exec_in_service(list(ctx.args)))


NAMES_ARGUMENT = typer.Argument(..., metavar="NAME", autocompletion=complete.container_names)


def ps(everything: bool = typer.Option(False, "--all", "-a",
                                       help="Also the containers that are not running."),
       as_json: bool = common.JSON_OPTION):
    """List running services and containers (-a: all of them, kept by `toolbox run -d` or `--name`)."""
    from toolbox.ops import services

    found = services.listing(common.services().layout, everything)
    print_listing(found, as_json, ("NAME", "IMAGE", "STATUS", "PID", "PORTS", "VOLUMES"), ps_row,
                  to_json=_ps_json)


def ps_row(c):
    """STATUS as docker's ps says it: `running, up 5 minutes`, `exited (0) 3 minutes ago`."""
    status = c["status"]
    if c["running"] and c["started"]:
        status += f", up {human_duration(time.time() - c['started'])}"
        if c.get("monitor") is False:
            status += " (monitor gone: no logs or ports until restarted)"
    elif c.get("finished"):
        status += f" {human_duration(time.time() - c['finished'])} ago"
    return (c["name"], c["image"], status, str(c["pid"] or ""), ", ".join(c["ports"]),
            ", ".join(c["volumes"]))


def _ps_json(c):
    return {key: value for key, value in c.items() if key != "path"}


def logs(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete.container_names),
         follow: bool = typer.Option(False, "--follow", "-f",
                                     help="Go on printing what it writes, until it stops."),
         tail: int = typer.Option(None, "--tail", "-n", metavar="N", help="Only the last N lines."),
         since: str = typer.Option(None, "--since", metavar="WHEN",
                                   help="Only lines since then: 10m, 1h30m, a Unix time, an RFC 3339 time."),
         timestamps: bool = typer.Option(False, "--timestamps", "-t", help="Each line's time first.")):
    """Print what a service wrote to stdout and stderr (each to its own)."""
    import sys

    from toolbox.ops import services

    layout = common.services().layout
    since_text = services.since_timestamp(since) if since else None
    read = services.follow_log if follow else services.read_log
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def write_to(stream):
        def write(data):
            stream.write(data)
            if follow:
                stream.flush()
        return write

    try:
        services.write_lines(read(layout, name, since=since_text, tail=tail), write_to(out), write_to(err),
                             timestamps)
    except BrokenPipeError:
        pass  # `toolbox logs NAME | head`
    except KeyboardInterrupt:
        pass  # Ctrl-C ends -f
    finally:
        try:
            out.flush()
        except BrokenPipeError:
            pass


def stop(names: list[str] = NAMES_ARGUMENT,
         timeout: float = typer.Option(10.0, "--time", "-t", metavar="SECONDS",
                                       help="How long to wait after the stop signal before SIGKILL.")):
    """Stop services: their image's stop signal (SIGTERM by default), SIGKILL after the grace time."""
    from toolbox.ops import services

    layout = common.services().layout
    for name in names:
        services.container_path(layout, name)  # all names checked before anything is stopped
    for name in names:
        services.stop(layout, name, timeout)
        print(name)


def start(names: list[str] = NAMES_ARGUMENT):
    """Start stopped services again, with the settings and writable layer they had."""
    from toolbox.ops import services

    layout = common.services().layout
    for name in names:
        services.start(layout, name)
        print(name)


def restart(names: list[str] = NAMES_ARGUMENT,
            timeout: float = typer.Option(10.0, "--time", "-t", metavar="SECONDS",
                                          help="How long to wait after the stop signal before SIGKILL.")):
    """Stop services (if running) and start them again."""
    from toolbox.ops import services

    layout = common.services().layout
    for name in names:
        services.stop(layout, name, timeout)
        services.start(layout, name)
        print(name)


def rm(names: list[str] = typer.Argument(..., metavar="NAME",
                                         help="Containers to remove, with their writable layer.",
                                         autocompletion=complete.container_names),
       force: bool = typer.Option(False, "--force", "-f", help="Kill a running service first.")):
    """Remove containers (services and `toolbox run --name` ones); never a named volume."""
    from toolbox.ops import services

    layout = common.services().layout
    for name in names:
        services.container_path(layout, name)  # all names checked before anything is removed
    for name in names:
        services.remove(layout, name, force)
        print(f"Removed container {name}")
