"""Small filesystem operations the store is built from: atomic writes, locks, removal."""

import errno
import os
import stat
import tempfile
from contextlib import contextmanager

from toolbox import locks
from toolbox.errors import ConfigError, StoreError, os_error_hint

# toolbox.toml, toolbox.lock, config.toml, recipes and trust records are a few KiB: anything
# bigger is a mistake or an attack (a sparse 400 MB file in a parent directory cost 1.8 s and
# 1.2 GB per call before this bound).
MAX_INPUT_BYTES = 1 << 20


class InputFile:
    """A small input file read once: its bytes, and the stamp (stamps.stamp_of) of exactly
    those bytes, taken from the descriptor they were read from."""

    __slots__ = ("path", "data", "stamp", "owner")

    def __init__(self, path, data, stamp, owner):
        self.path = path
        self.data = data
        self.stamp = stamp
        self.owner = owner


def read_input(path, what="file", limit=MAX_INPUT_BYTES, error=ConfigError):
    """`path` read once, or None when it does not exist. Refused (`error`) when it is not a
    regular file (a FIFO would block, /dev/zero never ends), bigger than `limit`, or changed
    while it was read (the stamps before and after the read differ). Whoever hashes, parses
    or trusts a file must use these bytes and this stamp, never open it a second time: a
    second open may find another file renamed over the first."""
    from toolbox.stamps import stamp_of

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror}", hint=os_error_hint(err, path)) from None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise error(f"{what} {path} is not a regular file",
                        hint="replace it with a regular file, or remove it")
        if before.st_size > limit:
            raise error(f"{what} {path} is {before.st_size} bytes, more than toolbox reads ({limit})",
                        hint="is it the right file?")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise error(f"{what} {path} grew past {limit} bytes while it was read")
        after = os.fstat(fd)
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror}", hint=os_error_hint(err, path)) from None
    finally:
        os.close(fd)
    if stamp_of(before) != stamp_of(after):
        raise error(f"{what} {path} changed while toolbox read it", hint="run the command again")
    return InputFile(path, b"".join(chunks), stamp_of(after), after.st_uid)


def lstat_at(name, dir_fd):
    """The lstat of `name` in the directory `dir_fd`, None when there is no such entry."""
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def pwrite_all(fd, data, offset):
    """Write all of `data` at `offset` (pwrite may write less than it is given)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def ensure_dir(path, mode=0o755):
    os.makedirs(path, mode=mode, exist_ok=True)
    return path


@contextmanager
def atomic_file(path, mode=0o644, tmp_dir=None):
    """A binary file to fill that appears at `path` whole when the block ends without an error,
    so readers see the old file or the whole new one, never a part. It is created with `mode`
    from the start (a secret is never briefly world-readable), in `tmp_dir` (on the same
    filesystem as `path`) or else beside `path`."""
    directory = os.path.dirname(path)
    ensure_dir(directory)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or directory, prefix=".tmp-", suffix="~")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise


def atomic_write(path, data, mode=0o644, tmp_dir=None):
    with atomic_file(path, mode, tmp_dir) as file:
        file.write(data)


def unlink_quietly(path, dir_fd=None):
    try:
        os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


@contextmanager
def locked(path, shared=False, blocking=True):
    """An flock on `path` (created if missing) for the duration of the block."""
    ensure_dir(os.path.dirname(path))
    try:
        fd = locks.acquire(path, shared=shared, blocking=blocking)
    except locks.Busy:
        raise StoreError(f"{path} is locked by another toolbox process") from None
    try:
        yield fd
    finally:
        os.close(fd)


# Directories are opened one level at a time, never through a symlink.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path):
    """Remove a directory tree we own (or a file), however deep, even where directories lack the
    owner's read, write or search bit (0555, 0000). Symlinks inside are removed, never followed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    # The caller named `path`, so its parent is opened however it is reached; only what lies
    # below `path` is walked without following symlinks.
    parent_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_tree_at(parent_fd, os.path.basename(os.path.abspath(path)))
    finally:
        os.close(parent_fd)


