"""Streaming decompression of layer blobs: gzip, zstd or none, told apart by their first bytes.

Media types cannot be trusted to say which (Docker's "tar.gzip" layers are sometimes plain tar),
so the magic bytes decide, as containerd does. Both decoders are strict: a stream that ends
mid-frame is truncated, bytes after the last frame are garbage, and both are errors. Several
concatenated gzip members or zstd frames are one stream, as their specs say (RFC 1952 §2.2,
RFC 8878 §3.1). Output is produced in bounded pieces, so a decompression bomb costs time, not
memory; the unpacker enforces the size limit.
"""

from __future__ import annotations

import zlib
from typing import Protocol

from toolbox.errors import LayerError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_READ = 64 * 1024
# zstd's decompressobj has no output limit, and 4 bytes (an RLE block) can expand to 128 KiB:
# feeding 512 bytes at a time bounds one step to ~16 MiB, at ~1.5x the time of bigger steps.
_ZSTD_INPUT = 512


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def compression_of(first_bytes: bytes) -> str:
    """"gzip", "zstd" or "none", by the magic bytes at the start of a stream."""
    if first_bytes.startswith(GZIP_MAGIC):
        return "gzip"
    if first_bytes.startswith(ZSTD_MAGIC) or _is_zstd_skippable_frame(first_bytes):
        return "zstd"
    return "none"


def _is_zstd_skippable_frame(first_bytes):
    # Magic 0x184D2A50..0x184D2A5F, little-endian (RFC 8878 §3.1.2): a zstd stream may start
    # with one (metadata); the decoder skips it.
    return len(first_bytes) >= 4 and first_bytes[0] & 0xF0 == 0x50 and first_bytes[1:4] == b"\x2a\x4d\x18"


class _Prefixed:
    """A stream with some bytes already read from it put back in front."""

    def __init__(self, prefix, raw):
        self._prefix = prefix
        self._raw = raw

    def read(self, n: int | None = -1) -> bytes:
        if self._prefix:
            if n is None or n < 0:
                data, self._prefix = self._prefix + self._raw.read(), b""
                return data
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return self._raw.read(n)


def _read_at_least(raw, count):
    data = b""
    while len(data) < count:
        chunk = raw.read(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def open_decompressed(raw: Reader) -> Reader:
    """A reader of the decompressed bytes of `raw` (any object with read(n))."""
    head = _read_at_least(raw, 4)
    kind = compression_of(head)
    stream = _Prefixed(head, raw)
    if kind == "gzip":
        return _FrameReader(stream, _GzipFrames(), "gzip", _READ)
    if kind == "zstd":
        return _FrameReader(stream, _ZstdFrames(), "zstd", _ZSTD_INPUT)
    return stream


class _GzipFrames:
    def new(self):
        return zlib.decompressobj(wbits=31)

    def step(self, decoder, data, max_out):
        out = decoder.decompress(data, max_out)
        rest = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
        return out, rest, decoder.eof

    error = zlib.error


class _ZstdFrames:
    def __init__(self):
        import zstandard  # only when a zstd layer shows up

        self._zstd = zstandard
        self.error = zstandard.ZstdError

    def new(self):
        return self._zstd.ZstdDecompressor().decompressobj()

    def step(self, decoder, data, max_out):
        out = decoder.decompress(data)
        return out, (decoder.unused_data if decoder.eof else b""), decoder.eof


class _FrameReader:
    def __init__(self, raw, frames, name, input_size):
        self._raw = raw
        self._frames = frames
        self._name = name
        self._input_size = input_size
        self._decoder = None  # None: between frames
        self._frames_seen = 0
        self._input = b""
        self._output = bytearray()
        self._done = False

    def read(self, n: int | None = -1) -> bytes:
        want = _READ if n is None or n < 0 else n
        self._fill(want)
        if n is None or n < 0:
            while not self._done:
                self._fill(len(self._output) + _READ)
            data = bytes(self._output)
            self._output.clear()
            return data
        data = bytes(self._output[:n])
        del self._output[:n]
        return data

    def _fill(self, want):
        while len(self._output) < want and not self._done:
            if not self._input and not self._next_input():
                break
            if self._decoder is None:
                self._decoder = self._frames.new()
                self._frames_seen += 1
            data, self._input = self._input[: self._input_size], self._input[self._input_size :]
            try:
                out, rest, ended = self._frames.step(self._decoder, data,
                                                     max(want - len(self._output), _READ))
            except self._frames.error as err:
                kind = "corrupt" if self._frames_seen == 1 else "followed by garbage"
                raise LayerError(f"{self._name} layer data is {kind}: {err}") from None
            self._output += out
            self._input = rest + self._input
            if ended:
                self._decoder = None

    def _next_input(self):
        self._input = self._raw.read(_READ)
        if self._input:
            return True
        if self._decoder is not None or self._frames_seen == 0:
            raise LayerError(f"{self._name} layer data is truncated: the stream ended inside a frame")
        self._done = True
        return False
