"""`toolbox self uninstall`: what scripts/install and toolbox itself put on this machine, and
its removal. The CLI lists it, asks before the configuration, removes, and names the rc lines
to remove (this module prints nothing).

What is removed:
- the launcher scripts/install wrote (~/.local/bin/toolbox), recognised by its form (a
  `python3 -IS` script of a venv at .../toolbox/venv that runs toolbox.entry), never pip's
  console script or another program of that name;
- that venv (by default ~/.local/share/toolbox/venv);
- the shims, the store (the cache directory) and the data directory (volumes, kept
  containers, trust records, the projects toolbox has used);
- the config directory (config.toml, your recipes, the global pins' lock): only when asked.
A directory that is the home, `/` or above the home is never removed, whatever the variables
that place toolbox's directories say.
"""

import os
from dataclasses import dataclass

from toolbox.errors import ToolboxError
from toolbox.fsutil import remove_tree

# the code running this goes last
REMOVAL_ORDER = ("shims", "store", "data", "config", "virtualenv", "launcher")
LAUNCHER_TAIL = ("from toolbox.entry import main", "sys.exit(main())")
# Files a shell reads at start where scripts/install's line may have been put.
RC_CANDIDATES = ("~/.bashrc", "~/.bash_profile", "~/.profile", "~/.zshrc", "~/.zprofile",
                 "~/.config/fish/config.fish")


@dataclass(frozen=True)
class Part:
    what: str  # launcher, virtualenv, shims, store, data, config
    path: str
    size: int  # bytes on disk, without the parts listed separately inside it
    detail: str = ""


def install_launcher_venv(path):
    """The venv of the launcher scripts/install writes, when `path` is one, else None:
    `#!VENV/bin/python3 -IS`, the venv at .../toolbox/venv, and the lines that run toolbox."""
    try:
        with open(path, "rb") as file:
            text = file.read(4096).decode("utf-8", "replace")
    except OSError:
        return None
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#!") or not lines[0].endswith(" -IS"):
        return None
    interpreter = lines[0][2:].split()[0]
    venv = os.path.dirname(os.path.dirname(interpreter))
    if os.path.basename(venv) != "venv" or os.path.basename(os.path.dirname(venv)) != "toolbox":
        return None
    if (not all(line in lines for line in LAUNCHER_TAIL)
        or not any(line.startswith("sys.path[:0] = [") for line in lines)):
        return None
    return venv


def parts(layout, environ=None):
    """What `toolbox self uninstall` removes here, in the order it removes it (config last)."""
    from toolbox.fsutil import disk_usage
    from toolbox.ops.shimgen import installed, launcher_path

    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or os.path.expanduser("~")
    found = []
    venvs = []
    for launcher in dict.fromkeys(p for p in (launcher_path(environ),
                                              os.path.join(home, ".local", "bin", "toolbox")) if p):
        venv = install_launcher_venv(launcher)
        if venv is not None:
            found.append(Part("launcher", launcher, _size(launcher)))
            venvs.append(venv)
    xdg_data = environ.get("XDG_DATA_HOME", "").strip()
    default_venv = os.path.join(
        xdg_data if os.path.isabs(xdg_data) else os.path.join(home, ".local", "share"), "toolbox", "venv")
    venvs.append(default_venv)  # where scripts/install puts it, also when its launcher is gone
    for venv in dict.fromkeys(venvs):
        if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
            found.append(Part("virtualenv", venv, disk_usage(venv)))
    if os.path.isdir(layout.shims_dir):
        shims = installed(layout)
        found.append(Part("shims", layout.shims_dir, disk_usage(layout.shims_dir),
                          f"{len(shims)}: {' '.join(shims)}" if shims else "none"))
    for what, path, detail in (("store", layout.cache_dir, "images, layers, plans"),
                               ("data", layout.data_dir, _data_detail(layout)),
                               ("config", layout.config_dir,
                                "config.toml, your recipes, the global pins and their lock")):
        if os.path.isdir(path):
            found.append(Part(what, path, disk_usage(path), detail))
    for part in found:
        _check_removable(part.path, home)
    return [_without_nested(part, found) for part in found]


def _data_detail(layout):
    counts = []
    for name, what in (("volumes", "volume"), ("containers", "kept container")):
        try:
            count = len([entry for entry in os.listdir(os.path.join(layout.data_dir, name))
                         if not entry.startswith(".")])
        except OSError:
            count = 0
        if count:
            counts.append(f"{count} {what}{'s' if count > 1 else ''}")
    return ", ".join(counts + ["trust records"]) if counts else "trust records, the projects used here"


def _without_nested(part, found):
    """`part` with the size of the other parts inside it taken out, so that no byte counts twice."""
    inside = sum(other.size for other in found
                 if other is not part and other.path.startswith(part.path.rstrip("/") + "/"))
    return Part(part.what, part.path, max(part.size - inside, 0), part.detail)


def _check_removable(path, home):
    """Refuse a directory whose removal would take more than toolbox's own: `/`, the home or
    anything above it (a TOOLBOX_DATA_DIR=$HOME, say)."""
    real, real_home = os.path.realpath(path), os.path.realpath(home)
    if real == "/" or real_home == real or real_home.startswith(real.rstrip("/") + "/"):
        raise ToolboxError(f"will not remove {path}: "
                           f"it is {'your home' if real == real_home else 'above your home'}, "
                           "not a directory of toolbox's own",
                           hint="check TOOLBOX_HOME, TOOLBOX_CACHE_DIR, TOOLBOX_DATA_DIR and "
                                "TOOLBOX_CONFIG_DIR, then remove toolbox's files by hand")


def remove(part):
    remove_tree(part.path)


def rc_lines(environ=None):
    """[(rc file as written with ~, line number, line)] of the lines that run `toolbox shell-init`."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or os.path.expanduser("~")
    xdg_config = environ.get("XDG_CONFIG_HOME", "").strip()
    candidates = list(RC_CANDIDATES)
    if os.path.isabs(xdg_config):
        candidates.append(os.path.join(xdg_config, "fish", "config.fish"))
    found, seen = [], set()
    for name in candidates:
        path = os.path.join(home, name[2:]) if name.startswith("~/") else name
        if os.path.realpath(path) in seen:
            continue
        seen.add(os.path.realpath(path))
        try:
            with open(path, encoding="utf-8", errors="replace") as file:
                lines = file.read(1024 * 1024).splitlines()
        except OSError:
            continue
        shown = name if name.startswith("~/") else path
        found += [(shown, number, line) for number, line in enumerate(lines, 1)
                  if "toolbox" in line and "shell-init" in line]
    return found


def _size(path):
    try:
        return os.lstat(path).st_blocks * 512
    except OSError:
        return 0
