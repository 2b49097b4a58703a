"""How a layer's tar is read (toolbox/store/layertar.py): long names, sparse members and their
maps, names and depth against the limits, damaged and cut-off archives, decompression bombs."""

import io
import os
import shutil
import subprocess
import tarfile
import time

import pytest

from toolbox.errors import ConfigError, LayerError
from toolbox.store.unpack import UnpackLimits, unpack_layer

from tests.support.images import MTIME
from tests.support.tars import member, tar_bytes, unpack


def test_gnu_long_names(sandbox):
    dest, _ = sandbox
    long_name = "/".join(["d" * 200, "e" * 200, "f" * 200])
    unpack_layer(io.BytesIO(tar_bytes(member(long_name, data=b"gnu", mode=0o600), format=tarfile.GNU_FORMAT)),
                 str(dest))
    assert (dest / long_name).read_bytes() == b"gnu"


def gnu_tar_sparse(tmp_path, tar_format, size, data):
    """A GNU tar archive (--sparse, `tar_format`) of one sparse file `size` bytes long, holding
    `data` ({offset: bytes}) and holes elsewhere; returns (archive path, source file path)."""
    if shutil.which("tar") is None or b"GNU tar" not in subprocess.run(["tar", "--version"],
                                                                       capture_output=True).stdout:
        pytest.skip("GNU tar is needed to write sparse members")
    source = tmp_path / "src"
    source.mkdir()
    with open(source / "sparse", "wb") as file:
        file.truncate(size)
        for offset, chunk in data.items():
            file.seek(offset)
            file.write(chunk)
    archive = tmp_path / f"sparse-{tar_format}.tar"
    subprocess.run(["tar", "--sparse", f"--format={tar_format}", "-cf", str(archive), "-C", str(source),
                    "sparse"], check=True)
    return archive, source / "sparse"


def data_segments(path):
    """(offset, bytes) of the parts of a file that hold data, as the filesystem reports them."""
    found = []
    with open(path, "rb") as file:
        fd, size, offset = file.fileno(), os.fstat(file.fileno()).st_size, 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            found.append((start, os.pread(fd, end - start, start)))
            offset = end
    return found


@pytest.mark.parametrize("tar_format", ["posix", "gnu"])
def test_sparse_files_written_by_gnu_tar(tmp_path, tar_format):
    size = 8 * 1024 * 1024
    archive, source = gnu_tar_sparse(tmp_path, tar_format, size,
                                     {3 * 1024 * 1024: b"middle", size - 3: b"end"})
    dest = tmp_path / "dest"
    dest.mkdir()
    with open(archive, "rb") as stream:
        stats = unpack_layer(stream, str(dest))
    assert (dest / "sparse").read_bytes() == source.read_bytes()
    assert stats.bytes == 8 * 1024 * 1024


