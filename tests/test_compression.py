import gzip
import io
import os

import pytest
import zstandard

from toolbox.compression import compression_of, open_decompressed
from toolbox.errors import LayerError

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


def test_output_is_bounded_per_read():
    bomb = gzip.compress(b"\0" * 50_000_000)
    reader = open_decompressed(io.BytesIO(bomb))
    assert len(reader.read(4096)) == 4096
    assert len(reader._output) < 1_000_000  # it did not inflate the whole stream to answer


def test_magic_bytes():
    assert compression_of(b"\x1f\x8b\x08") == "gzip"
    assert compression_of(b"\x28\xb5\x2f\xfd") == "zstd"
    assert compression_of(b"ustar") == "none"
