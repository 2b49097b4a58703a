"""The commands for a project's services (toolbox.toml's [services.NAME]): `up`, `down` and
`status` (ops/project_services.py)."""

import typer

from toolbox.cli import common
from toolbox.cli.render import print_listing

SERVICES_ARGUMENT = typer.Argument(None, metavar="[SERVICE]...",
                                   help="Services of this project's toolbox.toml (default: all).")


def register(app):
    common.add_commands(app, up, down, status)


def _context():
    from toolbox.ops.context import context_here
    from toolbox.prompt import confirm_on_terminal

    return context_here(confirm=confirm_on_terminal)


def up(names: list[str] = SERVICES_ARGUMENT,
       timeout: float = typer.Option(60.0, "--timeout", metavar="SECONDS",
                                     help="How long to wait for each to accept connections.")):
    """Start this project's services and wait until they accept connections."""
    from toolbox.ops.project_services import up as start_all

    for state in start_all(_context(), tuple(names or ()), timeout):
        ports = f"  {', '.join(state.ports)}" if state.ports else ""
        print(f"{state.name}: {state.action} ({state.container}){ports}")
        if state.connect:
            print(f"  connect: {state.connect}")


def down(names: list[str] = SERVICES_ARGUMENT,
         volumes: bool = typer.Option(False, "--volumes", "-v", help="Also remove their named volumes."),
         timeout: float = typer.Option(10.0, "--time", "-t", metavar="SECONDS",
                                       help="How long to wait after the stop signal before SIGKILL.")):
    """Stop and remove this project's services (their volumes stay, unless --volumes)."""
    from toolbox.ops.project_services import down as remove_all

    for state in remove_all(_context(), tuple(names or ()), volumes, timeout):
        print(f"{state.name}: {state.action} ({state.container})")


def status(as_json: bool = common.JSON_OPTION):
    """This project's services: their containers, status and ports."""
    from toolbox.cli.containers import ps_row
    from toolbox.ops.project_services import status as describe_all

    found = describe_all(_context())

    def row(service):
        return (service["service"],) + ps_row(service)

    print_listing(found, as_json, ("SERVICE", "CONTAINER", "IMAGE", "STATUS", "PID", "PORTS", "VOLUMES"), row,
                  to_json=lambda service: {key: value for key, value in service.items() if key != "path"})
