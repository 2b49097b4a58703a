"""The commands for what runs: `run` (parsed by the launch path, hot/launch.py), `ps` and `rm`
for named containers, and the Docker commands toolbox has no use for, which say what it does
instead."""

import typer

from toolbox.cli import common
from toolbox.cli import support as complete
from toolbox.cli.render import print_listing
from toolbox.cli.support import RunCommand
from toolbox.errors import ToolboxError


def register(app):
    common.add_command(app, run, cls=RunCommand, add_help_option=False,
                       context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                         "help_option_names": []})
    common.add_commands(app, ps, rm)
    for name in _NOT_A_DAEMON:
        common.add_command(app, _not_a_daemon(name), name, hidden=True,
                           context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


def run(ctx: typer.Context):
    """Run a command in a stored image (see `toolbox run --help`)."""
    from toolbox.hot.launch import main as launch

    raise typer.Exit(launch(list(ctx.args)))


def ps(as_json: bool = common.JSON_OPTION):
    """List named containers: writable layers kept by `toolbox run --name NAME`."""
    import datetime

    from toolbox.ops.progress import human_bytes
    from toolbox.runtime import containers

    layout = common.services().layout
    found = [containers.describe(layout, name) for name in containers.names(layout)]

    def row(c):
        created = datetime.datetime.fromtimestamp(c["created"], datetime.timezone.utc).isoformat()
        return (c["name"], c["reference"], "running" if c["running"] else "stopped", human_bytes(c["size"]),
                created)

    print_listing(found, as_json, ("NAME", "IMAGE", "STATUS", "SIZE", "CREATED"), row, to_json=dict)


def rm(names: list[str] = typer.Argument(..., metavar="NAME",
                                         help="Named containers to remove, with their writable layer.",
                                         autocompletion=complete.container_names)):
    """Remove named containers (made by `toolbox run --name`); a running one is refused."""
    from toolbox.runtime import containers

    layout = common.services().layout
    for name in names:
        containers.describe(layout, name)  # all names checked before anything is removed
    for name in names:
        containers.remove(layout, name)
        print(f"Removed container {name}")


# -- what Docker users type first: what toolbox does instead ---------------------------------------
_NOT_A_DAEMON = {
    "exec": ("toolbox keeps no container running to exec into: a tool runs in the foreground, as an "
             "installed program does",
             "for a shell in a kept container: toolbox run --name NAME IMAGE sh (again later: the same "
             "command)"),
    "logs": ("toolbox keeps no logs: a tool writes to your terminal, or wherever you redirect it",
             "redirect it as you would an installed program: toolbox run IMAGE CMD > out.log 2>&1"),
    "stop": ("toolbox starts no background containers: a tool stops as any program does",
             "Ctrl-C in its terminal, or kill its process (it is toolbox's own pid; `toolbox ps` lists named "
             "containers)"),
    "start": ("toolbox has no stopped containers to start: each run is a new process",
              "a named container keeps its writable layer: toolbox run --name NAME IMAGE CMD runs in it "
              "again"),
}


def _not_a_daemon(command):
    def explain(args: list[str] = typer.Argument(None, hidden=True)):
        message, hint = _NOT_A_DAEMON[command]
        raise ToolboxError(f"`{command}`: {message}", hint=hint)

    explain.__doc__ = f"(Docker's `{command}`: says what toolbox does instead.)"
    return explain
