"""The `toolbox` command: the typer app, with the commands of each module registered on it in
the order `toolbox --help` lists them. Each command parses its options, calls a use case,
renders the result. Errors become one message, a hint, and an exit code here and nowhere else."""

import logging
import sys

import typer

from toolbox import __version__
from toolbox.cli import common, containers, host, images, login, recipes, services, shims, tools, volumes
from toolbox.cli import support as complete
from toolbox.errors import EXIT_TOOLBOX_FAILED, ToolboxError, report

app = typer.Typer(
    name="toolbox",
    help="Run command-line tools from OCI images as if they were installed: rootless, daemonless, pinned per "
         "project.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)


def _version(value):
    if value:
        print(f"toolbox {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug",
                               help="Log registry traffic and retries to stderr (never secrets)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
):
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="toolbox: %(message)s")


# The commands, then the groups, each in the order `toolbox --help` lists them.
for module in (images, containers, services, host, login, tools, shims):
    module.register(app)
app.add_typer(volumes.volume_app, name="volume")
app.add_typer(host.self_app, name="self")
app.add_typer(recipes.recipes_app, name="recipes")
app.add_typer(shims.shim_app, name="shim")


def help_(names: list[str] = typer.Argument(None, metavar="COMMAND",
                                            help="A command, or a group and its command: pull, volume ls.",
                                            autocompletion=complete.command_words)):
    """Show the help of toolbox, or of one of its commands (as --help or -h after it does)."""
    raise typer.Exit(main([*(names or []), "--help"]))


common.add_command(app, help_, "help")


EXIT_INTERRUPTED = 130

# Work in progress lives in locked temp directories, removed on the way out (or by the next
# toolbox run if this one was killed outright), so an interrupt never leaves half an image.
INTERRUPTED_MESSAGE = "toolbox: interrupted; nothing partial was kept"
BUG_HINT = ("this is a bug in toolbox: run the command again with --debug (before the command) to see where, "
            "and report it")


def main(argv=None):
    """The edge of every command but `run` (entry.py): whatever goes wrong below ends here as
    one `toolbox: error:` line, a `toolbox: hint:` line and an exit status, never a traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _exit_code(_invoke(argv))
    except KeyboardInterrupt:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exit_:  # shell completion, and sys.exit() in typer or below
        return _exit_code(exit_.code)
    except Exception as err:  # noqa: BLE001 — whatever it is, one line and an exit status (report)
        if not isinstance(err, (ToolboxError, OSError)) and logging.getLogger().isEnabledFor(logging.DEBUG):
            import traceback

            traceback.print_exc()
        from toolbox.layout import Layout

        return report(err, Layout.from_env() if isinstance(err, OSError) else None, bug_hint=BUG_HINT)


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
                           hint="answer it on a terminal, or give the value as an option "
                                "(see --help)") from None
    except click.exceptions.ClickException as err:
        raise ToolboxError(err.format_message(),
                           hint="`toolbox --help` lists the commands; COMMAND --help shows one") from None
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
