"""Unpack one layer tar (untrusted input) into its own tree, in overlayfs's format.

Each member is checked on its own as it streams past; nothing is ever written outside the tree:
- names: `..` or a NUL anywhere refuses the layer; absolute names are made relative; over-long
  names and names nested more than 512 directories deep refuse the layer;
- every directory on the way to a member is opened with O_NOFOLLOW relative to its parent's fd,
  so a symlink (from this layer, or swapped in by a racing process) can never redirect a write:
  a member below a symlink refuses the layer;
- hard links must name a file already unpacked in this layer, reached the same way;
- device nodes and FIFOs are skipped; setuid/setgid bits are stripped; files are made
  owner-readable and -writable and directories owner-writable, so the store can always be
  removed without root;
- `user.overlay.*` xattrs (which would let a layer forge overlayfs whiteouts or redirects) and
  all non-`user.*` xattrs are dropped;
- sparse members (GNU tar --sparse) are written as sparse files: only their data segments,
  checked against the file's size, the rest left as holes; the data written counts against the
  per-layer limit;
- a damaged or cut-off tar is an error, never a silently shorter layer.

Whiteouts are not applied to lower layers (this tree does not know them): they are written the
way overlayfs reads them, so stacking the layer trees as lowerdirs gives the image. `.wh.NAME`
becomes a 0/0 character device NAME (unprivileged users may create exactly this device since
Linux 5.8); `.wh..wh..opq` sets `user.overlay.opaque=y` on its directory (read with the
`userxattr` mount option). A whiteout hides only what lower layers hold, never this layer's own
entries (OCI image-spec, layer.md, "Whiteouts"). runtime/flatten.py flattens such trees when there
is no overlayfs.

A hostile or broken layer raises LayerError; a machine that cannot hold the format (no
unprivileged whiteouts, no user xattrs on the store's filesystem) raises StoreError.

Three modules: layertar.py reads the tar strictly and checks each member's header,
layertree.py reaches the tree's directories safely and writes the whiteout format, and this one
turns each member into its entry in the tree.
"""

from __future__ import annotations

import copy
import errno
import math
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from toolbox.errors import LayerError
from toolbox.fsutil import lstat_at, pwrite_all
from toolbox.runtime.imagefs import is_whiteout
from toolbox.store.layertar import (
    COPY_CHUNK,
    TAR_ERRORS,
    ByteStream,
    UnpackLimits,
    check_data_span,
    check_name,
    data_segments,
    discard_data,
    members,
    open_tar,
    path_parts,
    too_big,
)
from toolbox.store.layertree import DIR_FLAGS, LayerTree, make_whiteout, set_opaque

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
AUFS_META_PREFIX = ".wh..wh."  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not image content
PAX_XATTR_PREFIX = "SCHILY.xattr."
_WHITEOUT = WHITEOUT_PREFIX.encode()  # names are compared as bytes: they need not be UTF-8
_OPAQUE = OPAQUE_MARKER.encode()
_AUFS_META = AUFS_META_PREFIX.encode()
MAX_SKIPPED_LISTED = 1000
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NS_LIMIT = 2**63 - 1
# Errors the layer's content causes (a 300-byte name, 70000 links to one file), not the machine.
_LAYER_ERRNOS = (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL, errno.EMLINK, errno.EFBIG)


@dataclass(frozen=True)
class LayerStats:
    """What the layer held, counted by member (a directory named twice counts twice)."""

    files: int
    dirs: int
    symlinks: int
    hardlinks: int
    whiteouts: int
    opaque_dirs: int
    bytes: int  # the sum of regular file sizes (a sparse file's holes included)
    skipped: tuple  # (member name, reason), the first MAX_SKIPPED_LISTED of them


def unpack_layer(tar_stream: ByteStream, dest_dir: str, limits: UnpackLimits = UnpackLimits(),
                 on_write: Callable[[int], None] | None = None) -> LayerStats:
    """Unpack the uncompressed tar read from `tar_stream` (read(n) is all it needs) into the
    empty directory `dest_dir`. On error the tree is half-made: the caller removes it.
    `on_write(n)` is called after each n bytes of file data written, and with 0 for each
    member, so a caller can watch the disk as the tree grows (and stop it by raising)."""
    unpacker = _Unpacker(dest_dir, limits, on_write or _ignore)
    try:
        with open_tar(tar_stream) as tar:
            for member in members(tar):
                unpacker.add(tar, member)
        unpacker.finish()
    finally:
        unpacker.close()
    return unpacker.stats()


def _ignore(_written):
    pass


