"""Unpack one layer tar (untrusted input) into its own tree, in overlayfs's format.

Each member is checked on its own as it streams past; nothing is ever written outside the tree:
- names: `..` anywhere refuses the layer; absolute names are made relative; over-long names
  refuse the layer;
- every directory on the way to a member is opened with O_NOFOLLOW relative to its parent's fd,
  so a symlink (from this layer, or swapped in by a racing process) can never redirect a write:
  a member below a symlink refuses the layer;
- hard links must name a file already unpacked in this layer, reached the same way;
- device nodes and FIFOs are skipped; setuid/setgid bits are stripped; files are made
  owner-readable and -writable and directories owner-writable, so the store can always be
  removed without root;
- `user.overlay.*` xattrs (which would let a layer forge overlayfs whiteouts or redirects) and
  all non-`user.*` xattrs are dropped.

Whiteouts are not applied to lower layers (this tree does not know them): they are written the
way overlayfs reads them, so stacking the layer trees as lowerdirs gives the image. `.wh.NAME`
becomes a 0/0 character device NAME (unprivileged users may create exactly this device since
Linux 5.8); `.wh..wh..opq` sets `user.overlay.opaque=y` on its directory (read with the
`userxattr` mount option). `merge_layers` flattens such trees when there is no overlayfs.
"""

import errno
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass

from .errors import LayerError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "user.overlay.opaque"
PAX_XATTR_PREFIX = "SCHILY.xattr."
COPY_CHUNK = 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class UnpackLimits:
    max_total_bytes: int = 64 * 1024**3  # the sum of file sizes in one layer: a decompression-bomb guard
    max_entries: int = 2_000_000
    max_path_bytes: int = 4096

    @classmethod
    def from_env(cls, environ):
        value = environ.get("TOOLBOX_MAX_LAYER_BYTES")
        return cls(max_total_bytes=int(value)) if value else cls()


@dataclass(frozen=True)
class LayerStats:
    files: int
    dirs: int
    symlinks: int
    hardlinks: int
    whiteouts: int
    opaque_dirs: int
    bytes: int
    skipped: tuple  # (member name, reason)


