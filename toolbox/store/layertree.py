"""The layer tree being unpacked, reached one directory at a time without following symlinks.

Every directory on the way to a member is opened with O_NOFOLLOW relative to its parent's fd,
so a symlink (from the layer, or swapped in by a racing process) can never redirect a write.
The tree also keeps the directories' mtimes until the end (adding children changes them) and
writes overlayfs's whiteout format: a 0/0 character device for a deleted name, the
`user.overlay.opaque` xattr for a directory that hides the lower layers' one.

A machine that cannot hold that format (no unprivileged whiteouts, no user xattrs on the
store's filesystem) raises StoreError; a layer that would write through a symlink, LayerError.
"""

from __future__ import annotations

import errno
import os
import stat

from toolbox import fsutil
from toolbox.errors import LayerError, StoreError
from toolbox.runtime.imagefs import OPAQUE_XATTR, is_whiteout

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FD_CACHE = 64  # with 4 layers unpacking in parallel, far below a 1024-fd limit


class LayerTree:
    def __init__(self, dest_dir: str) -> None:
        self.root_fd = os.open(dest_dir, DIR_FLAGS)
        # Open directories by path, so a member does not re-walk its path from the root (members
        # come grouped by directory). Safe: every fd was opened with O_NOFOLLOW one level at a
        # time; forgotten whenever a directory is removed.
        self._dir_fds = {}
        self._dir_mtimes = {}  # tuple(parts) -> mtime in ns, applied at the end

    def close(self) -> None:
        self._forget_dirs()
        os.close(self.root_fd)

    def set_dir_mtime(self, parts: list[bytes], mtime_ns: int) -> None:
        """Noted now, applied by finish()."""
        self._dir_mtimes[tuple(parts)] = mtime_ns

    def parent_fd(self, parts: list[bytes], member_name: str) -> int:
        """The fd (owned by the cache: do not close) of the directory that will hold parts[-1],
        creating missing directories and refusing to pass through anything that is not a real
        directory."""
        key = tuple(parts[:-1])
        depth = len(key)
        while depth and key[:depth] not in self._dir_fds:
            depth -= 1
        fd = self._dir_fds[key[:depth]] if depth else self.root_fd
        for index in range(depth, len(key)):
            fd = self._step_into(fd, key[index], key[: index + 1], member_name)
            if len(self._dir_fds) >= _DIR_FD_CACHE:
                self._forget_dirs()  # the new fd is not in the cache yet, so it stays open
            self._dir_fds[key[: index + 1]] = fd
        return fd

    def _step_into(self, fd, part, walked, member_name):
        try:
            return os.open(part, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            os.mkdir(part, 0o700, dir_fd=fd)
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.fchmod(child, 0o755)  # whatever the umask
            return child
        except OSError as err:
            if err.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
        existing = fsutil.lstat_at(part, fd)
        if existing is not None and stat.S_ISLNK(existing.st_mode):
            raise LayerError(f"layer member {member_name!r} would be written through the symlink "
                             f"{_show(walked)!r}")
        if existing is None or not is_whiteout(existing):
            raise LayerError(f"layer member {member_name!r} needs {_show(walked)!r} to be a directory, but "
                             "it is a file")
        # Deleted and re-created in this layer: a fresh directory that hides the lower one.
        os.unlink(part, dir_fd=fd)
        os.mkdir(part, 0o700, dir_fd=fd)
        child = os.open(part, DIR_FLAGS, dir_fd=fd)
        os.fchmod(child, 0o755)
        set_opaque(child, member_name)
        return child

    def open_existing_dir(self, parts: list[bytes]) -> int | None:
        """A new fd of the directory at `parts`, reached without following symlinks and without
        creating anything; None if there is no such directory."""
        fd = os.dup(self.root_fd)
        for part in parts:
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    return None
                raise
            os.close(fd)
            fd = child
        return fd

    def remove(self, parent: int, base: bytes, parts: list[bytes]) -> None:
        """Remove what a later member of the same name replaces (tar semantics: last one wins)."""
        existing = fsutil.lstat_at(base, parent)
        if existing is None:
            return
        if stat.S_ISDIR(existing.st_mode):
            fsutil.remove_tree_at(parent, base)
            # Cached fds below it now name deleted directories. Mtimes noted below it may stay:
            # finish() skips paths that are gone (one re-created there gets the old mtime).
            self._forget_dirs_except(parent)
            self._dir_mtimes.pop(tuple(parts), None)
        else:
            os.unlink(base, dir_fd=parent)

    def _forget_dirs(self):
        for fd in self._dir_fds.values():
            os.close(fd)
        self._dir_fds.clear()

    def _forget_dirs_except(self, parent):
        # `parent` itself may be a cached fd that the caller still uses, so keep that one.
        keep = {key: fd for key, fd in self._dir_fds.items() if fd == parent}
        for key, fd in self._dir_fds.items():
            if key not in keep:
                os.close(fd)
        self._dir_fds = keep

    def finish(self) -> None:
        """Directory mtimes last, since adding children changed them. Sorted, so each directory
        is opened once, right after its parent."""
        opened = [((), os.dup(self.root_fd))]  # the open directories on the current path
        try:
            for parts in sorted(self._dir_mtimes):
                while opened[-1][0] != parts[: len(opened[-1][0])]:
                    os.close(opened.pop()[1])
                if self._open_down_to(opened, parts):
                    os.utime(opened[-1][1], ns=(self._dir_mtimes[parts],) * 2)
        finally:
            for _, fd in opened:
                os.close(fd)

    @staticmethod
    def _open_down_to(opened, parts):
        while len(opened[-1][0]) < len(parts):
            walked = parts[: len(opened[-1][0]) + 1]
            try:
                fd = os.open(walked[-1], DIR_FLAGS, dir_fd=opened[-1][1])
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    return False  # replaced by a non-directory, or removed, after its mtime was noted
                raise
            opened.append((walked, fd))
        return True


def make_whiteout(parent: int, name: bytes, member_name: str) -> None:
    try:
        os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=parent)
    except PermissionError:
        raise StoreError(
            f"cannot record whiteout {member_name!r}: this kernel does not let unprivileged users create "
            "overlay whiteouts",
            hint="Linux 5.8 or later is needed",
        ) from None


def set_opaque(fd: int, member_name: str) -> None:
    try:
        os.setxattr(fd, OPAQUE_XATTR, b"y")
    except OSError as err:
        if err.errno not in (errno.ENOTSUP, errno.EPERM):
            raise
        raise StoreError(
            f"cannot mark the directory of {member_name!r} opaque: the store's filesystem refuses user "
            "extended attributes",
            hint="put the store (TOOLBOX_CACHE_DIR) on ext4, xfs, btrfs or tmpfs (Linux 6.6 or later)",
        ) from None




def _show(parts):
    return os.fsdecode(b"/".join(parts))
