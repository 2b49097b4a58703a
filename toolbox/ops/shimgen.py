"""Managing shims and shell integration (cold tier): `toolbox shim install|list|remove` and
`toolbox shell-init bash|zsh|fish`. The shims themselves run toolbox/hot/shim.py. What is
written comes from the templates in shims/ (@NAME@ placeholders), rendered here."""

import os
import sys

from toolbox.errors import ToolboxError
from toolbox.hot.shim import MARKER, is_shim

SHELLS = ("bash", "zsh", "fish")


def installed(layout):
    try:
        names = os.listdir(layout.shims_dir)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if is_shim(os.path.join(layout.shims_dir, name)))


def install(layout, names):
    """Write (or rewrite) the shims for `names`: tool names or aliases the caller checked."""
    from toolbox.fsutil import atomic_write

    for name in names:
        path = os.path.join(layout.shims_dir, name)
        if os.path.lexists(path) and not is_shim(path):
            raise ToolboxError(f"{path} exists and is not a toolbox shim", hint="move it away first")
        atomic_write(path, shim_text(name).encode(), 0o755)


def ensure(layout, names):
    """Install the shims of `names` that are missing, once shims are in use (the directory
    exists): the tools a project or the global config pins get theirs when a teammate adds one
    (`git pull && toolbox sync`, or the first call of any tool after the lock changed).
    Returns the names installed."""
    if not os.path.isdir(layout.shims_dir):
        return []
    present = set(installed(layout))
    missing = sorted(name for name in set(names) - present
                     if not os.path.lexists(os.path.join(layout.shims_dir, name)))
    install(layout, missing)
    return missing


def refresh(layout):
    """Rewrite every installed shim (after toolbox moved to another interpreter, say)."""
    install(layout, installed(layout))


def remove(layout, names):
    from toolbox.fsutil import unlink_quietly

    present = installed(layout)
    missing = [name for name in names if name not in present]
    if missing:
        raise ToolboxError(f"no shim for {', '.join(missing)}", hint="`toolbox shim list` shows them")
    for name in names:
        unlink_quietly(os.path.join(layout.shims_dir, name))


def render(template, **values):
    """The template shims/`template` with each @NAME@ replaced by values[NAME]. A line holding a
    placeholder whose value is None is left out (an optional line); lines starting with ## are
    the template's own comments."""
    from toolbox.layout import shipped_dir

    with open(os.path.join(shipped_dir("shims"), template), encoding="utf-8") as file:
        lines = [line for line in file.read().splitlines(keepends=True) if not line.startswith("##")]
    rendered = []
    for line in lines:
        for name, value in values.items():
            if f"@{name}@" in line:
                line = None if value is None else line.replace(f"@{name}@", value)
            if line is None:
                break
        if line is not None:
            rendered.append(line)
    text = "".join(rendered)
    import re

    unfilled = sorted(set(re.findall(r"@([A-Z_]+)@", text)))
    if unfilled:
        raise ValueError(f"shims/{template}: placeholders without a value: {', '.join(unfilled)}")
    return text


def shim_text(tool):
    """A shim (shims/shim.in): the interpreter toolbox is installed for, with -I (PYTHONPATH and
    user site-packages cannot change what runs) and -S: no site module, whose .pth processing
    costs ~3 ms of a ~15 ms start; the directories toolbox and its dependencies import from are
    named instead. The garbage collector is off: nothing on the way to the exec makes reference
    cycles worth collecting, and collections triggered by the imports cost ~0.3 ms (the cold
    tier turns it back on). Its modules come from the launch bundle when that is current
    (ops/bundle.py)."""
    import _cffi_backend

    import toolbox

    paths = list(dict.fromkeys([os.path.dirname(os.path.dirname(os.path.abspath(toolbox.__file__))),
                                os.path.dirname(os.path.abspath(_cffi_backend.__file__))]))
    text = render("shim.in", PYTHON=sys.executable, PATHS=repr(paths), TOOL=repr(tool), **_preload_values())
    assert MARKER in text[:200], "is_shim() reads a shim's first 200 bytes"
    return text


def launcher_text(python, *paths):
    """The `toolbox` command scripts/install writes (shims/toolbox.in): like a shim, -IS and the
    directories to import from named (the venv's site-packages), rather than pip's console
    script, which imports `re` (~5 ms) first. `toolbox run` loads its modules from the launch
    bundle, as a shim does."""
    return render("toolbox.in", PYTHON=python, PATHS=repr(list(paths)), **_preload_values())


def _preload_values():
    """The launch bundle's loader (shims/preload.in) and the bundle of this installation."""
    from toolbox.ops.bundle import LOADER_STATE, bundle_path

    return {"PRELOAD": render("preload.in", STATE=repr(LOADER_STATE)), "BUNDLE": repr(bundle_path())}


