"""`toolbox volume ls|create|inspect|rm`: named volumes, data kept between runs."""

import typer

from toolbox.cli import common
from toolbox.cli import support as complete
from toolbox.cli.render import print_json, print_listing
from toolbox.cli.support import HelpCommand

volume_app = typer.Typer(help="Named volumes: data kept between runs (toolbox run -v NAME:/path).",
                         no_args_is_help=True)


@volume_app.command("ls", cls=HelpCommand)
def volume_ls(as_json: bool = common.JSON_OPTION):
    """List named volumes."""
    from toolbox.ops.progress import human_bytes
    from toolbox.store.volumes import list_volumes

    volumes = list_volumes(common.services().layout)
    print_listing(volumes, as_json, ("NAME", "SIZE", "CREATED", "PATH"),
                  lambda v: (v.name, human_bytes(v.size), v.created, v.path))


@volume_app.command("create", cls=HelpCommand)
def volume_create(name: str = typer.Argument(..., metavar="NAME",
                                             help="The volume's name (letters, digits, '.', '_', '-').")):
    """Create a named volume (what `toolbox run -v NAME:/path` also does on first use)."""
    from toolbox.store.volumes import create_volume

    info, existed = create_volume(common.services().layout, name)
    print(name if not existed else f"{name} (exists already)")


@volume_app.command("inspect", cls=HelpCommand)
def volume_inspect(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete.volume_names)):
    """Show where a named volume lives and how big it is."""
    from toolbox.store.volumes import inspect_volume

    print_json(inspect_volume(common.services().layout, name).to_json())


@volume_app.command("rm", cls=HelpCommand)
def volume_rm(names: list[str] = typer.Argument(..., metavar="NAME",
                                                help="Volumes to remove, with their content.",
                                                autocompletion=complete.volume_names)):
    """Remove named volumes and everything in them."""
    from toolbox.store.volumes import inspect_volume, remove_volume

    layout = common.services().layout
    for name in names:
        inspect_volume(layout, name)  # all names checked before anything is removed
    for name in names:
        remove_volume(layout, name)
        print(f"Removed volume {name}")
