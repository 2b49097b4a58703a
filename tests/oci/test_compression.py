import gzip
import io
import os
import struct

import pytest
import zstandard

from toolbox.errors import LayerError
from toolbox.oci.compression import compression_of, open_decompressed

PAYLOAD = os.urandom(200_000) + b"z" * 3_000_000


class Trickle:
    """A network-like stream: read(n) returns fewer bytes than asked."""

    def __init__(self, data, step=7777):
        self._data = io.BytesIO(data)
        self._step = step

    def read(self, n=-1):
        return self._data.read(self._step if n is None or n < 0 else min(n, self._step))


def read_all(data, size=10_000):
    reader = open_decompressed(Trickle(data))
    out = bytearray()
    while chunk := reader.read(size):
        out += chunk
    return bytes(out)


def zstd(data):
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("encode", [gzip.compress, zstd, lambda d: d], ids=["gzip", "zstd", "none"])
def test_round_trip_in_odd_sized_reads(encode):
    assert read_all(encode(PAYLOAD)) == PAYLOAD
    assert read_all(encode(PAYLOAD[:5000]), size=1) == PAYLOAD[:5000]
    assert open_decompressed(io.BytesIO(encode(PAYLOAD))).read() == PAYLOAD


def test_concatenated_members_and_frames_are_one_stream():
    assert read_all(gzip.compress(PAYLOAD) + gzip.compress(b"tail")) == PAYLOAD + b"tail"
    assert read_all(zstd(PAYLOAD) + zstd(b"tail")) == PAYLOAD + b"tail"


@pytest.mark.parametrize(
    "data, words",
    [
        (gzip.compress(PAYLOAD)[:-8], "truncated"),
        (zstd(PAYLOAD)[:-8], "truncated"),
        (gzip.compress(PAYLOAD)[:5], "truncated"),
        (gzip.compress(PAYLOAD) + b"garbage!", "garbage"),
        (zstd(PAYLOAD) + b"garbage!", "garbage"),
    ],
    ids=["gzip-truncated", "zstd-truncated", "gzip-header-only", "gzip-garbage", "zstd-garbage"],
)
def test_damaged_streams_are_errors_not_short_reads(data, words):
    with pytest.raises(LayerError, match=words):
        read_all(data)


def test_byte_at_a_time_network_reads():
    """The magic bytes may arrive one read at a time; they are put back, not lost."""
    small = PAYLOAD[:20_000]
    for encode in (gzip.compress, zstd, lambda d: d):
        reader = open_decompressed(Trickle(encode(small), step=1))
        out = bytearray()
        while chunk := reader.read(333):
            out += chunk
        assert out == small


def test_empty_and_header_only_streams():
    assert open_decompressed(io.BytesIO(b"")).read() == b""
    with pytest.raises(LayerError, match="truncated"):
        read_all(b"\x1f\x8b")
    with pytest.raises(LayerError, match="truncated"):
        read_all(zstd(PAYLOAD)[:4])


@pytest.mark.parametrize("tail", [b"\0", b"\x1f\x8b\x08", b"\0" * 1024])
def test_anything_after_the_last_gzip_member_is_an_error(tail):
    with pytest.raises(LayerError, match="truncated|garbage"):
        read_all(gzip.compress(b"layer") + tail)


def test_zstd_skippable_frames_are_skipped():
    skippable = struct.pack("<II", 0x184D2A5F, 5) + b"notes"
    assert compression_of(skippable) == "zstd"
    assert read_all(skippable + zstd(b"tar") + skippable) == b"tar"


def test_zstd_output_is_bounded_per_read():
    bomb = zstd(b"\0" * 300_000_000)  # a few kB
    reader = open_decompressed(io.BytesIO(bomb))
    assert len(reader.read(4096)) == 4096
    assert len(reader._output) <= 20 * 1024 * 1024


def test_output_is_bounded_per_read():
    bomb = gzip.compress(b"\0" * 50_000_000)
    reader = open_decompressed(io.BytesIO(bomb))
    assert len(reader.read(4096)) == 4096
    assert len(reader._output) < 1_000_000  # it did not inflate the whole stream to answer


def test_magic_bytes():
    assert compression_of(b"\x1f\x8b\x08") == "gzip"
    assert compression_of(b"\x28\xb5\x2f\xfd") == "zstd"
    assert compression_of(b"ustar") == "none"