def split_name(name, member):
    """A member name as path components inside the tree; '' and '.' vanish, '..' is refused."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer member {member!r} contains '..': refusing a layer that writes outside its tree")
    return parts


def unpack_layer(tar_stream, dest_dir, limits=UnpackLimits()):
    """Unpack the uncompressed tar read from `tar_stream` into the empty directory `dest_dir`."""
    unpacker = _Unpacker(dest_dir, limits)
    try:
        try:
            with tarfile.open(fileobj=tar_stream, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
                for member in tar:
                    unpacker.add(tar, member)
        except (tarfile.TarError, EOFError) as err:
            raise LayerError(f"the layer is not a valid tar archive or is truncated: {err}") from None
        unpacker.finish()
    finally:
        unpacker.close()
    return unpacker.stats()


class _Unpacker:
    def __init__(self, dest_dir, limits):
        self._limits = limits
        self._root_fd = os.open(dest_dir, _DIR_FLAGS)
        # Open directories by path, so a member does not re-walk its path from the root (members
        # come grouped by directory). Safe: every fd was opened with O_NOFOLLOW one level at a
        # time; forgotten whenever a directory is removed or replaced.
        self._dir_fds = {}
        self._dir_mtimes = {}  # tuple(parts) -> mtime in ns, applied at the end
        self._counts = dict(files=0, dirs=0, symlinks=0, hardlinks=0, whiteouts=0, opaque_dirs=0, bytes=0)
        self._skipped = []
        self._entries = 0

    def close(self):
        self._forget_dirs()
        os.close(self._root_fd)

    def _forget_dirs(self):
        for fd in self._dir_fds.values():
            os.close(fd)
        self._dir_fds.clear()

    def stats(self):
        return LayerStats(skipped=tuple(self._skipped), **self._counts)

    # -- one member ------------------------------------------------------------------------------
    def add(self, tar, member):
        self._entries += 1
        if self._entries > self._limits.max_entries:
            raise LayerError(f"the layer has more than {self._limits.max_entries} members")
        name = member.name
        if len(os.fsencode(name)) > self._limits.max_path_bytes:
            raise LayerError(f"layer member name of {len(os.fsencode(name))} bytes is longer than {self._limits.max_path_bytes}")
        parts = split_name(name, name)
        if not parts:
            if member.isdir():  # the layer's root directory itself
                os.chmod(self._root_fd, _dir_mode(member.mode))
                self._dir_mtimes[()] = _ns(member.mtime)
            return
        base = parts[-1]
        if base == OPAQUE_MARKER:
            return self._opaque(parts[:-1], name)
        if base.startswith(WHITEOUT_PREFIX):
            return self._whiteout(parts[:-1], base[len(WHITEOUT_PREFIX):], name)
        try:
            self._add_entry(tar, member, parts)
        except OSError as err:
            if err.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
                raise LayerError(f"cannot unpack layer member {name!r}: {err.strerror}") from None
            raise

    def _add_entry(self, tar, member, parts):
        if member.ischr() or member.isblk() or member.isfifo():
            kind = "FIFO" if member.isfifo() else "device node"
            self._skipped.append((member.name, f"{kind} skipped: unprivileged users cannot create it"))
            return
        parent = self._parent_fd(parts, member.name)
        base = parts[-1]
        if member.isdir():
            self._directory(parent, base, member, parts)
        elif member.isreg():
            self._regular_file(parent, base, member, tar)
        elif member.issym():
            self._replace(parent, base)
            os.symlink(member.linkname, base, dir_fd=parent)
            os.utime(base, ns=(_ns(member.mtime),) * 2, dir_fd=parent, follow_symlinks=False)
            self._counts["symlinks"] += 1
        elif member.islnk():
            self._hard_link(parent, base, member)
        else:
            self._skipped.append((member.name, f"unsupported tar member type {member.type!r}"))

    def _directory(self, parent, base, member, parts):
        existing = _lstat(base, parent)
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            self._replace(parent, base)
            existing = None
        if existing is None:
            os.mkdir(base, 0o700, dir_fd=parent)
            self._counts["dirs"] += 1
        os.chmod(base, _dir_mode(member.mode), dir_fd=parent, follow_symlinks=False)
        self._dir_mtimes[tuple(parts)] = _ns(member.mtime)
        if member.pax_headers:
            fd = os.open(base, _DIR_FLAGS, dir_fd=parent)
            try:
                self._copy_xattrs(fd, member)
            finally:
                os.close(fd)

    def _regular_file(self, parent, base, member, tar):
        self._counts["bytes"] += member.size
        if self._counts["bytes"] > self._limits.max_total_bytes:
            raise LayerError(
                f"the layer unpacks to more than {self._limits.max_total_bytes} bytes",
                hint="if the image is genuine, raise the limit with TOOLBOX_MAX_LAYER_BYTES",
            )
        self._replace(parent, base)
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        try:
            source = tar.extractfile(member)
            copied = 0
            while True:
                chunk = source.read(COPY_CHUNK)
                if not chunk:
                    break
                copied += len(chunk)
                _write_all(fd, chunk)
            if copied != member.size:
                raise LayerError(f"layer member {member.name!r} is truncated")
            os.fchmod(fd, _file_mode(member.mode, member.name, self._skipped))
            self._copy_xattrs(fd, member)
            os.utime(fd, ns=(_ns(member.mtime),) * 2)
        finally:
            os.close(fd)
        self._counts["files"] += 1

    def _hard_link(self, parent, base, member):
        target_parts = split_name(member.linkname, member.name)
        if not target_parts:
            raise LayerError(f"hard link {member.name!r} points outside the layer: {member.linkname!r}")
        try:
            target_parent = self._open_existing_parent(target_parts)
        except FileNotFoundError:
            raise LayerError(f"hard link {member.name!r} points outside the layer: {member.linkname!r}") from None
        try:
            target = _lstat(target_parts[-1], target_parent)
            if target is None or not (stat.S_ISREG(target.st_mode) or stat.S_ISLNK(target.st_mode)):
                raise LayerError(f"hard link {member.name!r} points outside the layer: {member.linkname!r} is not a file unpacked before it")
            if target_parts == split_name(member.name, member.name):
                return  # a link to itself: already there
            self._replace(parent, base)
            os.link(target_parts[-1], base, src_dir_fd=target_parent, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(target_parent)
        self._counts["hardlinks"] += 1

    def _whiteout(self, parent_parts, target, name):
        if target in ("", ".", "..") or "/" in target:
            raise LayerError(f"whiteout {name!r} names {target!r}: refusing a layer that deletes outside its tree")
        parent = self._parent_fd(parent_parts + [target], name)
        self._replace(parent, target)
        try:
            os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=parent)
        except PermissionError:
            raise LayerError(
                f"cannot record whiteout {name!r}: this kernel does not let unprivileged users create overlay whiteouts",
                hint="Linux 5.8 or later is needed",
            ) from None
        self._counts["whiteouts"] += 1

    def _opaque(self, dir_parts, name):
        if not dir_parts:
            # An opaque root hides every lower layer: refuse rather than guess.
            raise LayerError(f"opaque whiteout {name!r} at the layer root is not supported")
        parent = self._parent_fd(dir_parts, name)
        base = dir_parts[-1]
        existing = _lstat(base, parent)
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            self._replace(parent, base)
            os.mkdir(base, 0o755, dir_fd=parent)
        fd = os.open(base, _DIR_FLAGS, dir_fd=parent)
        try:
            os.setxattr(fd, OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)
        self._counts["opaque_dirs"] += 1

    # -- walking the tree safely -----------------------------------------------------------------
    def _parent_fd(self, parts, member_name):
        """The fd (owned by the cache: do not close) of the directory that will hold parts[-1],
        creating missing directories and refusing to pass through anything that is not a real
        directory."""
        key = tuple(parts[:-1])
        depth = len(key)
        while depth and key[:depth] not in self._dir_fds:
            depth -= 1
        fd = self._dir_fds[key[:depth]] if depth else self._root_fd
        for index in range(depth, len(key)):
            fd = self._step_into(fd, key[index], key[: index + 1], member_name)
            if len(self._dir_fds) >= 64:  # with 4 layers in parallel, far below a 1024-fd limit
                self._forget_dirs()  # the new fd is not in the cache yet, so it stays open
            self._dir_fds[key[: index + 1]] = fd
        return fd

    def _step_into(self, fd, part, walked, member_name):
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            os.mkdir(part, 0o755, dir_fd=fd)
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except (NotADirectoryError, OSError) as err:
            if not isinstance(err, NotADirectoryError) and err.errno != errno.ELOOP:
                raise
            existing = _lstat(part, fd)
            if existing is not None and stat.S_ISLNK(existing.st_mode):
                raise LayerError(f"layer member {member_name!r} would be written through the symlink {'/'.join(walked)!r}") from None
            if existing is not None and _is_whiteout(existing):
                # Deleted and re-created in the same layer: a fresh directory that hides the lower one.
                os.unlink(part, dir_fd=fd)
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.setxattr(child, OPAQUE_XATTR, b"y")
            else:
                raise LayerError(f"layer member {member_name!r} needs {'/'.join(walked)!r} to be a directory, but it is a file") from None
        return child

    def _open_existing_parent(self, parts):
        fd = os.dup(self._root_fd)
        try:
            for part in parts[:-1]:
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except (NotADirectoryError, OSError) as err:
                    if isinstance(err, FileNotFoundError):
                        raise
                    raise FileNotFoundError(part) from None  # a symlink or file on the way
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _replace(self, parent, base):
        """Remove what a later member of the same name replaces (tar semantics: last one wins)."""
        existing = _lstat(base, parent)
        if existing is None:
            return
        if stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(base, dir_fd=parent)
            # Cached fds below it now name deleted directories. (Pending mtimes of paths that
            # are gone are harmless: finish() skips what it cannot open.)
            self._forget_dirs_except(parent)
        else:
            os.unlink(base, dir_fd=parent)

    def _forget_dirs_except(self, parent):
        # `parent` itself may be a cached fd that callers still use, so keep that one.
        keep = {key: fd for key, fd in self._dir_fds.items() if fd == parent}
        for key, fd in self._dir_fds.items():
            if key not in keep:
                os.close(fd)
        self._dir_fds = keep

    def _copy_xattrs(self, fd, member):
        for key, value in member.pax_headers.items():
            if not key.startswith(PAX_XATTR_PREFIX):
                continue
            attribute = key[len(PAX_XATTR_PREFIX):]
            if not attribute.startswith("user.") or attribute.startswith("user.overlay."):
                self._skipped.append((member.name, f"xattr {attribute} dropped"))
                continue
            try:
                os.setxattr(fd, attribute, value.encode("utf-8", "surrogateescape"))
            except OSError as err:
                self._skipped.append((member.name, f"xattr {attribute} not kept: {err.strerror}"))

    def finish(self):
        """Directory mtimes last (adding children changed them), deepest first."""
        for parts in sorted(self._dir_mtimes, key=len, reverse=True):
            mtime = self._dir_mtimes[parts]
            if not parts:
                os.utime(self._root_fd, ns=(mtime, mtime))
                continue
            try:
                parent = self._open_existing_parent(list(parts))
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                os.utime(parts[-1], ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                pass
            finally:
                os.close(parent)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _lstat(name, dir_fd):
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _ns(mtime):
    return int(mtime * 1_000_000_000)


def _dir_mode(mode):
    return (mode & 0o1777) | 0o700


def _file_mode(mode, name, skipped):
    if mode & 0o6000:
        skipped.append((name, "setuid/setgid bit stripped"))
    return (mode & 0o1777) | 0o600


# -- flattening ------------------------------------------------------------------------------------


def merge_layers(layer_trees, dest_dir):
    """Flatten layer trees (lowest first) into one root filesystem in the empty `dest_dir`,
    with overlayfs's rules: a whiteout deletes the name below it, an opaque directory hides all
    that was below it, and a non-directory replaces a directory (and back). Regular files are
    hard-linked from the layer trees (copied across filesystems), so this costs no file data."""
    for tree in layer_trees:
        _merge_directory(os.fsencode(tree), os.fsencode(dest_dir))


def _merge_directory(source, dest):
    with os.scandir(source) as entries:
        for entry in entries:
            target = os.path.join(dest, entry.name)
            st = entry.stat(follow_symlinks=False)
            if _is_whiteout(st):
                _remove_any(target)
            elif stat.S_ISDIR(st.st_mode):
                _merge_subdirectory(entry.path, target, st)
            else:
                _remove_any(target)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(entry.path), target)
                elif stat.S_ISREG(st.st_mode):
                    _link_or_copy(entry.path, target)


def _merge_subdirectory(source, target, st):
    existing = _lstat(target, None)
    opaque = _has_opaque_xattr(source)
    if existing is not None and (opaque or not stat.S_ISDIR(existing.st_mode)):
        _remove_any(target)
        existing = None
    if existing is None:
        os.mkdir(target, 0o700)
    _merge_directory(source, target)
    os.chmod(target, stat.S_IMODE(st.st_mode) | 0o700)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def _has_opaque_xattr(path):
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _link_or_copy(source, target):
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(source, target, follow_symlinks=False)


def _remove_any(path):
    st = _lstat(path, None)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
