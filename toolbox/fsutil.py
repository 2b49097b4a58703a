"""Small filesystem operations the store is built from: atomic writes, locks, removal."""

import errno
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager

from . import locks
from .errors import StoreError


def ensure_dir(path, mode=0o755):
    os.makedirs(path, mode=mode, exist_ok=True)
    return path


def atomic_write(path, data, mode=0o644):
    """Write `data` so that readers see the old file or the whole new one, never a part.
    The file is created with `mode` from the start (a secret is never briefly world-readable)."""
    directory = os.path.dirname(path)
    ensure_dir(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="~")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise


def unlink_quietly(path):
    try:
        os.unlink(path)
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


def make_writable_tree(path):
    """Give the owner write and search permission on every directory below `path`, so a tree
    whose directories were unpacked read-only (0555) can be removed."""
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            full = os.path.join(root, name)
            try:
                st = os.lstat(full)
                if stat.S_ISDIR(st.st_mode) and (st.st_mode & 0o700) != 0o700:
                    os.chmod(full, st.st_mode | 0o700)
            except FileNotFoundError:
                pass


def remove_tree(path):
    """Remove a directory tree we own, even where directories are read-only."""
    def retry_writable(function, failed_path, _exc):
        parent = os.path.dirname(failed_path)
        try:
            os.chmod(parent, os.lstat(parent).st_mode | 0o700)
            if os.path.isdir(failed_path) and not os.path.islink(failed_path):
                make_writable_tree(failed_path)
                os.chmod(failed_path, os.lstat(failed_path).st_mode | 0o700)
            function(failed_path)
        except FileNotFoundError:
            pass

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    if st.st_mode & 0o700 != 0o700:
        os.chmod(path, st.st_mode | 0o700)
    shutil.rmtree(path, onerror=retry_writable)


def disk_usage(path):
    """Bytes allocated below `path`, counting each inode once (hard links inside a layer)."""
    seen = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def is_disk_full(err):
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
