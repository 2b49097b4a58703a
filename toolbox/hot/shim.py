"""Shims: executables named after tools (`jq`, `python3.11`) in the shims directory, which
`toolbox shell-init` puts first on PATH. A shim resolves the pin at call time from the current
directory's project (or the user's global pins): pinned, it runs the tool as `toolbox run TOOL`
does; not pinned, it runs the next program of that name on PATH, or exits 127 with a hint.

The launch path: standard library, the tool plan and the run plan, no TOML (see hot/plans.py).
Each shim is a short Python script (shims/shim.in, written by toolbox/ops/shimgen.py) so it
starts the interpreter once.
"""

import os
import sys

from toolbox.errors import say

MARKER = "# toolbox shim"
# Falling through to another program sets this; a chain of shims calling shims (a PATH that
# lists the shims directory twice, under two names) stops instead of looping.
DEPTH_ENV = "TOOLBOX_SHIM_DEPTH"
MAX_DEPTH = 4


def main(tool, argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from toolbox.errors import EXIT_NOT_FOUND, UnknownTool, report
    from toolbox.hot.launch import main as launch
    from toolbox.hot.launch import tool_settings
    from toolbox.layout import Layout

    layout = Layout.from_env()
    try:
        settings = tool_settings(layout, tool, frozen=False)
    except UnknownTool:
        settings = None  # no recipe (any more) for this name: not toolbox's to run
    except KeyboardInterrupt:
        from toolbox.runtime.signals import die_of_interrupt

        return die_of_interrupt()
    except Exception as err:  # a broken toolbox.toml, an unreachable registry, a bug: one line (report)
        return report(err, layout)
    if settings is None or not settings["pinned"]:
        return (fall_through(tool, argv, layout.shims_dir, lambda: announce_unpinned(layout, tool))
                or EXIT_NOT_FOUND)
    try:
        return launch(["--", tool] + list(argv), layout, settings)
    except Exception as err:  # a bug: still one line, and toolbox's status
        return report(err, layout)


def fall_through(tool, argv, shims_dir, before_exec=None):
    """Exec the next `tool` on PATH that is not a shim (calling `before_exec` first); returns
    only when there is none."""
    text = os.environ.get(DEPTH_ENV) or "0"
    depth = int(text) if text.isdigit() else MAX_DEPTH
    if depth >= MAX_DEPTH:
        say(f"error: {tool}: shims kept calling shims ({DEPTH_ENV}={depth}); is the shims directory on PATH "
            "twice?")
        return None
    own = os.path.realpath(shims_dir)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or os.path.realpath(directory) == own:
            continue
        candidate = os.path.join(directory, tool)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate) and not is_shim(candidate):
            env = dict(os.environ, **{DEPTH_ENV: str(depth + 1)})
            from toolbox.runtime.signals import restore_caller_signals

            if before_exec is not None:
                before_exec()
            restore_caller_signals()  # the host's program starts as if its caller had started it
            try:
                # argv[0] is the path found, not the bare name: a program that locates itself
                # from argv[0] by a PATH search (Python's sys.executable, hence `-m venv`) would
                # otherwise find this shim, first on PATH, instead of itself.
                os.execve(candidate, [candidate] + list(argv), env)
            except OSError as err:
                say(f"error: cannot run {candidate}: {err.strerror}")
                return 126
    say(f"error: {tool} is not pinned here and not installed",
         f"pin it for this directory's project: toolbox add {tool}; or everywhere: toolbox add --global "
         f"{tool}")
    return None


def announce_unpinned(layout, tool):
    """Inside a project, a tool it does not pin (nor your global pins) runs the host's program,
    as outside: say so, once per project and tool, so that a pin a teammate removed, or one
    misspelt, is not a silent switch to another version."""
    from toolbox.hot.plans import find_project_file
    from toolbox.hot.runspec import note_once

    project = find_project_file(os.getcwd())
    if project is None:
        return
    notes = []
    note_once(layout, f"{project}\0{tool}", notes,
              f"{tool} is not pinned by {project} (nor globally): the next {tool} on PATH runs; to pin it: "
              f"toolbox add {tool}")
    for note in notes:
        say(note)


def is_shim(path):
    try:
        with open(path, "rb") as file:
            return MARKER.encode() in file.read(200)
    except OSError:
        return False
