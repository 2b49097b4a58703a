"""`toolbox shim install|list|remove`: executables named after tools, so scripts, Makefiles and
editors find them; and `toolbox shell-init`, which puts them first on PATH. Which shims to have
is decided in ops/shims.py."""

import os

import typer

from toolbox.cli import common
from toolbox.cli import support as complete
from toolbox.cli.render import print_table
from toolbox.cli.support import HelpCommand

shim_app = typer.Typer(help="Executables named after tools, so scripts, Makefiles and editors find them.",
                       no_args_is_help=True)


def register(app):
    common.add_commands(app, shell_init)


@shim_app.command("install", cls=HelpCommand)
def shim_install(tools: list[str] = typer.Argument(None, metavar="TOOL",
                                                   help="Tool names or aliases, e.g. jq python3.11 node.",
                                                   autocompletion=complete.tool_names),
                 pinned: bool = typer.Option(False, "--pinned", help="Every tool pinned here: by the project "
                                                                     "and by your global pins.")):
    """Write executables for these tools in the shims directory (first on PATH after shell-init)."""
    from toolbox.ops.shimgen import rc_advice
    from toolbox.ops.shims import install_shims

    installed = install_shims(tools or (), pinned)
    for name, projects in installed.elsewhere.items():
        print(f"{name}: a recipe of {', '.join(projects)}: its shim runs it there (elsewhere, the next "
              f"{name} on PATH)")
    print(f"Installed {', '.join(installed.names)} in {installed.directory}")
    if installed.directory not in os.environ.get("PATH", "").split(os.pathsep):
        print(f"To put them first on PATH, {rc_advice()}")


@shim_app.command("list", cls=HelpCommand)
def shim_list():
    """The installed shims, and what each runs here."""
    from toolbox.ops.shims import shim_targets

    print_table([("SHIM", "HERE")] + [(target.name, _runs(target)) for target in shim_targets()])


def _runs(target):
    if target.recipe is None:
        return "no recipe: runs the next one on PATH"
    if target.pinned_by is None:
        return "not pinned: runs the next one on PATH"
    return f"{target.recipe} {target.version} (pinned by {target.pinned_by})"


@shim_app.command("remove", cls=HelpCommand)
def shim_remove(tools: list[str] = typer.Argument(..., metavar="TOOL", help="Installed shims.",
                                                  autocompletion=complete.shim_names)):
    """Remove shims."""
    from toolbox.ops.shims import remove_shims

    remove_shims(tools)
    print(f"Removed {', '.join(tools)}")


def shell_init(shell: str = typer.Argument(..., metavar="SHELL", help="bash, zsh or fish.",
                                           autocompletion=complete.shell_names)):
    """Print the shell code for your rc file: eval "$(toolbox shell-init bash)"."""
    from toolbox.layout import Layout
    from toolbox.ops.shimgen import shell_init as shell_code

    print(shell_code(Layout.from_env(), shell, complete.completion_script), end="")
