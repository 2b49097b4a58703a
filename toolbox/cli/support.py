"""What the typer app needs besides its commands: help pages in the usual notation, usage errors
as one `toolbox: error:` line with a hint, and completion of the names toolbox knows.

typer renders arguments in its own notation, which changed between releases (`{reference}`,
`reference <str>`, `references... <list[str]>`); HelpCommand writes usage lines and help pages
the way man pages and click's own defaults do (`REFERENCE`, `[NAME]`, `TOOL...`,
`--platform OS/ARCH`), whatever typer is installed. Only click's documented Command, Context
and Parameter attributes are used here.
"""

import difflib
import os

import typer.core


def click_module():
    """The click typer runs on: its own vendored copy (typer ≥ 0.2x) or the click package."""
    return getattr(typer.core, "_click", None) or typer.core.click


class HelpCommand(typer.core.TyperCommand):
    def collect_usage_pieces(self, ctx):
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [argument_usage(p) for p in self.get_params(ctx) if _is_argument(p)]

    def format_options(self, ctx, formatter):
        visible = [p for p in self.get_params(ctx) if not getattr(p, "hidden", False)]
        arguments = [(argument_usage(p), p.help) for p in visible
                     if _is_argument(p) and getattr(p, "help", None)]
        options = [(option_usage(p), p.help or "") for p in visible if not _is_argument(p)]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def completion_script(shell):
    """The script that completes toolbox's commands in `shell`, part of `toolbox shell-init`."""
    from typer._completion_shared import get_completion_script

    script = get_completion_script(prog_name="toolbox", complete_var="_TOOLBOX_COMPLETE", shell=shell)
    if shell == "zsh":  # compdef exists only after compinit, which an rc file may run later or never
        script = script.replace("compdef _toolbox_completion toolbox",
                                "if (( $+functions[compdef] )); then compdef _toolbox_completion toolbox; fi")
    return script


def _is_argument(param):
    return param.param_type_name == "argument"


def argument_usage(param):
    """As click writes it: NAME, [NAME], NAME..., [NAME]..."""
    name = param.metavar or param.name.upper()
    name = name if param.required else f"[{name}]"
    return name + ("..." if param.nargs != 1 else "")


def option_usage(param):
    text = ", ".join(sorted(param.opts, key=len))
    if not param.is_flag and not getattr(param, "count", False):
        text += " " + (param.metavar or param.name.upper())
    return text


class RunCommand(HelpCommand):
    """`toolbox run`, whose options the launch path parses (runargs.py): completion offers its
    options, container names after --name, volumes after -v, then tools and stored images for
    the image word."""

    def shell_complete(self, ctx, incomplete):
        item = click_module().shell_completion.CompletionItem
        return [item(value) for value in _guarded(_run_words, list(ctx.args), incomplete)]


def _run_words(args, incomplete):
    from toolbox.hot import runargs

    if incomplete.startswith("-"):
        return sorted(name for name in list(runargs.FLAGS) + list(runargs.WITH_VALUE)
                      if name.startswith(incomplete))
    previous = args[-1] if args else None
    if previous == "--name":
        return container_names(incomplete)
    if previous in ("-v", "--volume"):
        return volume_names(incomplete)
    if previous in runargs.WITH_VALUE:
        return []
    words = iter(args)
    for word in words:  # is there an image word already? (options as runargs.parse_args reads them)
        if word == "--" or not word.startswith("-"):
            return []
        if word in runargs.WITH_VALUE:
            next(words, None)
    return tool_names(incomplete) + image_references(incomplete)


# -- usage errors ------------------------------------------------------------------------------------
def unknown_command(root, argv):
    """(message, hint) when `argv` names a command (or a subcommand of a group) the app does not
    have, else None. Checked before typer parses, so the message is ours whatever click says."""
    group, path = root, ["toolbox"]
    for word in argv:
        if word == "--":
            return None
        if word.startswith("-"):
            continue  # the groups' own options are flags (--debug, --version, --help)
        commands = getattr(group, "commands", None)
        if commands is None:
            return None
        if word not in commands:
            where = " ".join(path)
            close = difflib.get_close_matches(word, sorted(commands), n=3, cutoff=0.6)
            listing = f"`{where} --help` lists its commands"
            return (f"unknown command {word!r}" + (f" for {where}" if len(path) > 1 else ""),
                    f"did you mean {' or '.join(close)}? {listing}" if close else listing)
        group = commands[word]
        path.append(word)
    return None


