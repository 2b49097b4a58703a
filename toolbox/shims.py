"""Managing shims and shell integration (cold tier): `toolbox shim install|list|remove` and
`toolbox shell-init bash|zsh|fish`. The shims themselves run shim.py."""

import os

from .errors import ToolboxError
from .shim import is_shim, shim_text

SHELLS = ("bash", "zsh", "fish")


def installed(layout):
    try:
        names = os.listdir(layout.shims_dir)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if is_shim(os.path.join(layout.shims_dir, name)))


def install(layout, names):
    """Write (or rewrite) the shims for `names`: tool names or aliases the caller checked."""
    from .fsutil import atomic_write

    for name in names:
        path = os.path.join(layout.shims_dir, name)
        if os.path.lexists(path) and not is_shim(path):
            raise ToolboxError(f"{path} exists and is not a toolbox shim", hint="move it away first")
        atomic_write(path, shim_text(name).encode(), 0o755)


def refresh(layout):
    """Rewrite every installed shim (after toolbox moved to another interpreter, say)."""
    install(layout, installed(layout))


def remove(layout, names):
    from .fsutil import unlink_quietly

    present = installed(layout)
    missing = [name for name in names if name not in present]
    if missing:
        raise ToolboxError(f"no shim for {', '.join(missing)}", hint="`toolbox shim list` shows them")
    for name in names:
        unlink_quietly(os.path.join(layout.shims_dir, name))


def shell_init(layout, shell):
    """The lines `eval "$(toolbox shell-init SHELL)"` runs: the shims directory first on PATH,
    a function per shim (the same program, found without a PATH search), and completion for
    toolbox's own commands."""
    if shell not in SHELLS:
        raise ToolboxError(f"unsupported shell {shell!r}", hint=f"use one of {', '.join(SHELLS)}")
    from typer._completion_shared import get_completion_script

    shims = layout.shims_dir
    os.makedirs(shims, exist_ok=True)
    lines = []
    if shell == "fish":
        lines.append(f"contains -- {_fish_quote(shims)} $PATH; or set -gx PATH {_fish_quote(shims)} $PATH")
        for name in installed(layout):
            lines.append(f"function {name} --wraps {name}; {_fish_quote(os.path.join(shims, name))} $argv; end")
    else:
        quoted = _sh_quote(shims)
        lines.append(f'case ":$PATH:" in *:{quoted}:*) ;; *) export PATH={quoted}":$PATH" ;; esac')
        for name in installed(layout):
            lines.append(f'{name}() {{ {_sh_quote(os.path.join(shims, name))} "$@"; }}')
    completion = get_completion_script(prog_name="toolbox", complete_var="_TOOLBOX_COMPLETE", shell=shell)
    if shell == "zsh":  # compdef exists only after compinit, which an rc file may run later or never
        completion = completion.replace("compdef _toolbox_completion toolbox",
                                        "if (( $+functions[compdef] )); then compdef _toolbox_completion toolbox; fi")
    lines.append(completion)
    return "\n".join(lines) + "\n"


def _sh_quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def _fish_quote(text):
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