@pytest.mark.parametrize("tar_format", ["posix", "gnu"])
def test_a_tiny_blob_describing_a_huge_sparse_file_stays_tiny_on_disk(tmp_path, tar_format):
    """A sparse member's holes are holes in the unpacked file too, not gigabytes of zeros."""
    size = 1024**3
    data = {0: b"head", size // 2: b"middle", size - 3: b"end"}
    archive, source = gnu_tar_sparse(tmp_path, tar_format, size, data)
    assert archive.stat().st_size < 64 * 1024
    dest = tmp_path / "dest"
    dest.mkdir()
    written = []
    with open(archive, "rb") as stream:
        stats = unpack_layer(stream, str(dest), on_write=written.append)
    unpacked = dest / "sparse"
    st_ = unpacked.stat()
    assert st_.st_size == size and stats.bytes == size
    assert st_.st_blocks * 512 <= 64 * 1024, (f"{st_.st_blocks} blocks allocated for a file of {size} bytes "
                                              "with 13 bytes of data")
    assert sum(written) <= 3 * 4096  # only the data segments were written (GNU tar stores whole blocks)
    assert data_segments(unpacked) == data_segments(source)
    with open(unpacked, "rb") as file:
        for offset, chunk in data.items():
            assert os.pread(file.fileno(), len(chunk), offset) == chunk
        assert os.pread(file.fileno(), 4096, size // 4) == bytes(4096)


def test_the_layer_limit_counts_the_data_written_and_bounds_what_a_file_claims(sandbox):
    """TOOLBOX_MAX_LAYER_BYTES bounds what a layer writes (holes cost nothing), and also what
    one file may claim to be, holes included."""
    dest, _ = sandbox

    def sparse(name, size, data=b"ab"):  # GNU's PAX sparse format 0.1: the map in the header
        return member(name, data=data,
                      pax={"GNU.sparse.map": f"0,1,{size - 1},1", "GNU.sparse.size": str(size)})

    limits = UnpackLimits(max_total_bytes=1000)
    stats = unpack(dest, sparse("a", 900), sparse("b", 900), member("c", data=b"x" * 500), limits=limits)
    assert stats.bytes == 2300 and (dest / "a").stat().st_size == 900
    assert (dest / "b").read_bytes() == b"a" + bytes(898) + b"b"
    with pytest.raises(LayerError,
                       match="is 1001 bytes long \\(holes included\\): more than the limit of 1000 bytes"):
        unpack(dest, sparse("huge", 1001), limits=limits)
    with pytest.raises(LayerError, match="TOOLBOX_MAX_LAYER_BYTES|limit"):
        unpack(dest, sparse("absurd", 2**62))


@pytest.mark.parametrize("sparse_map, size, complaint", [
    ("10,1,0,1", 100, "out of order"),  # tarfile would seek backwards in the stream
    ("0,1,0,1", 100, "out of order"),  # overlapping
    ("0,1,99,2", 100, "past the file's size"),
    ("0,1,-5,1", 100, "out of order"),
    # would read the next member's header as data
    ("0,600,1000,1", 2000, "lists more data than the archive holds"),
])
def test_hostile_sparse_maps_are_refused(sandbox, sparse_map, size, complaint):
    dest, _ = sandbox
    with pytest.raises(LayerError, match=complaint):
        unpack(dest,
               member("s", data=b"ab", pax={"GNU.sparse.map": sparse_map, "GNU.sparse.size": str(size)}),
               member("next", data=b"n"))


def _old_gnu_sparse_header(name, realsize, extension_blocks, stored=0):
    """A GNU 'S' (old sparse) member whose map goes on for `extension_blocks` blocks of 21
    one-byte entries each, as GNU tar writes a map too long for the header (`stored` bytes of
    data follow): zeros compress to nothing, so such a layer is tiny on the wire."""
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    info.size = stored
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[386:482] = bytes(96)
    header[482] = 1  # isextended
    header[483:495] = tarfile.itn(realsize, 12, tarfile.GNU_FORMAT)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    blocks = []
    for index in range(extension_blocks):
        block = bytearray(512)
        for entry in range(21):
            offset = (index * 21 + entry) * 2 + 1
            block[entry * 24:entry * 24 + 24] = (tarfile.itn(offset, 12, tarfile.GNU_FORMAT)
                                                 + tarfile.itn(1, 12, tarfile.GNU_FORMAT))
        block[504] = 1 if index < extension_blocks - 1 else 0
        blocks.append(bytes(block))
    return bytes(header) + b"".join(blocks)


@pytest.mark.parametrize("layout", ["old GNU", "PAX 1.0"])
def test_a_sparse_map_of_millions_of_entries_is_refused_before_it_is_built(sandbox, layout):
    """tarfile builds a sparse member's whole map in memory before toolbox sees the member: a
    12 KB layer of zeros made it allocate hundreds of MB. The map is read with a bound now."""
    dest, _canary = sandbox
    if layout == "old GNU":
        archive = _old_gnu_sparse_header("s", 10**9, 4000) + bytes(1024)
    else:
        count = b"50000000\n"
        data = count + b"1\n1\n" * 40000
        archive = tar_bytes(member("s", data=data, pax={"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                                                        "GNU.sparse.name": "s",
                                                        "GNU.sparse.realsize": str(10**9)}))
    with pytest.raises(LayerError, match="sparse map of .* entries; toolbox reads at most 65536"):
        unpack_layer(io.BytesIO(archive), str(dest))
    # A long but reasonable map still unpacks (the limit is far above real sparse files).
    fine = dest.parent / "fine"
    fine.mkdir()
    archive = _old_gnu_sparse_header("s", 10**6, 10, stored=210) + b"x" * 210 + bytes(512 - 210) + bytes(1024)
    unpack_layer(io.BytesIO(archive), str(fine))
    unpacked = (fine / "s").read_bytes()
    assert len(unpacked) == 10**6 and unpacked.count(b"x") == 210 and unpacked[1:4] == b"x\0x"


def test_non_utf8_and_long_names(sandbox):
    dest, _ = sandbox
    latin1 = b"caf\xe9".decode("utf-8", "surrogateescape")
    long_component = "n" * 250
    unpack(dest, member(latin1, data=b"bytes"), member(f"{latin1}-dir/{long_component}", data=b"long"))
    assert os.path.exists(os.fsencode(dest) + b"/caf\xe9")
    assert open(os.fsencode(dest) + b"/caf\xe9-dir/" + long_component.encode(), "rb").read() == b"long"


def test_names_as_long_as_path_max_are_refused(sandbox):
    dest, _ = sandbox
    component = "c" * 250
    fits = "/".join([component] * 16) + "/" + "x" * 79
    assert len(fits) == 4095
    unpack(dest, member(fits, data=b"deep"))
    fd = os.open(dest, os.O_RDONLY)
    for part in fits.split("/"):  # the whole path is too long for open(2)
        fd, parent = os.open(part, os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    assert os.read(fd, 10) == b"deep"
    os.close(fd)
    with pytest.raises(LayerError, match="4096 bytes is too long"):
        unpack(dest, member(fits + "y", data=b""))
    with pytest.raises(LayerError, match="File name too long"):
        unpack(dest, member("n" * 300, data=b""))


def test_depth_is_capped_and_the_deepest_allowed_tree_is_measured_and_removed(tmp_path):
    from toolbox import fsutil

    dest = tmp_path / "dest"
    dest.mkdir()
    limit = UnpackLimits().max_depth
    deepest = "/".join(["d"] * (limit - 1) + ["f"])
    # A later member replacing a deep directory removes it first.
    unpack(dest, member("gone/" + deepest[2:], data=b"x"), member("gone", data=b"now a file"),
           member(deepest, data=b"deep"))
    assert (dest / "gone").read_bytes() == b"now a file"
    assert fsutil.disk_usage(dest) > 0
    fsutil.remove_tree(dest)
    assert not dest.exists()
    dest.mkdir()
    with pytest.raises(LayerError, match="is 513 levels deep, more than the limit of 512"):
        unpack(dest, member("d/" + deepest, data=b"x"))
    with pytest.raises(LayerError, match="'a/b/c' is 3 levels deep"):
        unpack(dest, member("a/b/c", "dir"), limits=UnpackLimits(max_depth=2))


# -- limits and damaged archives -------------------------------------------------------------------


def test_decompression_bomb_limit(sandbox):
    dest, _ = sandbox
    with pytest.raises(LayerError) as info:
        unpack(dest, member("a", data=b"x" * 600), member("b", data=b"x" * 600),
               limits=UnpackLimits(max_total_bytes=1000))
    assert "1000 bytes" in info.value.message and "TOOLBOX_MAX_LAYER_BYTES" in info.value.hint
    with pytest.raises(LayerError, match="more than 3 members"):
        unpack(dest, *[member(f"f{i}") for i in range(4)], limits=UnpackLimits(max_entries=3))


@pytest.mark.parametrize("name", ["f", ".wh.f", ".wh..wh.plnk/f"])
def test_huge_claimed_sizes_fail_fast(sandbox, name):
    """tarfile would skip 2**70 bytes of missing data one block at a time, for ever."""
    dest, _ = sandbox
    started = time.monotonic()
    with pytest.raises(LayerError, match="TOOLBOX_MAX_LAYER_BYTES|claims"):
        unpack(dest, member(name, pax={"size": str(2**70)}))
    assert time.monotonic() - started < 5


def test_truncated_and_garbage_tars(sandbox):
    dest, _ = sandbox
    data = tar_bytes(member("big", data=b"x" * 5000))
    with pytest.raises(LayerError, match="truncated"):
        unpack_layer(io.BytesIO(data[:2000]), str(dest))
    with pytest.raises(LayerError, match="not a valid tar"):
        unpack_layer(io.BytesIO(b"this is not a tar archive" * 40), str(dest))
    with pytest.raises(LayerError, match="not a valid tar"):
        unpack_layer(io.BytesIO(b""), str(dest))


def test_damage_after_the_first_member_is_not_a_shorter_layer(sandbox):
    """tarfile alone stops quietly at a bad or cut-off header after the first member."""
    dest, _ = sandbox
    first = tar_bytes(member("first", data=b"1"))[:1024]  # header + data block, no end marker
    second = bytearray(tar_bytes(member("second", data=b"2")))
    bad_checksum = bytes(second[:148]) + b"0000000\0" + bytes(second[156:])
    with pytest.raises(LayerError, match="not a valid tar archive or is truncated"):
        unpack_layer(io.BytesIO(first + bad_checksum), str(dest))
    with pytest.raises(LayerError, match="truncated"):
        unpack_layer(io.BytesIO(first + bytes(second[:300])), str(dest))
    # Cut inside the data of a member that is skipped rather than written.
    skipped = tar_bytes(member(".wh..wh.plnk/f", data=b"z" * 5000), member("after", data=b"a"))
    with pytest.raises(LayerError, match="truncated"):
        unpack_layer(io.BytesIO(skipped[:3000]), str(dest))
    # Without the end-of-archive blocks, the layer is whole (Go's archive/tar accepts it too).
    shutil.rmtree(dest)
    dest.mkdir()
    unpack_layer(io.BytesIO(first), str(dest))
    assert (dest / "first").read_bytes() == b"1"


def test_malformed_extended_headers(sandbox):
    dest, _ = sandbox
    with pytest.raises(LayerError, match="not a valid tar"):
        unpack(dest, member("f", data=b"x",
                            pax={"GNU.sparse.map": "x,y", "GNU.sparse.major": "0", "GNU.sparse.minor": "1"}))
    huge = tar_bytes(member("f", pax={"comment": "c" * (2 * 1024 * 1024)}))
    with pytest.raises(LayerError, match="extended tar header"):
        unpack_layer(io.BytesIO(huge), str(dest))


def test_limits_from_the_environment():
    assert UnpackLimits.from_env({}) == UnpackLimits()
    assert UnpackLimits.from_env({"TOOLBOX_MAX_LAYER_BYTES": "1234"}).max_total_bytes == 1234
    with pytest.raises(ConfigError, match="TOOLBOX_MAX_LAYER_BYTES"):
        UnpackLimits.from_env({"TOOLBOX_MAX_LAYER_BYTES": "1G"})