# Where each shell reads the line that runs shell-init, in interactive shells (a login shell of
# bash reads ~/.bashrc through Debian's and Ubuntu's ~/.profile).
RC_FILES = {"bash": "~/.bashrc", "zsh": "~/.zshrc", "fish": "~/.config/fish/config.fish"}


def launcher_path(environ=None):
    """The `toolbox` command's absolute path, or None: the script this process runs when it is
    one (the launcher scripts/install writes, or pip's), else the first `toolbox` on PATH."""
    import shutil
    import sys

    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "toolbox" and os.path.isfile(script) and os.access(script, os.X_OK):
        return os.path.abspath(script)
    found = shutil.which("toolbox", path=(os.environ if environ is None else environ).get("PATH", os.defpath))
    return os.path.abspath(found) if found else None


def user_shell(environ=None):
    """The user's shell ($SHELL) when shell-init supports it, else bash."""
    name = os.path.basename((os.environ if environ is None else environ).get("SHELL", ""))
    return name if name in SHELLS else "bash"


def rc_file_and_line(environ=None, launcher=None):
    """(the rc file, the line to add to it) for the user's shell: what scripts/install prints."""
    shell = user_shell(environ)
    return RC_FILES[shell], rc_line(shell, launcher or launcher_path(environ))


def rc_advice(environ=None, launcher=None):
    """'add this line to RC_FILE: LINE' for the user's shell."""
    return "add this line to {}: {}".format(*rc_file_and_line(environ, launcher))


def rc_line(shell, launcher=None):
    """The one line for the shell's rc file. It names the launcher by its absolute path: Debian's
    ~/.profile reads ~/.bashrc before it puts ~/.local/bin on PATH, and zsh and fish never read
    ~/.profile, so `toolbox` alone is "command not found" there. It runs the launcher only if it
    is there, so that a line left behind after `toolbox self uninstall` (or a home shared with a
    machine without toolbox) does nothing, instead of an error in every new shell."""
    if shell not in SHELLS:
        raise ToolboxError(f"unsupported shell {shell!r}", hint=f"use one of {', '.join(SHELLS)}")
    if shell == "fish":
        word = _fish_word(launcher or "toolbox")
        present = f"test -x {word}" if launcher else "command -sq toolbox"
        return f"{present}; and {word} shell-init fish | source"
    word = _sh_word(launcher or "toolbox")
    present = f"[ -x {word} ]" if launcher else "command -v toolbox >/dev/null"
    return f'{present} && eval "$({word} shell-init {shell})"'


def shell_init(layout, shell, completion_script):
    """The lines `eval "$(toolbox shell-init SHELL)"` runs: the shims directory first on PATH,
    and completion for toolbox's own commands. No function per shim: the shell finds a shim on
    PATH as it finds any program, so its job line shows what was typed (`jq .a` on Ctrl-Z, not
    the function's body), and a directory put before the shims on purpose later (an activated
    virtualenv's python3) wins, as it would over an installed program.

    Startup files that run after the rc file can put directories before the shims: Debian's
    ~/.profile adds ~/.local/bin after it has read ~/.bashrc, a fish_add_path later in
    config.fish adds its own. So the shims directory is put first again once, at the first
    prompt, when every startup file has run; never after, so a PATH changed later on purpose (an
    activated virtualenv) stays as it is. When `toolbox` itself is not on PATH (~/.local/bin
    not there yet), the launcher's directory is added at the end, for the command and its
    completion (`completion_script(shell)`: the CLI's script for its commands). The lines are the templates
    shims/init.SHELL.in."""
    if shell not in SHELLS:
        raise ToolboxError(f"unsupported shell {shell!r}", hint=f"use one of {', '.join(SHELLS)}")
    os.makedirs(layout.shims_dir, exist_ok=True)
    quote = _fish_quote if shell == "fish" else _sh_quote
    launcher = launcher_path()
    path_lines = render(f"init.{shell}.in", SHIMS=quote(layout.shims_dir),
                        LAUNCHER_DIR=quote(os.path.dirname(launcher)) if launcher else None)
    return path_lines + completion_script(shell) + "\n"


# Characters a path may have and still be one word, unquoted, in bash, zsh and fish.
_PLAIN_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./+-:@")


def _sh_word(text):
    return text if text and set(text) <= _PLAIN_WORD else _sh_quote(text)


def _fish_word(text):
    return text if text and set(text) <= _PLAIN_WORD else _fish_quote(text)


def _sh_quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def _fish_quote(text):
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
