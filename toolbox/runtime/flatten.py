"""Layer trees flattened into one root filesystem, for the read-only root mode (rootfs.py), where
there is no overlayfs to stack them.

The trees are in overlayfs's format, as the store's unpacker writes them: a whiteout is a 0/0
character device, an opaque directory carries `user.overlay.opaque=y`. Flattening applies
overlayfs's rules to them, so the flat tree shows what a mount of the same trees would show.

Imported lazily, only in the read-only mode: standard library and fsutil only.
"""

import errno
import os
import stat

from toolbox import fsutil
from toolbox.runtime.imagefs import OPAQUE_XATTR, is_whiteout

COPY_CHUNK = 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TOP_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def merge_layers(layer_trees: list[str], dest_dir: str) -> None:
    """Flatten layer trees (lowest first) into one root filesystem in the empty `dest_dir`,
    with overlayfs's rules: a whiteout deletes the name below it, an opaque directory hides all
    that was below it, and a non-directory replaces a directory (and back). Regular files are
    hard-linked from the layer trees (copied across filesystems), so this costs no file data.
    Directories take the mode, mtime and user xattrs of the upper-most layer that has them, as
    overlayfs shows them. Each tree is walked without recursion (fsutil.walk_down), so a layer
    as deep as the unpacker allows flattens too; on error `dest_dir` is half-made and the
    caller removes it."""
    dest = os.open(dest_dir, _DIR_FLAGS)
    try:
        for tree in layer_trees:
            merge = _Merge(dest)
            try:
                # The caller named the tree, so it is opened however it is reached; below it,
                # nothing is followed.
                fsutil.walk_down(os.open(tree, _TOP_DIR_FLAGS), merge.visit, merge.enter, merge.leave)
            finally:
                merge.close()
        if layer_trees:
            top = os.open(layer_trees[-1], _TOP_DIR_FLAGS)
            try:
                _copy_directory_attributes(top, dest)
            finally:
                os.close(top)
    finally:
        os.close(dest)


class _Merge:
    """One layer tree merged into the flat tree. fsutil.walk_down walks the layer's tree, one
    directory open at a time; these callbacks keep the flat tree's directory in step with it,
    entering and leaving the same names (and checking `..` on the way up, as walk_down does)."""

    def __init__(self, dest_fd: int) -> None:
        self._dest = os.dup(dest_fd)  # the flat tree's directory matching the layer's current one
        self._above = []  # identities of the flat tree's directories above it

    def close(self) -> None:
        os.close(self._dest)

    def visit(self, source: int) -> list[str]:
        """Merge a directory's non-directories; return its subdirectories, which walk_down
        enters next. A name is one kind in one directory, so the order does not matter."""
        with os.scandir(source) as scan:
            entries = list(scan)
        directories = []
        for entry in entries:
            name = entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                directories.append(name)
                continue
            if is_whiteout(st) or stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode):
                fsutil.remove_tree_at(self._dest, name)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=self._dest)
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=self._dest, follow_symlinks=False)
            elif stat.S_ISREG(st.st_mode):
                _link_or_copy(source, name, self._dest)
            # Nothing else is ever unpacked into a layer tree.
        return directories

    def enter(self, source: int, name: str) -> int:
        """Open the layer's directory `name`, and make (or keep) the flat tree's."""
        child = os.open(name, _DIR_FLAGS, dir_fd=source)
        try:
            existing = fsutil.lstat_at(name, self._dest)
            if existing is not None and (not stat.S_ISDIR(existing.st_mode) or _has_opaque_xattr(child)):
                fsutil.remove_tree_at(self._dest, name)
                existing = None
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=self._dest)
            dest_child = os.open(name, _DIR_FLAGS, dir_fd=self._dest)
        except BaseException:
            os.close(child)
            raise
        self._above.append(fsutil.identity(self._dest))
        os.close(self._dest)
        self._dest = dest_child
        return child

    def leave(self, source: int, name: str) -> None:
        """Back in the parent, once `name` is merged: it takes the layer's attributes last,
        since adding entries changed its mtime."""
        parent = fsutil.step_up(self._dest, self._above.pop(), name)
        os.close(self._dest)
        self._dest = parent
        source_fd = os.open(name, _DIR_FLAGS, dir_fd=source)
        try:
            dest_fd = os.open(name, _DIR_FLAGS, dir_fd=self._dest)
            try:
                _copy_directory_attributes(source_fd, dest_fd)
            finally:
                os.close(dest_fd)
        finally:
            os.close(source_fd)


def _copy_directory_attributes(source_fd, target_fd):
    st = os.fstat(source_fd)
    wanted = _user_xattrs(source_fd)
    try:
        for name in set(_user_xattrs(target_fd)) - set(wanted):
            os.removexattr(target_fd, name)
        for name, value in wanted.items():
            os.setxattr(target_fd, name, value)
    except OSError as err:
        # A flat copy on a filesystem without user xattrs is still worth having.
        if err.errno not in (errno.ENOTSUP, errno.EPERM):
            raise
    os.fchmod(target_fd, stat.S_IMODE(st.st_mode) | 0o700)
    os.utime(target_fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _user_xattrs(fd):
    """The xattrs an image shows: user.*, without overlayfs's own."""
    names = [n for n in os.listxattr(fd) if n.startswith("user.") and not n.startswith("user.overlay.")]
    return {name: os.getxattr(fd, name) for name in names}


def _has_opaque_xattr(fd):
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _link_or_copy(source_dir, name, dest_dir):
    try:
        os.link(name, name, src_dir_fd=source_dir, dst_dir_fd=dest_dir, follow_symlinks=False)
    except OSError as err:
        # EXDEV: another filesystem; EPERM: protected_hardlinks and a file someone else owns.
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        _copy_file(source_dir, name, dest_dir)


def _copy_file(source_dir, name, dest_dir):
    """A copy of a regular file with its mode, times and user xattrs; holes stay holes."""
    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source_dir)
    try:
        st = os.fstat(source)
        target = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=dest_dir)
        try:
            for offset, size in _data_segments_of(source, st.st_size):
                for position in range(offset, offset + size, COPY_CHUNK):
                    chunk = os.pread(source, min(COPY_CHUNK, offset + size - position), position)
                    fsutil.pwrite_all(target, chunk, position)
            os.ftruncate(target, st.st_size)
            for attribute, value in _user_xattrs(source).items():
                try:
                    os.setxattr(target, attribute, value)
                except OSError as err:
                    if err.errno not in (errno.ENOTSUP, errno.EPERM):
                        raise
            os.fchmod(target, stat.S_IMODE(st.st_mode))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(target)
    finally:
        os.close(source)


def _data_segments_of(fd, size):
    """(offset, size) of the parts of a file that hold data (SEEK_DATA/SEEK_HOLE, lseek(2));
    a filesystem that cannot tell reports the whole file as data."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # nothing but a hole up to the end
                return
            raise
        if start >= size:  # the file grew meanwhile: only its first `size` bytes are copied
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end <= start:  # never for a sane filesystem; copying the rest is right anyway
            end = size
        yield start, end - start
        offset = end
