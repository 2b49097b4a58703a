"""Every error type of toolbox, and report(), the one way an error reaches the user.

Library code raises these; only the edges — the CLI (cli/app.py), `toolbox run` (hot/launch.py)
and a shim (hot/shim.py) — call report(), which prints one `toolbox: error:` line, a `toolbox:
hint:` line with what the user can do next, and gives the exit status. The exit codes follow
env(1) and podman: 125 when toolbox itself fails, 126 when the command cannot be run, 127 when it
is not found; otherwise the tool's own status.

Not here: exceptions that never reach the user as such, but signal something to the code that
catches them — locks.Busy, and the OSError kinds of runtime/imagefs.py and runtime/rootfs.py.
Standard library only, and light: the launch path imports this.
"""

import errno
import os
import sys

EXIT_TOOLBOX_FAILED = 125
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127


class ToolboxError(Exception):
    exit_code = EXIT_TOOLBOX_FAILED

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self):
        return self.message


class UsageError(ToolboxError):
    """Options of `toolbox run` that do not parse or do not fit together: reported with the usage
    line as the hint. A message of None asks for the help text (-h, --help)."""


class InvalidReference(ToolboxError, ValueError):
    """An image reference, digest or platform that does not parse."""


class ConfigError(ToolboxError):
    """A user configuration file that is malformed or names something impossible."""


class RegistryError(ToolboxError):
    """The registry answered something we cannot use, or could not be reached."""


class AuthError(RegistryError):
    """The registry refused our credentials (or demanded some we do not have)."""


class NotFound(RegistryError):
    """The repository, tag, digest or platform does not exist."""


class IntegrityError(ToolboxError):
    """Content did not match the digest or size that named it. Nothing was kept."""


class UnsupportedImage(ToolboxError):
    """A manifest, media type or layer format toolbox does not handle."""


class LayerError(ToolboxError):
    """A layer archive that is malformed or hostile. Nothing of it was kept."""


class StoreError(ToolboxError):
    """The local store cannot complete the operation (disk full, permissions, missing image)."""


class ImageNotStored(StoreError):
    """The image is not in the local store."""


# -- what a project or the user wrote: recipes, pins, the lock, trust -----------------------------
class ForeignFile(ConfigError):
    """A project file that belongs to another user: refused unless its directory is allowed."""


class RecipeError(ToolboxError):
    """A recipe that does not validate: names the file, the key and what is allowed."""


class UnknownTool(ToolboxError):
    pass


class LockError(ConfigError):
    pass


class LockConflict(LockError):
    """toolbox.lock has git's merge conflict markers: `toolbox lock` resolves them."""


class OutOfDate(ToolboxError):
    """toolbox.toml and toolbox.lock disagree and resolving is not allowed (--frozen, CI)."""


class NotTrusted(ToolboxError):
    """A project's recipe would be used before the user trusted its grants."""


# -- running: the options, the image's files, the container's start -------------------------------
class ImageFileError(ToolboxError):
    """A file of the image that toolbox will not read: not a regular file, too big, a symlink loop."""


class LimitError(ToolboxError):
    """--memory, --cpus or --pids-limit that does not parse, or that this host cannot enforce."""


class RuntimeStepError(ToolboxError):
    """A step of the container's start failed: `step` names it (and the path), `errno` is the
    OSError's. The launch fills in `hint`: runtime/host.py probes the host for the one fix."""

    def __init__(self, step, err):
        detail = err.strerror if isinstance(err, OSError) and err.strerror else err
        super().__init__(f"cannot start the container: {step}: {detail}")
        self.step = step
        self.errno = getattr(err, "errno", None)


class CommandNotFound(ToolboxError):
    exit_code = EXIT_NOT_FOUND

    def __init__(self, command):
        super().__init__(f"command not found in the image: {command}",
                         hint="check the command name, or the image's PATH")


class CommandNotExecutable(ToolboxError):
    exit_code = EXIT_CANNOT_RUN

    def __init__(self, what):
        super().__init__(f"cannot execute {what}")


class ServiceError(ToolboxError):
    """A background service that cannot be started, stopped or found as asked. One that failed to
    start carries the exit status the tool would have had (126, 127, 125), and the runtime step
    that failed (`step`, `errno`) for the launch's hint."""

    step = None
    errno = None


# -- use cases ------------------------------------------------------------------------------------
class Cancelled(ToolboxError):
    """The pull was interrupted; nothing partial was kept."""


class ChecksFailed(ToolboxError):
    """Some check failed. Exit status 1, as linters do: the host, not toolbox, needs a change."""

    exit_code = 1


# -- reporting ------------------------------------------------------------------------------------
BUG_HINT = "this is a bug in toolbox; please report it with the command that failed"


def report(err, layout=None, stream=None, bug_hint=BUG_HINT):
    """Tell the user what went wrong, as every edge of toolbox does, and return the exit status.
    A ToolboxError says it all; an OSError is a file toolbox needed and could not use (named, with
    the remedy: from_os_error); anything else is a bug, still one line and toolbox's status."""
    if isinstance(err, ToolboxError):
        error = err
    elif isinstance(err, OSError):
        error = from_os_error(err, layout)
    else:
        error = ToolboxError(f"unexpected {type(err).__name__}: {err}", hint=bug_hint)
    say(f"error: {error.message}", error.hint, stream)
    return error.exit_code


def say(message, hint=None, stream=None):
    """One line for the user on stderr (`toolbox: MESSAGE`), and the hint's line after it."""
    stream = stream or sys.stderr
    print(f"toolbox: {message}", file=stream)
    if hint:
        print(f"toolbox: hint: {hint}", file=stream)