def usage_error(err):
    """(message, hint) for one of click's usage errors (an unknown option, a missing argument,
    a bad value)."""
    ctx = getattr(err, "ctx", None)
    where = ctx.command_path if ctx is not None else "toolbox"
    help_hint = f"`{where} --help` shows its arguments and options"
    option = getattr(err, "option_name", None)
    if option is not None and type(err).__name__ == "NoSuchOption":
        possible = sorted(getattr(err, "possibilities", None) or ())
        return (f"unknown option {option} for {where}",
                (f"did you mean {' or '.join(possible)}? " if possible else "") + help_hint)
    text = err.format_message().strip().rstrip(".")
    return f"{where}: {text[:1].lower()}{text[1:]}", help_hint


# -- completion: cheap, and never an error ---------------------------------------------------------
def _guarded(function, *args):
    """Completion runs at every Tab: what cannot be listed (no store yet, a broken config) is
    simply not offered."""
    try:
        return list(function(*args))
    except Exception:  # noqa: BLE001 — a traceback in the middle of a command line helps no one
        return []


def _matching(names, incomplete):
    return sorted(name for name in set(names) if name.startswith(incomplete))


def _layout():
    from toolbox.layout import Layout

    return Layout.from_env()


def tool_names(incomplete):
    """Every recipe name and alias visible here (project, yours, built-in)."""
    def names():
        from toolbox.project.catalog import Catalog

        catalog = Catalog.load(_layout())
        return list(catalog.recipes) + list(catalog.aliases)
    return _matching(_guarded(names), incomplete)


def tool_specs(incomplete):
    """TOOL, or TOOL@VERSION once the @ is typed: the recipe's default version."""
    if "@" in incomplete:
        def versions():
            from toolbox.project.catalog import Catalog

            name = incomplete.partition("@")[0]
            recipe, _alias = Catalog.load(_layout()).find(name)
            return [f"{name}@{recipe.default_version}"]
        return _matching(_guarded(versions), incomplete)
    return tool_names(incomplete)


def pinned_tools(incomplete):
    def names():
        from toolbox.ops.context import Context
        from toolbox.ops.wiring import load_services

        return list(Context(load_services()).pins.versions)
    return _matching(_guarded(names), incomplete)


def image_references(incomplete):
    def references():
        from toolbox.store.store import Store

        return [record.reference for record in Store(_layout()).records()]
    return _matching(_guarded(references), incomplete)


def container_names(incomplete):
    def names():
        from toolbox.runtime import containers

        return containers.names(_layout())
    return _matching(_guarded(names), incomplete)


def volume_names(incomplete):
    def names():
        layout = _layout()
        return [name for name in os.listdir(layout.volumes_dir) if os.path.isdir(layout.volume_data(name))]
    return _matching(_guarded(names), incomplete)


def shim_names(incomplete):
    def names():
        from toolbox.ops import shimgen as shims

        return shims.installed(_layout())
    return _matching(_guarded(names), incomplete)


def shell_names(incomplete):
    from toolbox.ops.shimgen import SHELLS

    return _matching(SHELLS, incomplete)


def command_words(ctx, incomplete):
    """`toolbox help <Tab>`: the commands, or a group's commands after the group's name."""
    def words():
        group = ctx.find_root().command
        for word in ctx.params.get("names") or ():
            group = getattr(group, "commands", {}).get(word)
        return [name for name, command in (getattr(group, "commands", None) or {}).items()
                if not getattr(command, "hidden", False)]
    return _matching(_guarded(words), incomplete)


def tools_or_images(incomplete):
    """Where a tool name works as well as an image and need not be stored yet (pull)."""
    return tool_specs(incomplete) + image_references(incomplete)