def remove_tree_at(parent_fd, name):
    """remove_tree for the entry `name` of the directory open as `parent_fd`."""
    try:
        st = os.lstat(name, dir_fd=parent_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        unlink_quietly(name, dir_fd=parent_fd)
        return
    top_fd = _open_to_empty(parent_fd, name, st)
    if top_fd is not None:
        walk_down(top_fd, _unlink_all_but_directories, _open_to_empty, _remove_emptied)
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except FileNotFoundError:
        pass


def _open_to_empty(parent_fd, name, st=None):
    """An fd of the directory `name`, which we can then list and delete in; None if it is gone.
    Missing owner bits are added first, by name: fchmod needs an fd, which open(2) refuses
    without the read bit, and a chmod that never follows symlinks needs fchmodat2 (Linux 6.6)
    or /proc. The name was a directory a moment ago (lstat); only a process of ours could swap
    a symlink in since, and the open that follows refuses one."""
    try:
        st = st or os.lstat(name, dir_fd=parent_fd)
        if not stat.S_ISDIR(st.st_mode):
            unlink_quietly(name, dir_fd=parent_fd)  # replaced by a file meanwhile
            return None
        if st.st_mode & 0o700 != 0o700:
            os.chmod(name, stat.S_IMODE(st.st_mode) | 0o700, dir_fd=parent_fd)
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        return None


def _unlink_all_but_directories(fd):
    with os.scandir(fd) as scan:
        entries = list(scan)  # listed first: deleting while readdir(3) runs is unspecified
    directories = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            directories.append(entry.name)
        else:
            unlink_quietly(entry.name, dir_fd=fd)
    return directories


def _remove_emptied(parent_fd, name):
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except FileNotFoundError:
        pass


def walk_down(top_fd, visit, open_child, leave):
    """Walk the directory tree open as `top_fd` (closed on return), depth first and without
    recursion: a layer may nest thousands of directories, beyond Python's recursion limit, the
    fd limit and PATH_MAX. Only one directory is open at a time and paths are never joined.

    `visit(fd)` handles a directory's entries and returns the names of the subdirectories to
    walk; `open_child(fd, name)` opens one (None skips it); `leave(fd, name)` is called in the
    parent once a subdirectory is done. Going back up opens `..`, checked to be the directory
    we came down from (step_up), so a tree moved while we walk it is never mistaken for another.
    The callbacks may keep a second tree in step with this one (flatten.merge_layers does)."""
    fd = top_fd
    try:
        # For the directory open as `fd` and each one above it: its name in its parent, its
        # identity, and the subdirectories still to walk.
        levels = [(None, identity(fd), visit(fd))]
        while True:
            _name, _ident, pending = levels[-1]
            if pending:
                child_name = pending.pop()
                child = open_child(fd, child_name)
                if child is None:
                    continue
                os.close(fd)
                fd = child
                levels.append((child_name, identity(fd), visit(fd)))
                continue
            if len(levels) == 1:
                return
            done_name, _ident, _pending = levels.pop()
            parent = step_up(fd, levels[-1][1], done_name)
            os.close(fd)
            fd = parent
            leave(fd, done_name)
    finally:
        os.close(fd)


def step_up(fd, expected, name):
    """A new fd of the parent of the directory open as `fd`, opened through `..` and checked to
    be the directory `expected` (an identity()) that `name` was entered from."""
    parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
    if identity(parent) != expected:
        os.close(parent)
        raise StoreError(f"a directory was moved while toolbox walked it (above {name!r})")
    return parent


def identity(fd):
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def disk_usage(path):
    """Bytes allocated below `path`, counting each inode once (hard links inside a layer)."""
    return tree_summary(path)[0]


def tree_summary(path):
    """(bytes allocated, counting each inode once; names below `path`; bytes of content of the
    regular files, by name): what a layer's tree must still add up to (`toolbox check`)."""
    seen = set()
    allocated = names = content = 0

    def count(fd):
        nonlocal allocated, names, content
        with os.scandir(fd) as scan:
            entries = list(scan)
        directories = []
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except (FileNotFoundError, PermissionError):
                continue  # gone, or in a directory we may list but not search
            names += 1
            if stat.S_ISDIR(st.st_mode):
                directories.append(entry.name)
            elif stat.S_ISREG(st.st_mode):
                content += st.st_size
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                allocated += st.st_blocks * 512
        return directories

    try:
        top_fd = os.open(path, _DIR_FLAGS)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return 0, 0, 0  # nothing, a file or a symlink: no tree below it
        if err.errno == errno.EACCES:
            return 0, 0, 0  # not ours to list (a service gave it to a subordinate id), as below
        raise
    walk_down(top_fd, count, _open_to_read, lambda _fd, _name: None)
    return allocated, names, content


def _open_to_read(parent_fd, name):
    """The directory to count next, or None: gone, or not ours to list and search (du(1) says
    so and goes on). Without the search bit it could be listed, but not left again through
    `..`."""
    try:
        if not os.access(name, os.R_OK | os.X_OK, dir_fd=parent_fd, follow_symlinks=False):
            return None
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except (FileNotFoundError, PermissionError):
        return None


def process_is_alive(pid_text):
    """Whether the process a PID in a file name names still runs (a reused PID counts as
    alive: the leftover waits for a later sweep, which is the safe side)."""
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_disk_full(err):
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