# -- an OSError that reached an edge ----------------------------------------------------------------
# Stdlib only and nothing heavy: the launch path and the shims use this too.
_LAYOUT_DIRECTORIES = (  # Layout attribute, what toolbox keeps there, the variables that place it
    ("config_dir", "config directory (config.toml, your recipes)", "TOOLBOX_CONFIG_DIR", "XDG_CONFIG_HOME"),
    ("data_dir", "data directory (shims, volumes, kept containers, trust records)", "TOOLBOX_DATA_DIR",
     "XDG_DATA_HOME"),
    ("cache_dir", "store (images, layers, plans)", "TOOLBOX_CACHE_DIR", "XDG_CACHE_HOME"),
)
_DIRECTORY_VARIABLES = ("TOOLBOX_HOME", "TOOLBOX_CONFIG_DIR", "TOOLBOX_DATA_DIR", "TOOLBOX_CACHE_DIR",
                        "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HOME")



def current_directory_is_gone():
    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    except OSError:  # EACCES on a parent: the directory exists, its name cannot be known
        return False
    return False


def from_os_error(err, layout=None, environ=None):
    """The ToolboxError for an OSError no code below the edge expected: what failed, on which
    path, and the remedy. `layout` names toolbox's own directories in the hint."""
    environ = os.environ if environ is None else environ
    path = err.filename if isinstance(err.filename, str) else None
    if current_directory_is_gone() and (path is None or not os.path.isabs(path)):
        # os.getcwd() and every relative path fail alike, with no file name (ENOENT).
        return ToolboxError("the current directory no longer exists (it was deleted or moved away)",
                            hint="cd to an existing directory and run the command again")
    reason = (err.strerror or str(err)).rstrip(".")
    if path is None:
        return ToolboxError(reason[:1].lower() + reason[1:], hint=os_error_hint(err, None, layout, environ))
    if os.path.basename(path).startswith(".tmp-"):  # a temp file beside the real one (fsutil.atomic_file)
        return ToolboxError(f"cannot write in {os.path.dirname(path)}: {reason.lower()}",
                            hint=os_error_hint(err, path, layout, environ))
    return ToolboxError(f"{path}: {reason.lower()}", hint=os_error_hint(err, path, layout, environ))


def os_error_hint(err, path, layout=None, environ=None):
    """The remedy for `err` on `path`: which directory to fix (toolbox's own are named, with the
    variable that moves them), or which variable names a file where a directory should be."""
    environ = os.environ if environ is None else environ
    code = err.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return ("free some space (`toolbox prune` removes what no image needs), or move the store with "
                "TOOLBOX_CACHE_DIR")
    if path is None:
        return "check the permissions and free space of toolbox's directories (`toolbox doctor` lists them)"
    own = _own_directory(path, layout)
    # The variables that placed this path come first when several name the same place.
    variables = sorted(_DIRECTORY_VARIABLES, key=lambda name: name not in (own[2:] if own else ()))
    if code == errno.ENOTDIR or (code == errno.EEXIST and not os.path.isdir(path)):
        blocker = _first_non_directory(path)
        if blocker is not None:
            named_by = [name for name in variables if _same_path(environ.get(name), blocker)]
            if named_by:
                return (f"{named_by[0]}={blocker} names a file, not a directory: point it at a directory "
                        "(or unset it)")
            return f"{blocker} is a file where toolbox needs a directory: move it away"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
        # A variable naming a place that does not exist, below one you cannot write (HOME=/nonexistent).
        for name in variables:
            value = environ.get(name) or ""
            if value.startswith("/") and _inside(value, path) and not os.path.isdir(value):
                return (f"{name}={value} does not exist and toolbox cannot create it: "
                        f"point {name} at a directory of yours")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        directory = _deepest_existing(os.path.dirname(path) if code != errno.EROFS else path)
        if own is not None:
            return (f"toolbox's {own[0]} must be readable and writable by you: fix the permissions of "
                    f"{directory} (ls -ld {directory}), or set {own[1]} to another directory")
        return f"check the permissions of {directory} (ls -ld {directory}): you need to read and write there"
    if own is not None:
        return (f"toolbox's {own[0]} is at {_layout_root(path, layout)}; `toolbox doctor` checks it, "
                f"{own[1]} moves it")
    return f"check {path} and the directories above it"


def _same_path(a, b):
    return bool(a) and a.rstrip("/") == b.rstrip("/")


def _inside(path, directory):
    """`path` is `directory` or below it."""
    return (path.rstrip("/") + "/").startswith(directory.rstrip("/") + "/")


def _own_directory(path, layout):
    """(what toolbox keeps there, its TOOLBOX_ variable, its XDG variable) for a path inside
    one of toolbox's directories."""
    if layout is None:
        return None
    for attribute, what, variable, xdg in _LAYOUT_DIRECTORIES:
        if _inside(path, getattr(layout, attribute)):
            return what, variable, xdg
    return None


def _layout_root(path, layout):
    for attribute, *_rest in _LAYOUT_DIRECTORIES:
        if _inside(path, getattr(layout, attribute)):
            return getattr(layout, attribute)
    return path


def _first_non_directory(path):
    """The first component of `path` that exists and is not a directory (a file in the way)."""
    current = "/"
    for part in [p for p in path.split("/") if p]:
        current = os.path.join(current, part)
        if not os.path.exists(current):
            return None
        if not os.path.isdir(current):
            return current
    return None


def _deepest_existing(path):
    while path and path != "/" and not os.path.lexists(path):
        path = os.path.dirname(path)
    return path or "/"
