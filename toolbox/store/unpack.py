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
entries (OCI image-spec, layer.md, "Whiteouts"). `merge_layers` flattens such trees when there is
no overlayfs.

A hostile or broken layer raises LayerError; a machine that cannot hold the format (no
unprivileged whiteouts, no user xattrs on the store's filesystem) raises StoreError.
"""

import copy
import errno
import math
import os
import stat
import tarfile
from dataclasses import dataclass

from toolbox import fsutil
from toolbox.errors import ConfigError, LayerError, StoreError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
AUFS_META_PREFIX = ".wh..wh."  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not image content
OPAQUE_XATTR = "user.overlay.opaque"
PAX_XATTR_PREFIX = "SCHILY.xattr."
_WHITEOUT = WHITEOUT_PREFIX.encode()  # names are compared as bytes: they need not be UTF-8
_OPAQUE = OPAQUE_MARKER.encode()
_AUFS_META = AUFS_META_PREFIX.encode()
COPY_CHUNK = 1024 * 1024
# tarfile reads a PAX or GNU long-name header whole into memory; real ones are a few kB.
MAX_EXTENDED_HEADER = 1024 * 1024
MAX_SKIPPED_LISTED = 1000
_DIR_FD_CACHE = 64  # with 4 layers unpacking in parallel, far below a 1024-fd limit
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NS_LIMIT = 2**63 - 1
# Errors the layer's content causes (a 300-byte name, 70000 links to one file), not the machine.
_LAYER_ERRNOS = (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL, errno.EMLINK, errno.EFBIG)


@dataclass(frozen=True)
class UnpackLimits:
    # A decompression-bomb guard: the file data one layer may write (a sparse file's holes are
    # not written), and the most one file may claim to be, holes included.
    max_total_bytes: int = 64 * 1024**3
    max_entries: int = 2_000_000
    max_path_bytes: int = 4096  # names (normalised) must be shorter: Linux's PATH_MAX counts the NUL
    # Real images nest tens of directories. Over two thousand one-letter ones fit in PATH_MAX,
    # and every tool that walks such a tree (recursively, or one fd per level) pays for them.
    max_depth: int = 512

    @classmethod
    def from_env(cls, environ):
        value = environ.get("TOOLBOX_MAX_LAYER_BYTES", "").strip()
        if not value:
            return cls()
        try:
            return cls(max_total_bytes=int(value))
        except ValueError:
            raise ConfigError(f"TOOLBOX_MAX_LAYER_BYTES={value!r} is not a number of bytes") from None


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


def unpack_layer(tar_stream, dest_dir, limits=UnpackLimits(), on_write=None):
    """Unpack the uncompressed tar read from `tar_stream` (read(n) is all it needs) into the
    empty directory `dest_dir`. On error the tree is half-made: the caller removes it.
    `on_write(n)` is called after each n bytes of file data written, and with 0 for each
    member, so a caller can watch the disk as the tree grows (and stop it by raising)."""
    unpacker = _Unpacker(dest_dir, limits, on_write or _ignore)
    try:
        with _open_tar(tar_stream) as tar:
            for member in _members(tar):
                unpacker.add(tar, member)
        unpacker.finish()
    finally:
        unpacker.close()
    return unpacker.stats()


# -- reading the tar strictly ----------------------------------------------------------------------


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile ends an archive quietly at a damaged or cut-off header anywhere after the first
    one (TarFile.next), which would turn a broken layer into a shorter one. Raising something
    that is not a tarfile.HeaderError gets past that."""

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        try:
            return super().frombuf(buf, encoding, errors)
        except (tarfile.TruncatedHeaderError, tarfile.InvalidHeaderError) as err:
            raise LayerError(f"the layer is not a valid tar archive or is truncated: {err}") from None

    def _proc_member(self, tarfile_):
        if self.type in _EXTENDED_HEADER_TYPES and self.size > MAX_EXTENDED_HEADER:
            raise LayerError(f"the layer has an extended tar header of {self.size} bytes; refusing to read it into memory")
        return super()._proc_member(tarfile_)

    # A sparse member's map is read whole into a list before this module sees the member: in
    # GNU's old format it goes on in 512-byte extension blocks for as long as each says so, and
    # in PAX format 1.0 it is a count followed by that many numbers in the data. Zeros compress
    # to nothing, so a 12 KB layer could make tarfile build a map of millions of entries
    # (354 MB, 3 s). Both are read here with a bound, as tarfile reads them otherwise.
    def _proc_sparse(self, tarfile_):
        structs, isextended, origsize = self._sparse_structs
        del self._sparse_structs
        while isextended:
            block = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
            if len(block) < tarfile.BLOCKSIZE:
                raise LayerError(f"layer member {self.name!r}: its sparse map is cut off")
            for position in range(0, 21 * 24, 24):
                try:
                    offset, numbytes = tarfile.nti(block[position:position + 12]), tarfile.nti(block[position + 12:position + 24])
                except ValueError:
                    break
                if offset and numbytes:
                    structs.append((offset, numbytes))
            _check_sparse_entries(self.name, len(structs))
            isextended = bool(block[504])
        self.sparse = structs
        self.offset_data = tarfile_.fileobj.tell()
        tarfile_.offset = self.offset_data + self._block(self.size)
        self.size = origsize
        return self

    def _proc_gnusparse_10(self, next_, pax_headers, tarfile_):
        buffer = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
        count, _, buffer = buffer.partition(b"\n")
        try:
            entries = int(count)
        except ValueError:
            raise LayerError(f"layer member {next_.name!r}: its sparse map does not start with a count") from None
        _check_sparse_entries(next_.name, entries)
        numbers = []
        while len(numbers) < entries * 2:
            if b"\n" not in buffer:
                more = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
                if not more or len(buffer) > 64:
                    raise LayerError(f"layer member {next_.name!r}: its sparse map is damaged or cut off")
                buffer += more
            number, _, buffer = buffer.partition(b"\n")
            try:
                numbers.append(int(number))
            except ValueError:
                raise LayerError(f"layer member {next_.name!r}: its sparse map holds {number[:20]!r}, not a number") from None
        next_.offset_data = tarfile_.fileobj.tell()
        next_.sparse = list(zip(numbers[::2], numbers[1::2]))


# Real sparse files (databases, lastlog, VM images) have hundreds of data segments, not millions.
MAX_SPARSE_ENTRIES = 1 << 16


def _check_sparse_entries(name, count):
    if count > MAX_SPARSE_ENTRIES or count < 0:
        raise LayerError(f"layer member {name!r} claims a sparse map of {count} or more entries; toolbox reads at most {MAX_SPARSE_ENTRIES}")


_EXTENDED_HEADER_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
# What tarfile raises on hostile headers: its own errors, and ValueError from e.g. a GNU sparse map
# that is not numbers.
_TAR_ERRORS = (tarfile.TarError, EOFError, ValueError, OverflowError)


def _open_tar(stream):
    try:
        # "r|": a forward-only stream, never decompressed here (compression.py did that).
        return tarfile.open(fileobj=stream, mode="r|", tarinfo=_StrictTarInfo, encoding="utf-8", errors="surrogateescape")
    except _TAR_ERRORS as err:
        raise LayerError(f"the layer is not a valid tar archive: {err}") from None


def _members(tar):
    members = iter(tar)
    while True:
        try:
            member = next(members)
        except StopIteration:
            return
        except _TAR_ERRORS as err:
            raise LayerError(f"the layer is not a valid tar archive or is truncated: {err}") from None
        yield member


def _read_chunks(tar, member):
    source = tar.extractfile(member)
    while True:
        try:
            chunk = source.read(COPY_CHUNK)
        except _TAR_ERRORS as err:
            raise LayerError(f"layer member {member.name!r} is truncated: {err}") from None
        if not chunk:
            return
        yield chunk


def _discard_data(tar, member):
    """Read the data of a member that is not kept, so a layer cut off inside it is still noticed
    (tarfile would skip it without checking). Not sparse members: their holes would be read as
    zeros, as many as the header claims."""
    if member.size > 0 and member.sparse is None and (member.isreg() or member.type not in tarfile.SUPPORTED_TYPES):
        for _ in _read_chunks(tar, member):
            pass


def _path_parts(name, member_name):
    """A member name as components (bytes, so names that are not UTF-8 keep their bytes) inside
    the tree. '' and '.' vanish, which also makes absolute names relative; '..' is refused."""
    raw = name.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise LayerError(f"layer member {member_name!r} has a NUL byte in a name")
    parts = [part for part in raw.split(b"/") if part not in (b"", b".")]
    if b".." in parts:
        raise LayerError(f"layer member {member_name!r} contains '..': refusing a layer that writes outside its tree")
    return parts


def _abbreviated(name):
    return name if len(name) <= 80 else name[:60] + "..."


def _show(parts):
    return os.fsdecode(b"/".join(parts))


# -- writing the tree ------------------------------------------------------------------------------


def _ignore(_written):
    pass


class _Unpacker:
    def __init__(self, dest_dir, limits, on_write):
        self._limits = limits
        self._on_write = on_write
        self._root_fd = os.open(dest_dir, _DIR_FLAGS)
        # Open directories by path, so a member does not re-walk its path from the root (members
        # come grouped by directory). Safe: every fd was opened with O_NOFOLLOW one level at a
        # time; forgotten whenever a directory is removed.
        self._dir_fds = {}
        self._dir_mtimes = {}  # tuple(parts) -> mtime in ns, applied at the end
        self._counts = dict(files=0, dirs=0, symlinks=0, hardlinks=0, whiteouts=0, opaque_dirs=0, bytes=0)
        self._data_bytes = 0  # what the files' data takes: their sizes without sparse files' holes
        self._skipped = []
        self._skipped_count = 0
        self._entries = 0

    def close(self):
        self._forget_dirs()
        os.close(self._root_fd)

    def stats(self):
        skipped = list(self._skipped)
        if self._skipped_count > len(skipped):
            skipped.append(("...", f"and {self._skipped_count - len(skipped)} more members skipped or changed"))
        return LayerStats(skipped=tuple(skipped), **self._counts)

    def _skip(self, member_name, reason):
        self._skipped_count += 1
        if len(self._skipped) < MAX_SKIPPED_LISTED:
            self._skipped.append((member_name, reason))

    # -- one member ------------------------------------------------------------------------------
    def add(self, tar, member):
        self._count_entry()
        self._on_write(0)
        self._check_data_span(tar, member)
        parts = _path_parts(member.name, member.name)
        self._check_name_length(parts, member.name)
        self._check_depth(parts, member.name)
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

    def _check_name_length(self, parts, name):
        size = len(b"/".join(parts))
        if size >= self._limits.max_path_bytes:
            limit = self._limits.max_path_bytes
            raise LayerError(f"layer member name of {size} bytes is too long: paths must be shorter than {limit} bytes ({_abbreviated(name)!r})")

    def _check_depth(self, parts, name):
        if len(parts) > self._limits.max_depth:
            raise LayerError(
                f"layer member {_abbreviated(name)!r} is {len(parts)} levels deep, more than the limit of {self._limits.max_depth}",
                hint="no real image nests so deep: the layer is broken or hostile; nothing of it was kept",
            )

    def _check_data_span(self, tar, member):
        """tarfile skips data it is not asked for by reading it, block by block, even past the
        end of the stream: a header claiming 2**90 bytes would loop for ever. The span it will
        skip is where the next header starts, minus where this member's data starts."""
        span = tar.offset - member.offset_data
        if span > self._limits.max_total_bytes:
            raise _too_big(f"layer member {member.name!r} claims {span} bytes of data", self._limits)

    def _dispatch(self, tar, member, parts):
        if not parts:
            return self._root_entry(tar, member)
        base = parts[-1]
        if any(part.startswith(_WHITEOUT) for part in parts[:-1]):
            _discard_data(tar, member)
            return self._skip(member.name, "below a .wh. name, which is reserved for whiteouts")
        if base == _OPAQUE:
            _discard_data(tar, member)
            return self._opaque(parts[:-1], member.name)
        if base.startswith(_AUFS_META):
            _discard_data(tar, member)
            return self._skip(member.name, "aufs metadata skipped")
        if base.startswith(_WHITEOUT):
            _discard_data(tar, member)
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
            _discard_data(tar, member)
            self._skip(member.name, f"unsupported tar member type {member.type!r}")

    def _root_entry(self, tar, member):
        if member.isdir():
            os.fchmod(self._root_fd, _dir_mode(member.mode))
            self._copy_xattrs(self._root_fd, member)
            self._dir_mtimes[()] = _ns(member.mtime)
        else:
            _discard_data(tar, member)
            self._skip(member.name, "a member naming the layer's root that is not a directory")

    def _directory(self, parts, member):
        parent = self._parent_fd(parts, member.name)
        base = parts[-1]
        existing = _lstat(base, parent)
        replaces_whiteout = existing is not None and _is_whiteout(existing)
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            self._remove(parent, base, parts)
            existing = None
        if existing is None:
            os.mkdir(base, 0o700, dir_fd=parent)
        fd = os.open(base, _DIR_FLAGS, dir_fd=parent)
        try:
            # fchmod on an O_NOFOLLOW fd: chmod(follow_symlinks=False) needs fchmodat2 (Linux
            # 6.6) or a mounted /proc, and raises NotImplementedError without them.
            os.fchmod(fd, _dir_mode(member.mode))
            if replaces_whiteout:
                # Deleted and re-created in this layer: the new directory must hide the old one.
                _set_opaque(fd, member.name)
            self._copy_xattrs(fd, member)
        finally:
            os.close(fd)
        self._dir_mtimes[tuple(parts)] = _ns(member.mtime)
        self._counts["dirs"] += 1

    def _regular_file(self, parts, member, tar):
        segments = self._data_segments(tar, member)
        self._count_bytes(member, sum(size for _offset, size in segments))
        parent = self._parent_fd(parts, member.name)
        base = parts[-1]
        self._remove(parent, base, parts)
        fd = os.open(base, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            self._write_data(fd, tar, member, segments)
            os.fchmod(fd, self._file_mode(member))
            self._copy_xattrs(fd, member)
            os.utime(fd, ns=(_ns(member.mtime),) * 2)
        finally:
            os.close(fd)
        self._counts["files"] += 1

    @staticmethod
    def _data_segments(tar, member):
        """(offset, size) of the parts of the file the member holds data for: all of it, or for
        a sparse member (GNU tar --sparse, old GNU or PAX format) the segments its map lists,
        the rest being holes. tarfile takes the map as written, so it is checked here: data
        segments in order, not overlapping, inside the file, and no more data than the archive
        holds for the member (reading more would consume the next members' headers). Empty
        entries are no data: GNU tar ends a map with one, and tarfile adds the unused slots of
        an old GNU header as (0, 0)."""
        if member.size < 0:
            raise LayerError(f"layer member {member.name!r} has a negative size")
        if member.sparse is None:
            return [(0, member.size)] if member.size else []
        segments, end = [], 0
        for offset, size in member.sparse:
            if size == 0:
                continue
            if offset < end or size < 0 or offset + size > member.size:
                raise LayerError(f"layer member {member.name!r} has a sparse map that is out of order or reaches past the file's size")
            segments.append((offset, size))
            end = offset + size
        if sum(size for _offset, size in segments) > tar.offset - member.offset_data:
            raise LayerError(f"the sparse map of layer member {member.name!r} lists more data than the archive holds for it")
        return segments

    def _count_bytes(self, member, data_bytes):
        """The limit bounds the data a layer writes (a sparse file's holes are not written), and
        also what one file may claim to be, holes included."""
        if member.sparse is not None and member.size > self._limits.max_total_bytes:
            raise _too_big(f"layer member {member.name!r} is {member.size} bytes long (holes included)", self._limits)
        self._counts["bytes"] += member.size
        self._data_bytes += data_bytes
        if self._data_bytes > self._limits.max_total_bytes:
            raise _too_big("the layer unpacks to more bytes than allowed", self._limits)

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
                except _TAR_ERRORS as err:
                    raise LayerError(f"layer member {member.name!r} is truncated: {err}") from None
                if not chunk:
                    raise LayerError(f"layer member {member.name!r} is truncated")
                _pwrite_all(fd, chunk, position)
                position += len(chunk)
                self._on_write(len(chunk))
        if member.sparse is not None:
            os.ftruncate(fd, member.size)  # holes, up to the file's size

    def _symlink(self, parts, member):
        target = member.linkname.encode("utf-8", "surrogateescape")
        if not target or b"\0" in target:
            return self._skip(member.name, "symlink with an empty target or a NUL byte in it")
        parent = self._parent_fd(parts, member.name)
        base = parts[-1]
        self._remove(parent, base, parts)
        # The target is kept as written (absolute, or with '..'): it is resolved inside the
        # container's root at run time, and nothing here ever follows it.
        os.symlink(target, base, dir_fd=parent)
        os.utime(base, ns=(_ns(member.mtime),) * 2, dir_fd=parent, follow_symlinks=False)
        self._counts["symlinks"] += 1

    def _hard_link(self, parts, member):
        target = _path_parts(member.linkname, member.name)
        outside = f"hard link {member.name!r} points outside the layer: {member.linkname!r}"
        if not target:
            raise LayerError(outside)
        if target[: len(parts)] == parts and target != parts:
            raise LayerError(f"hard link {member.name!r} would replace the directory holding its target {member.linkname!r}")
        target_parent = self._open_existing_dir(target[:-1])
        if target_parent is None:
            raise LayerError(outside)
        try:
            found = _lstat(target[-1], target_parent)
            # A hard link to a symlink is what tar records for a symlink with two names.
            if found is None or not (stat.S_ISREG(found.st_mode) or stat.S_ISLNK(found.st_mode)):
                raise LayerError(f"{outside} is not a file unpacked before it")
            if target != parts:
                parent = self._parent_fd(parts, member.name)
                self._remove(parent, parts[-1], parts)
                os.link(target[-1], parts[-1], src_dir_fd=target_parent, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(target_parent)
        self._counts["hardlinks"] += 1

    def _whiteout(self, dir_parts, name, member_name):
        if name in (b"", b".", b".."):
            raise LayerError(f"whiteout {member_name!r} names {os.fsdecode(name)!r}: refusing a layer that deletes outside its tree")
        parts = dir_parts + [name]
        parent = self._parent_fd(parts, member_name)
        existing = _lstat(name, parent)
        if existing is None:
            _make_whiteout(parent, name, member_name)
        elif stat.S_ISDIR(existing.st_mode):
            # This layer's own directory stays; only what lower layers hold there is hidden.
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            try:
                _set_opaque(fd, member_name)
            finally:
                os.close(fd)
        # Anything else this layer made under that name already hides the lower entry.
        self._counts["whiteouts"] += 1

    def _opaque(self, dir_parts, member_name):
        if not dir_parts:
            # An opaque root would hide every lower layer; overlayfs cannot express that.
            raise LayerError(f"opaque whiteout {member_name!r} at the layer root is not supported")
        # The directory itself is reached (or made) like any member's parent.
        _set_opaque(self._parent_fd(dir_parts + [_OPAQUE], member_name), member_name)
        self._counts["opaque_dirs"] += 1

    def _file_mode(self, member):
        if member.mode & 0o6000:
            self._skip(member.name, "setuid/setgid bit stripped")
        return (member.mode & 0o1777) | 0o600

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
            if len(self._dir_fds) >= _DIR_FD_CACHE:
                self._forget_dirs()  # the new fd is not in the cache yet, so it stays open
            self._dir_fds[key[: index + 1]] = fd
        return fd

    def _step_into(self, fd, part, walked, member_name):
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            os.mkdir(part, 0o700, dir_fd=fd)
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.fchmod(child, 0o755)  # whatever the umask
            return child
        except OSError as err:
            if err.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
        existing = _lstat(part, fd)
        if existing is not None and stat.S_ISLNK(existing.st_mode):
            raise LayerError(f"layer member {member_name!r} would be written through the symlink {_show(walked)!r}")
        if existing is None or not _is_whiteout(existing):
            raise LayerError(f"layer member {member_name!r} needs {_show(walked)!r} to be a directory, but it is a file")
        # Deleted and re-created in this layer: a fresh directory that hides the lower one.
        os.unlink(part, dir_fd=fd)
        os.mkdir(part, 0o700, dir_fd=fd)
        child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        os.fchmod(child, 0o755)
        _set_opaque(child, member_name)
        return child

    def _open_existing_dir(self, parts):
        """A new fd of the directory at `parts`, reached without following symlinks and without
        creating anything; None if there is no such directory."""
        fd = os.dup(self._root_fd)
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    return None
                raise
            os.close(fd)
            fd = child
        return fd

    def _remove(self, parent, base, parts):
        """Remove what a later member of the same name replaces (tar semantics: last one wins)."""
        existing = _lstat(base, parent)
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
                self._skip(member.name, f"xattr {attribute} not kept: {getattr(err, 'strerror', None) or err}")

    def finish(self):
        """Directory mtimes last, since adding children changed them. Sorted, so each directory
        is opened once, right after its parent."""
        opened = [((), os.dup(self._root_fd))]  # the open directories on the current path
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
                fd = os.open(walked[-1], _DIR_FLAGS, dir_fd=opened[-1][1])
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    return False  # replaced by a non-directory, or removed, after its mtime was noted
                raise
            opened.append((walked, fd))
        return True


def _too_big(what, limits):
    return LayerError(
        f"{what}: more than the limit of {limits.max_total_bytes} bytes per layer (a guard against decompression bombs)",
        hint="if the image is genuine, raise the limit with TOOLBOX_MAX_LAYER_BYTES (a number of bytes)",
    )


def _make_whiteout(parent, name, member_name):
    try:
        os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=parent)
    except PermissionError:
        raise StoreError(
            f"cannot record whiteout {member_name!r}: this kernel does not let unprivileged users create overlay whiteouts",
            hint="Linux 5.8 or later is needed",
        ) from None


def _set_opaque(fd, member_name):
    try:
        os.setxattr(fd, OPAQUE_XATTR, b"y")
    except OSError as err:
        if err.errno not in (errno.ENOTSUP, errno.EPERM):
            raise
        raise StoreError(
            f"cannot mark the directory of {member_name!r} opaque: the store's filesystem refuses user extended attributes",
            hint="put the store (TOOLBOX_CACHE_DIR) on ext4, xfs, btrfs or tmpfs (Linux 6.6 or later)",
        ) from None


def _pwrite_all(fd, data, offset):
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _lstat(name, dir_fd):
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _ns(mtime):
    """Nanoseconds for utime. Mtimes are layer input too: NaN, infinity and absurd years (PAX
    allows them) are clamped rather than crashed on."""
    if not math.isfinite(mtime):
        return 0
    return max(-_NS_LIMIT, min(_NS_LIMIT, int(mtime * 1_000_000_000)))


def _dir_mode(mode):
    return (mode & 0o1777) | 0o700


# -- flattening ------------------------------------------------------------------------------------


def merge_layers(layer_trees, dest_dir):
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


_TOP_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class _Merge:
    """One layer tree merged into the flat tree. fsutil.walk_down walks the layer's tree, one
    directory open at a time; these callbacks keep the flat tree's directory in step with it,
    entering and leaving the same names (and checking `..` on the way up, as walk_down does)."""

    def __init__(self, dest_fd):
        self._dest = os.dup(dest_fd)  # the flat tree's directory matching the layer's current one
        self._above = []  # identities of the flat tree's directories above it

    def close(self):
        os.close(self._dest)

    def visit(self, source):
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
            if _is_whiteout(st) or stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode):
                fsutil.remove_tree_at(self._dest, name)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=self._dest)
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=self._dest, follow_symlinks=False)
            elif stat.S_ISREG(st.st_mode):
                _link_or_copy(source, name, self._dest)
            # Nothing else is ever unpacked into a layer tree.
        return directories

    def enter(self, source, name):
        """Open the layer's directory `name`, and make (or keep) the flat tree's."""
        child = os.open(name, _DIR_FLAGS, dir_fd=source)
        try:
            existing = _lstat(name, self._dest)
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

    def leave(self, source, name):
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
                    _pwrite_all(target, os.pread(source, min(COPY_CHUNK, offset + size - position), position), position)
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