class _Unpacker:
    def __init__(self, dest_dir: str, limits: UnpackLimits, on_write: Callable[[int], None]) -> None:
        self._limits = limits
        self._on_write = on_write
        self._tree = LayerTree(dest_dir)
        self._counts = dict(files=0, dirs=0, symlinks=0, hardlinks=0, whiteouts=0, opaque_dirs=0, bytes=0)
        self._data_bytes = 0  # what the files' data takes: their sizes without sparse files' holes
        self._skipped = []
        self._skipped_count = 0
        self._entries = 0

    def close(self) -> None:
        self._tree.close()

    def finish(self) -> None:
        self._tree.finish()

    def stats(self) -> LayerStats:
        skipped = list(self._skipped)
        if self._skipped_count > len(skipped):
            skipped.append(("...",
                            f"and {self._skipped_count - len(skipped)} more members skipped or changed"))
        return LayerStats(skipped=tuple(skipped), **self._counts)

    def _skip(self, member_name, reason):
        self._skipped_count += 1
        if len(self._skipped) < MAX_SKIPPED_LISTED:
            self._skipped.append((member_name, reason))

    # -- one member ------------------------------------------------------------------------------
    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self._count_entry()
        self._on_write(0)
        check_data_span(tar, member, self._limits)
        parts = path_parts(member.name, member.name)
        check_name(parts, member.name, self._limits)
        try:
            self._dispatch(tar, member, parts)
        except OSError as err:
            if err.errno in _LAYER_ERRNOS:
                raise LayerError(f"cannot unpack layer member {member.name!r}: {err.strerror}") from None
            raise

    def _count_entry(self):
        self._entries += 1
        if self._entries > self._limits.max_entries:
            raise LayerError(f"the layer has more than {self._limits.max_entries} members")

    def _dispatch(self, tar, member, parts):
        if not parts:
            return self._root_entry(tar, member)
        base = parts[-1]
        if any(part.startswith(_WHITEOUT) for part in parts[:-1]):
            discard_data(tar, member)
            return self._skip(member.name, "below a .wh. name, which is reserved for whiteouts")
        if base == _OPAQUE:
            discard_data(tar, member)
            return self._opaque(parts[:-1], member.name)
        if base.startswith(_AUFS_META):
            discard_data(tar, member)
            return self._skip(member.name, "aufs metadata skipped")
        if base.startswith(_WHITEOUT):
            discard_data(tar, member)
            return self._whiteout(parts[:-1], base[len(_WHITEOUT):], member.name)
        if member.isdir():
            self._directory(parts, member)
        elif member.isreg():
            self._regular_file(parts, member, tar)
        elif member.issym():
            self._symlink(parts, member)
        elif member.islnk():
            self._hard_link(parts, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = "FIFO" if member.isfifo() else "device node"
            self._skip(member.name, f"{kind} skipped: unprivileged users cannot create it")
        else:
            discard_data(tar, member)
            self._skip(member.name, f"unsupported tar member type {member.type!r}")

    def _root_entry(self, tar, member):
        if member.isdir():
            os.fchmod(self._tree.root_fd, _dir_mode(member.mode))
            self._copy_xattrs(self._tree.root_fd, member)
            self._tree.set_dir_mtime([], _ns(member.mtime))
        else:
            discard_data(tar, member)
            self._skip(member.name, "a member naming the layer's root that is not a directory")

    def _directory(self, parts, member):
        parent = self._tree.parent_fd(parts, member.name)
        base = parts[-1]
        existing = lstat_at(base, parent)
        replaces_whiteout = existing is not None and is_whiteout(existing)
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            self._tree.remove(parent, base, parts)
            existing = None
        if existing is None:
            os.mkdir(base, 0o700, dir_fd=parent)
        fd = os.open(base, DIR_FLAGS, dir_fd=parent)
        try:
            # fchmod on an O_NOFOLLOW fd: chmod(follow_symlinks=False) needs fchmodat2 (Linux
            # 6.6) or a mounted /proc, and raises NotImplementedError without them.
            os.fchmod(fd, _dir_mode(member.mode))
            if replaces_whiteout:
                # Deleted and re-created in this layer: the new directory must hide the old one.
                set_opaque(fd, member.name)
            self._copy_xattrs(fd, member)
        finally:
            os.close(fd)
        self._tree.set_dir_mtime(parts, _ns(member.mtime))
        self._counts["dirs"] += 1

    def _regular_file(self, parts, member, tar):
        segments = data_segments(tar, member)
        self._count_bytes(member, sum(size for _offset, size in segments))
        parent = self._tree.parent_fd(parts, member.name)
        base = parts[-1]
        self._tree.remove(parent, base, parts)
        fd = os.open(base, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            self._write_data(fd, tar, member, segments)
            os.fchmod(fd, self._file_mode(member))
            self._copy_xattrs(fd, member)
            os.utime(fd, ns=(_ns(member.mtime),) * 2)
        finally:
            os.close(fd)
        self._counts["files"] += 1

    def _count_bytes(self, member, data_bytes):
        """The limit bounds the data a layer writes (a sparse file's holes are not written), and
        also what one file may claim to be, holes included."""
        if member.sparse is not None and member.size > self._limits.max_total_bytes:
            raise too_big(f"layer member {member.name!r} is {member.size} bytes long (holes included)",
                          self._limits)
        self._counts["bytes"] += member.size
        self._data_bytes += data_bytes
        if self._data_bytes > self._limits.max_total_bytes:
            raise too_big("the layer unpacks to more bytes than allowed", self._limits)

    def _write_data(self, fd, tar, member, segments):
        if member.sparse is None:
            reader = tar.extractfile(member)
        else:
            # tarfile would read a sparse member's holes as zeros, as many as the header claims.
            # The archive holds the data segments one after the other: read them as one plain
            # stretch (the member without its map) and write each where it belongs.
            plain = copy.copy(member)
            plain.sparse = None
            plain.size = sum(size for _offset, size in segments)
            reader = tar.extractfile(plain)
        for offset, size in segments:
            position, end = offset, offset + size
            while position < end:
                try:
                    chunk = reader.read(min(COPY_CHUNK, end - position))
                except TAR_ERRORS as err:
                    raise LayerError(f"layer member {member.name!r} is truncated: {err}") from None
                if not chunk:
                    raise LayerError(f"layer member {member.name!r} is truncated")
                pwrite_all(fd, chunk, position)
                position += len(chunk)
                self._on_write(len(chunk))
        if member.sparse is not None:
            os.ftruncate(fd, member.size)  # holes, up to the file's size

    def _symlink(self, parts, member):
        target = member.linkname.encode("utf-8", "surrogateescape")
        if not target or b"\0" in target:
            return self._skip(member.name, "symlink with an empty target or a NUL byte in it")
        parent = self._tree.parent_fd(parts, member.name)
        base = parts[-1]
        self._tree.remove(parent, base, parts)
        # The target is kept as written (absolute, or with '..'): it is resolved inside the
        # container's root at run time, and nothing here ever follows it.
        os.symlink(target, base, dir_fd=parent)
        os.utime(base, ns=(_ns(member.mtime),) * 2, dir_fd=parent, follow_symlinks=False)
        self._counts["symlinks"] += 1

    def _hard_link(self, parts, member):
        target = path_parts(member.linkname, member.name)
        outside = f"hard link {member.name!r} points outside the layer: {member.linkname!r}"
        if not target:
            raise LayerError(outside)
        if target[: len(parts)] == parts and target != parts:
            raise LayerError(f"hard link {member.name!r} would replace the directory holding its target "
                             f"{member.linkname!r}")
        target_parent = self._tree.open_existing_dir(target[:-1])
        if target_parent is None:
            raise LayerError(outside)
        try:
            found = lstat_at(target[-1], target_parent)
            # A hard link to a symlink is what tar records for a symlink with two names.
            if found is None or not (stat.S_ISREG(found.st_mode) or stat.S_ISLNK(found.st_mode)):
                raise LayerError(f"{outside} is not a file unpacked before it")
            if target != parts:
                parent = self._tree.parent_fd(parts, member.name)
                self._tree.remove(parent, parts[-1], parts)
                os.link(target[-1], parts[-1], src_dir_fd=target_parent, dst_dir_fd=parent,
                        follow_symlinks=False)
        finally:
            os.close(target_parent)
        self._counts["hardlinks"] += 1

    def _whiteout(self, dir_parts, name, member_name):
        if name in (b"", b".", b".."):
            raise LayerError(f"whiteout {member_name!r} names {os.fsdecode(name)!r}: refusing a layer that "
                             "deletes outside its tree")
        parts = dir_parts + [name]
        parent = self._tree.parent_fd(parts, member_name)
        existing = lstat_at(name, parent)
        if existing is None:
            make_whiteout(parent, name, member_name)
        elif stat.S_ISDIR(existing.st_mode):
            # This layer's own directory stays; only what lower layers hold there is hidden.
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
            try:
                set_opaque(fd, member_name)
            finally:
                os.close(fd)
        # Anything else this layer made under that name already hides the lower entry.
        self._counts["whiteouts"] += 1

    def _opaque(self, dir_parts, member_name):
        if not dir_parts:
            # An opaque root would hide every lower layer; overlayfs cannot express that.
            raise LayerError(f"opaque whiteout {member_name!r} at the layer root is not supported")
        # The directory itself is reached (or made) like any member's parent.
        set_opaque(self._tree.parent_fd(dir_parts + [_OPAQUE], member_name), member_name)
        self._counts["opaque_dirs"] += 1

    def _file_mode(self, member):
        if member.mode & 0o6000:
            self._skip(member.name, "setuid/setgid bit stripped")
        return (member.mode & 0o1777) | 0o600

    def _copy_xattrs(self, fd, member):
        for key, value in member.pax_headers.items():
            if not key.startswith(PAX_XATTR_PREFIX):
                continue
            attribute = key[len(PAX_XATTR_PREFIX):]
            if not attribute.startswith("user.") or attribute.startswith("user.overlay."):
                self._skip(member.name, f"xattr {attribute} dropped")
                continue
            try:
                os.setxattr(fd, attribute, value.encode("utf-8", "surrogateescape"))
            except (OSError, ValueError) as err:
                self._skip(member.name,
                           f"xattr {attribute} not kept: {getattr(err, 'strerror', None) or err}")



def _ns(mtime):
    """Nanoseconds for utime. Mtimes are layer input too: NaN, infinity and absurd years (PAX
    allows them) are clamped rather than crashed on."""
    if not math.isfinite(mtime):
        return 0
    return max(-_NS_LIMIT, min(_NS_LIMIT, int(mtime * 1_000_000_000)))


def _dir_mode(mode):
    return (mode & 0o1777) | 0o700
