"""A layer's tar read strictly, and each member's header checked against the limits
(UnpackLimits) before any of it reaches the disk: unpack.py writes what passes.

tarfile is written for archives one trusts. Read from an untrusted layer, it would end the
archive quietly at damage (a broken layer becoming a shorter one), read extended headers and
sparse maps of any size whole into memory, skip a member's claimed data by reading block after
block past the end of the stream, and read a sparse member's holes as zeros. Each check below
says which of these it defends against. A hostile or broken layer raises LayerError.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from toolbox.errors import ConfigError, LayerError

COPY_CHUNK = 1024 * 1024
# tarfile reads a PAX or GNU long-name header whole into memory; real ones are a few kB.
MAX_EXTENDED_HEADER = 1024 * 1024
# Real sparse files (databases, lastlog, VM images) have hundreds of data segments, not millions.
MAX_SPARSE_ENTRIES = 1 << 16
_EXTENDED_HEADER_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                          tarfile.GNUTYPE_LONGLINK)
# What tarfile raises on hostile headers: its own errors, and ValueError from e.g. a GNU sparse map
# that is not numbers.
TAR_ERRORS = (tarfile.TarError, EOFError, ValueError, OverflowError)


class ByteStream(Protocol):
    """All a layer's tar is read through: read(n) (a decompressor, a file, a BytesIO)."""

    def read(self, size: int = ..., /) -> bytes: ...


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
    def from_env(cls, environ: Mapping[str, str]) -> UnpackLimits:
        value = environ.get("TOOLBOX_MAX_LAYER_BYTES", "").strip()
        if not value:
            return cls()
        try:
            return cls(max_total_bytes=int(value))
        except ValueError:
            raise ConfigError(f"TOOLBOX_MAX_LAYER_BYTES={value!r} is not a number of bytes") from None


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile ends an archive quietly at a damaged or cut-off header anywhere after the first
    one (TarFile.next), which would turn a broken layer into a shorter one. Raising something
    that is not a tarfile.HeaderError gets past that."""

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except (tarfile.TruncatedHeaderError, tarfile.InvalidHeaderError) as err:
            raise LayerError(f"the layer is not a valid tar archive or is truncated: {err}") from None

    def _proc_member(self, tarfile_):
        if self.type in _EXTENDED_HEADER_TYPES and self.size > MAX_EXTENDED_HEADER:
            raise LayerError(f"the layer has an extended tar header of {self.size} bytes; refusing to read "
                             "it into memory")
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
                    offset, numbytes = (tarfile.nti(block[position:position + 12]),
                                        tarfile.nti(block[position + 12:position + 24]))
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
            raise LayerError(f"layer member {next_.name!r}: "
                             "its sparse map does not start with a count") from None
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
                raise LayerError(f"layer member {next_.name!r}: its sparse map holds {number[:20]!r}, not a "
                                 "number") from None
        next_.offset_data = tarfile_.fileobj.tell()
        next_.sparse = list(zip(numbers[::2], numbers[1::2]))


def _check_sparse_entries(name, count):
    if count > MAX_SPARSE_ENTRIES or count < 0:
        raise LayerError(f"layer member {name!r} claims a sparse map of {count} or more entries; toolbox "
                         f"reads at most {MAX_SPARSE_ENTRIES}")


def open_tar(stream: ByteStream) -> tarfile.TarFile:
    try:
        # "r|": a forward-only stream, never decompressed here (compression.py did that).
        return tarfile.open(fileobj=stream, mode="r|", tarinfo=_StrictTarInfo, encoding="utf-8",
                            errors="surrogateescape")
    except TAR_ERRORS as err:
        raise LayerError(f"the layer is not a valid tar archive: {err}") from None


def members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    members = iter(tar)
    while True:
        try:
            member = next(members)
        except StopIteration:
            return
        except TAR_ERRORS as err:
            raise LayerError(f"the layer is not a valid tar archive or is truncated: {err}") from None
        yield member


def read_chunks(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    source = tar.extractfile(member)
    while True:
        try:
            chunk = source.read(COPY_CHUNK)
        except TAR_ERRORS as err:
            raise LayerError(f"layer member {member.name!r} is truncated: {err}") from None
        if not chunk:
            return
        yield chunk


def discard_data(tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    """Read the data of a member that is not kept, so a layer cut off inside it is still noticed
    (tarfile would skip it without checking). Not sparse members: their holes would be read as
    zeros, as many as the header claims."""
    if (member.size > 0 and member.sparse is None
        and (member.isreg() or member.type not in tarfile.SUPPORTED_TYPES)):
        for _ in read_chunks(tar, member):
            pass


def check_data_span(tar: tarfile.TarFile, member: tarfile.TarInfo, limits: UnpackLimits) -> None:
    """tarfile skips data it is not asked for by reading it, block by block, even past the
    end of the stream: a header claiming 2**90 bytes would loop for ever. The span it will
    skip is where the next header starts, minus where this member's data starts."""
    span = tar.offset - member.offset_data
    if span > limits.max_total_bytes:
        raise too_big(f"layer member {member.name!r} claims {span} bytes of data", limits)


def data_segments(tar: tarfile.TarFile, member: tarfile.TarInfo) -> list[tuple[int, int]]:
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
            raise LayerError(f"layer member {member.name!r} has a sparse map that is out of order or reaches "
                             "past the file's size")
        segments.append((offset, size))
        end = offset + size
    if sum(size for _offset, size in segments) > tar.offset - member.offset_data:
        raise LayerError(f"the sparse map of layer member {member.name!r} lists more data than the archive "
                         "holds for it")
    return segments


def path_parts(name: str, member_name: str) -> list[bytes]:
    """A member name as components (bytes, so names that are not UTF-8 keep their bytes) inside
    the tree. '' and '.' vanish, which also makes absolute names relative; '..' is refused."""
    raw = name.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise LayerError(f"layer member {member_name!r} has a NUL byte in a name")
    parts = [part for part in raw.split(b"/") if part not in (b"", b".")]
    if b".." in parts:
        raise LayerError(f"layer member {member_name!r} contains '..': refusing a layer that writes outside "
                         "its tree")
    return parts


def check_name(parts: list[bytes], name: str, limits: UnpackLimits) -> None:
    """A name the kernel can take (shorter than PATH_MAX) and a tree a walker can take."""
    size = len(b"/".join(parts))
    if size >= limits.max_path_bytes:
        raise LayerError(
            f"layer member name of {size} bytes is too long: paths must be shorter than "
            f"{limits.max_path_bytes} bytes ({_abbreviated(name)!r})")
    if len(parts) > limits.max_depth:
        raise LayerError(
            f"layer member {_abbreviated(name)!r} is {len(parts)} levels deep, more than the limit of "
            f"{limits.max_depth}",
            hint="no real image nests so deep: the layer is broken or hostile; nothing of it was kept",
        )


def _abbreviated(name):
    return name if len(name) <= 80 else name[:60] + "..."


def too_big(what: str, limits: UnpackLimits) -> LayerError:
    return LayerError(
        f"{what}: more than the limit of {limits.max_total_bytes} bytes per layer (a guard against "
        "decompression bombs)",
        hint="if the image is genuine, raise the limit with TOOLBOX_MAX_LAYER_BYTES (a number of bytes)",
    )
