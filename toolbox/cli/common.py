"""What the command modules share: the options several commands take, the services they work
with, and how a command joins the app (its help written in the usual notation)."""

import typer

from toolbox.cli.support import HelpCommand

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
PLATFORM_OPTION = typer.Option(None, "--platform", metavar="OS/ARCH[/VARIANT]",
                               help="The platform to pull instead of this machine's.")
GLOBAL_OPTION = typer.Option(False, "--global",
                             help="Edit the pins of your config.toml, used outside any project.")


def add_commands(app, *functions):
    """Add `functions` to `app` as commands named after them, in this order (`toolbox --help`
    lists them so)."""
    for function in functions:
        add_command(app, function)


def add_command(app, function, name=None, **settings):
    app.command(name, cls=settings.pop("cls", HelpCommand), **settings)(function)


def services():
    from toolbox.ops.wiring import load_services

    return load_services()


def platform(text):
    if text is None:
        return None
    from toolbox.oci.platform import Platform

    return Platform.parse(text)
