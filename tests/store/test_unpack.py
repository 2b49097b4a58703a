"""The layer unpacker against hostile and unusual tars, built in memory, and the flattening of
layer trees (checked against a real overlayfs mount where one can be made)."""

import io
import os
import shutil
import stat
import subprocess
import tarfile
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from toolbox.errors import ConfigError, LayerError
from toolbox.store.unpack import OPAQUE_XATTR, UnpackLimits, merge_layers, unpack_layer

from tests.support.images import MTIME

KINDS = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
         "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE}


def member(name, kind="file", data=b"", mode=0o644, target="", pax=None, mtime=MTIME):
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.mode = mode
    info.type = KINDS[kind]
    info.linkname = target
    info.size = len(data) if kind == "file" else 0
    if pax:
        info.pax_headers = pax
    return info, data


def tar_bytes(*members, format=tarfile.PAX_FORMAT):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format, encoding="utf-8", errors="surrogateescape") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


@pytest.fixture
def sandbox(tmp_path):
    """dest is the layer tree; canary sits beside it and must never change."""
    dest = tmp_path / "dest"
    dest.mkdir()
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("unchanged")
    return dest, canary


def unpack(dest, *members, **kw):
    return unpack_layer(io.BytesIO(tar_bytes(*members)), str(dest), **kw)


def assert_canary(tmp_path, canary):
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary", "dest"]
    assert [p.name for p in canary.iterdir()] == ["keep"] and (canary / "keep").read_text() == "unchanged"


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def is_whiteout(path):
    st_ = os.lstat(path)
    return stat.S_ISCHR(st_.st_mode) and st_.st_rdev == 0


def opaque(path):
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


# -- ordinary members ------------------------------------------------------------------------------


def test_round_trip_of_ordinary_members(sandbox):
    dest, _ = sandbox
    stats = unpack(
        dest,
        member("etc", "dir", mode=0o755, mtime=MTIME - 50),
        member("etc/conf", data=b"hello", mode=0o640),
        member("bin/tool", data=b"#!/bin/sh\n", mode=0o755),
        member("bin/alias", "symlink", target="tool", mtime=MTIME - 7),
        member("bin/abs", "symlink", target="/usr/bin/elsewhere"),
        member("bin/up", "symlink", target="../../../../etc"),
        member("bin/copy", "hardlink", target="bin/tool"),
    )
    assert (dest / "etc" / "conf").read_bytes() == b"hello"
    assert mode_of(dest / "etc" / "conf") == 0o640 and mode_of(dest / "bin" / "tool") == 0o755
    assert os.readlink(dest / "bin" / "alias") == "tool"
    assert os.readlink(dest / "bin" / "abs") == "/usr/bin/elsewhere"
    assert os.readlink(dest / "bin" / "up") == "../../../../etc"
    assert (dest / "bin" / "copy").stat().st_ino == (dest / "bin" / "tool").stat().st_ino
    # Directory mtimes survive the children added after them.
    assert (dest / "etc").stat().st_mtime == MTIME - 50 and (dest / "etc" / "conf").stat().st_mtime == MTIME
    assert os.lstat(dest / "bin" / "alias").st_mtime == MTIME - 7
    # "bin" was created as a parent, not by a member of its own: members are what is counted.
    assert (stats.files, stats.dirs, stats.symlinks, stats.hardlinks, stats.bytes) == (2, 1, 3, 1, 15)
    assert stats.skipped == ()


def test_names_are_normalised(sandbox):
    dest, _ = sandbox
    unpack(dest, member("./a//b/./c", data=b"c"), member("a/b/", "dir", mode=0o750))
    assert (dest / "a" / "b" / "c").read_bytes() == b"c" and mode_of(dest / "a" / "b") == 0o750


def test_the_root_entry_sets_the_tree_root_only_when_it_is_a_directory(sandbox):
    dest, _ = sandbox
    stats = unpack(dest, member("./", "dir", mode=0o751, mtime=MTIME - 1), member("f", data=b"f"), member(".", data=b"not a dir"))
    assert mode_of(dest) == 0o751 and dest.stat().st_mtime == MTIME - 1
    assert [name for name, _ in stats.skipped] == ["."]


def test_implicit_parents_are_0755_whatever_the_umask(sandbox):
    dest, _ = sandbox
    old = os.umask(0o077)
    try:
        unpack(dest, member("a/b/f", data=b"x"))
    finally:
        os.umask(old)
    assert mode_of(dest / "a") == mode_of(dest / "a" / "b") == 0o755


def test_gnu_long_names(sandbox):
    dest, _ = sandbox
    long_name = "/".join(["d" * 200, "e" * 200, "f" * 200])
    unpack_layer(io.BytesIO(tar_bytes(member(long_name, data=b"gnu", mode=0o600), format=tarfile.GNU_FORMAT)), str(dest))
    assert (dest / long_name).read_bytes() == b"gnu"


def gnu_tar_sparse(tmp_path, tar_format, size, data):
    """A GNU tar archive (--sparse, `tar_format`) of one sparse file `size` bytes long, holding
    `data` ({offset: bytes}) and holes elsewhere; returns (archive path, source file path)."""
    if shutil.which("tar") is None or b"GNU tar" not in subprocess.run(["tar", "--version"], capture_output=True).stdout:
        pytest.skip("GNU tar is needed to write sparse members")
    source = tmp_path / "src"
    source.mkdir()
    with open(source / "sparse", "wb") as file:
        file.truncate(size)
        for offset, chunk in data.items():
            file.seek(offset)
            file.write(chunk)
    archive = tmp_path / f"sparse-{tar_format}.tar"
    subprocess.run(["tar", "--sparse", f"--format={tar_format}", "-cf", str(archive), "-C", str(source), "sparse"], check=True)
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
    archive, source = gnu_tar_sparse(tmp_path, tar_format, size, {3 * 1024 * 1024: b"middle", size - 3: b"end"})
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
    assert st_.st_blocks * 512 <= 64 * 1024, f"{st_.st_blocks} blocks allocated for a file of {size} bytes with 13 bytes of data"
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
        return member(name, data=data, pax={"GNU.sparse.map": f"0,1,{size - 1},1", "GNU.sparse.size": str(size)})

    limits = UnpackLimits(max_total_bytes=1000)
    stats = unpack(dest, sparse("a", 900), sparse("b", 900), member("c", data=b"x" * 500), limits=limits)
    assert stats.bytes == 2300 and (dest / "a").stat().st_size == 900
    assert (dest / "b").read_bytes() == b"a" + bytes(898) + b"b"
    with pytest.raises(LayerError, match="is 1001 bytes long \\(holes included\\): more than the limit of 1000 bytes"):
        unpack(dest, sparse("huge", 1001), limits=limits)
    with pytest.raises(LayerError, match="TOOLBOX_MAX_LAYER_BYTES|limit"):
        unpack(dest, sparse("absurd", 2**62))


@pytest.mark.parametrize("sparse_map, size, complaint", [
    ("10,1,0,1", 100, "out of order"),  # tarfile would seek backwards in the stream
    ("0,1,0,1", 100, "out of order"),  # overlapping
    ("0,1,99,2", 100, "past the file's size"),
    ("0,1,-5,1", 100, "out of order"),
    ("0,600,1000,1", 2000, "lists more data than the archive holds"),  # would read the next member's header as data
])
def test_hostile_sparse_maps_are_refused(sandbox, sparse_map, size, complaint):
    dest, _ = sandbox
    with pytest.raises(LayerError, match=complaint):
        unpack(dest, member("s", data=b"ab", pax={"GNU.sparse.map": sparse_map, "GNU.sparse.size": str(size)}),
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
            block[entry * 24:entry * 24 + 24] = tarfile.itn(offset, 12, tarfile.GNU_FORMAT) + tarfile.itn(1, 12, tarfile.GNU_FORMAT)
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
                                                       "GNU.sparse.name": "s", "GNU.sparse.realsize": str(10**9)}))
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
    unpack(dest, member("gone/" + deepest[2:], data=b"x"), member("gone", data=b"now a file"), member(deepest, data=b"deep"))
    assert (dest / "gone").read_bytes() == b"now a file"
    assert fsutil.disk_usage(dest) > 0
    fsutil.remove_tree(dest)
    assert not dest.exists()
    dest.mkdir()
    with pytest.raises(LayerError, match="is 513 levels deep, more than the limit of 512"):
        unpack(dest, member("d/" + deepest, data=b"x"))
    with pytest.raises(LayerError, match="'a/b/c' is 3 levels deep"):
        unpack(dest, member("a/b/c", "dir"), limits=UnpackLimits(max_depth=2))


# -- escapes ---------------------------------------------------------------------------------------


def test_dotdot_is_refused_and_nothing_escapes(sandbox, tmp_path):
    dest, canary = sandbox
    with pytest.raises(LayerError, match="'..'"):
        unpack(dest, member("../canary/keep", data=b"overwritten"))
    with pytest.raises(LayerError, match="'..'"):
        unpack(dest, member("a/../../escape", data=b"x"))
    with pytest.raises(LayerError, match="'..'"):
        unpack(dest, member("a/b/..", "dir"))
    assert_canary(tmp_path, canary)


def test_absolute_names_become_relative(sandbox, tmp_path):
    dest, canary = sandbox
    unpack(dest, member(str(canary / "keep"), data=b"inside"), member("/etc/passwd", data=b"mine"))
    assert (dest / str(canary).lstrip("/") / "keep").read_bytes() == b"inside"
    assert (dest / "etc" / "passwd").read_bytes() == b"mine"
    assert_canary(tmp_path, canary)


@pytest.mark.parametrize("kind", ["file", "dir", "symlink", "hardlink"])
def test_writing_through_a_symlink_is_refused(sandbox, tmp_path, kind):
    dest, canary = sandbox
    with pytest.raises(LayerError, match="through the symlink 'evil'"):
        unpack(dest, member("target", data=b"t"), member("evil", "symlink", target=str(canary)),
               member("evil/keep", kind, data=b"pwned", target="target"))
    assert_canary(tmp_path, canary)


def test_symlink_to_root_then_etc_passwd(sandbox, tmp_path):
    dest, canary = sandbox
    with pytest.raises(LayerError, match="symlink 'link'"):
        unpack(dest, member("link", "symlink", target="/"), member("link/etc/passwd", data=b"root::0:0::/:/bin/sh\n"))
    with pytest.raises(LayerError, match="symlink 'deep/link'"):
        unpack(dest, member("deep/link", "symlink", target="../../canary"), member("deep/link/keep", data=b"x"))
    assert_canary(tmp_path, canary)


@pytest.mark.parametrize("target", ["/etc/passwd", "../canary/keep", "x/../../canary/keep", "missing", "dir", "link/keep", "."])
def test_hard_links_must_stay_inside_the_layer(sandbox, tmp_path, target):
    dest, canary = sandbox
    with pytest.raises(LayerError, match="'..'|points outside the layer"):
        unpack(dest, member("dir", "dir"), member("link", "symlink", target=str(canary)), member("passwd", "hardlink", target=target))
    assert_canary(tmp_path, canary)


def test_hard_links_to_symlinks_and_to_themselves(sandbox):
    dest, _ = sandbox
    stats = unpack(dest, member("f", data=b"f"), member("s", "symlink", target="/etc"), member("s2", "hardlink", target="s"),
                   member("f", "hardlink", target="./f"))
    assert os.readlink(dest / "s2") == "/etc" and os.lstat(dest / "s2").st_ino == os.lstat(dest / "s").st_ino
    assert (dest / "f").read_bytes() == b"f" and stats.hardlinks == 2


def test_a_hard_link_cannot_replace_the_directory_holding_its_target(sandbox):
    dest, _ = sandbox
    with pytest.raises(LayerError, match="replace the directory holding its target"):
        unpack(dest, member("d/f", data=b"f"), member("d", "hardlink", target="d/f"))


def test_nul_bytes_in_names_are_refused(sandbox):
    dest, _ = sandbox
    with pytest.raises(LayerError, match="NUL"):
        unpack(dest, member("f", pax={"path": "a\0b"}))
    with pytest.raises(LayerError, match="NUL"):
        unpack(dest, member("f", data=b"f"), member("h", "hardlink", pax={"linkpath": "f\0x"}))


def test_symlink_loops_are_just_symlinks(sandbox):
    dest, _ = sandbox
    unpack(dest, member("a", "symlink", target="b"), member("b", "symlink", target="a"), member("c", "symlink", target="c"))
    assert os.readlink(dest / "a") == "b" and os.readlink(dest / "b") == "a" and os.readlink(dest / "c") == "c"


@settings(max_examples=60 if settings.default.max_examples < 1000 else 2000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["file", "dir", "symlink", "hardlink"]),
                          st.lists(st.sampled_from(["a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", "/"]), min_size=1, max_size=4),
                          st.sampled_from(["a", "/", "../a", "b/a", "/etc/passwd", "."])), max_size=8))
def test_fuzzed_layers_never_escape(tmp_path_factory, members):
    root = tmp_path_factory.mktemp("fuzz")
    dest = root / "dest"
    dest.mkdir()
    built = [member("/".join(parts), kind, data=b"d", target=target) for kind, parts, target in members]
    try:
        unpack_layer(io.BytesIO(tar_bytes(*built)), str(dest))
    except LayerError:
        pass
    assert [p.name for p in root.iterdir()] == ["dest"]


# -- what is kept of modes, special files and xattrs -----------------------------------------------


def test_devices_and_fifos_are_skipped_setuid_stripped(sandbox):
    dest, _ = sandbox
    stats = unpack(
        dest,
        member("null", "chr", mode=0o666),
        member("sda", "blk", mode=0o660),
        member("pipe", "fifo"),
        member("su", data=b"x", mode=0o4755),
        member("sg", data=b"x", mode=0o2711),
        member("sticky", "dir", mode=0o1777),
        member("ro", "dir", mode=0o555),
        member("ro/f", data=b"x", mode=0o400),
        member("sgdir", "dir", mode=0o2755),
    )
    for name in ("null", "sda", "pipe"):
        assert not os.path.lexists(dest / name)
    assert mode_of(dest / "su") == 0o755 and mode_of(dest / "sg") == 0o711
    assert mode_of(dest / "sticky") == 0o1777 and mode_of(dest / "sgdir") == 0o755
    assert mode_of(dest / "ro") == 0o755  # owner-writable, so the store can be cleaned up
    assert mode_of(dest / "ro" / "f") == 0o600
    reasons = dict(stats.skipped)
    assert "device node" in reasons["null"] and "device node" in reasons["sda"] and "FIFO" in reasons["pipe"]
    assert "setuid" in reasons["su"]


def test_xattrs_user_kept_overlay_and_others_dropped(sandbox):
    dest, _ = sandbox
    pax = {"SCHILY.xattr.user.comment": "kept", "SCHILY.xattr.user.overlay.opaque": "y", "SCHILY.xattr.security.capability": "x",
           "SCHILY.xattr.trusted.overlay.whiteout": "y"}
    stats = unpack(dest, member("d", "dir", pax=pax), member("f", data=b"x", pax=pax))
    for name in ("d", "f"):
        assert os.getxattr(dest / name, "user.comment") == b"kept"
        assert os.listxattr(dest / name) == ["user.comment"]
    assert sum("dropped" in reason for _, reason in stats.skipped) == 6


def test_binary_xattr_values_keep_their_bytes(sandbox):
    dest, _ = sandbox
    value = b"\xff\x00\xfe".decode("utf-8", "surrogateescape")
    unpack(dest, member("f", data=b"x", pax={"SCHILY.xattr.user.bin": value}))
    assert os.getxattr(dest / "f", "user.bin") == b"\xff\x00\xfe"


def test_hostile_mtimes_are_clamped(sandbox):
    dest, _ = sandbox
    unpack(dest, member("nan", pax={"mtime": "nan"}), member("inf", pax={"mtime": "inf"}), member("far", pax={"mtime": "1e30"}),
           member("old", pax={"mtime": "-1000.5"}))
    assert (dest / "nan").stat().st_mtime == 0 and (dest / "old").stat().st_mtime == -1000.5
    assert (dest / "far").exists() and (dest / "inf").exists()


# -- whiteouts -------------------------------------------------------------------------------------


def test_whiteouts_and_opaque_directories_in_overlay_format(sandbox):
    dest, _ = sandbox
    stats = unpack(dest, member("a", "dir"), member("a/.wh.gone"), member("d", "dir"), member("d/.wh..wh..opq"), member("d/new", data=b"n"))
    assert is_whiteout(dest / "a" / "gone") and mode_of(dest / "a" / "gone") == 0o600
    assert opaque(dest / "d") and not opaque(dest / "a")
    assert not os.path.lexists(dest / "d" / ".wh..wh..opq") and not os.path.lexists(dest / "a" / ".wh.gone")
    assert (stats.whiteouts, stats.opaque_dirs) == (1, 1)


def test_opaque_marker_creates_its_directory_and_survives_its_entry(sandbox):
    dest, _ = sandbox
    unpack(dest, member("x/y/.wh..wh..opq"), member("x/y", "dir", mode=0o700, mtime=MTIME - 3), member("x/y/z", data=b"z"))
    assert opaque(dest / "x" / "y") and not opaque(dest / "x")
    assert mode_of(dest / "x" / "y") == 0o700 and (dest / "x" / "y").stat().st_mtime == MTIME - 3


@pytest.mark.parametrize("name", ["a/.wh...", "a/.wh..", ".wh.", "a/.wh./"])
def test_whiteouts_of_dot_names_are_refused(sandbox, name):
    dest, _ = sandbox
    with pytest.raises(LayerError, match="whiteout"):
        unpack(dest, member(name))


def test_opaque_root_is_refused(sandbox):
    dest, _ = sandbox
    with pytest.raises(LayerError, match="layer root"):
        unpack(dest, member("./.wh..wh..opq"))


def test_whiteouts_hide_only_lower_layers(sandbox):
    """OCI image-spec (layer.md): whiteouts apply to lower layers only; entries of the same
    layer stay, whatever the order."""
    dest, _ = sandbox
    unpack(
        dest,
        member("file", data=b"mine"), member(".wh.file"),
        member("dir", "dir"), member("dir/kept", data=b"k"), member(".wh.dir"),
        member(".wh.again"), member("again", "dir"), member("again/x", data=b"x"),
        member(".wh.implicit"), member("implicit/y", data=b"y"),
        member(".wh.tofile"), member("tofile", data=b"now a file"),
    )
    assert (dest / "file").read_bytes() == b"mine"
    assert (dest / "dir" / "kept").read_bytes() == b"k" and opaque(dest / "dir")
    assert (dest / "again" / "x").read_bytes() == b"x" and opaque(dest / "again")
    assert (dest / "implicit" / "y").read_bytes() == b"y" and opaque(dest / "implicit")
    assert (dest / "tofile").read_bytes() == b"now a file"


def test_aufs_metadata_and_names_below_whiteouts_are_skipped(sandbox):
    dest, _ = sandbox
    stats = unpack(dest, member(".wh..wh.plnk", "dir"), member(".wh..wh.plnk/1.2", data=b"aufs"), member(".wh..wh.aufs"),
                   member(".wh.x/y", data=b"odd"))
    assert os.listdir(dest) == []
    assert [name for name, _ in stats.skipped] == [".wh..wh.plnk", ".wh..wh.plnk/1.2", ".wh..wh.aufs", ".wh.x/y"]


# -- replacement within a layer --------------------------------------------------------------------


def test_later_members_replace_earlier_ones(sandbox):
    dest, _ = sandbox
    unpack(
        dest,
        member("x", data=b"first"),
        member("x", data=b"second"),
        member("f2d", data=b"file"),
        member("f2d", "dir"),
        member("f2d/child", data=b"c"),
        member("d2f", "dir", mtime=MTIME - 100),
        member("d2f/child", data=b"c"),
        member("d2f", data=b"now a file", mtime=MTIME - 5),
        member("l2f", "symlink", target="x"),
        member("l2f", data=b"was a link"),
        member("d2l", "dir"),
        member("d2l", "symlink", target="x"),
        member("dd", "dir", mode=0o700),
        member("dd/keep", data=b"k"),
        member("dd", "dir", mode=0o750),
    )
    assert (dest / "x").read_bytes() == b"second"
    assert (dest / "f2d" / "child").read_bytes() == b"c"
    # The replaced directory's mtime is not applied to the file that took its place.
    assert (dest / "d2f").read_bytes() == b"now a file" and (dest / "d2f").stat().st_mtime == MTIME - 5
    assert (dest / "l2f").read_bytes() == b"was a link" and not (dest / "l2f").is_symlink()
    assert os.readlink(dest / "d2l") == "x"
    assert (dest / "dd" / "keep").read_bytes() == b"k" and mode_of(dest / "dd") == 0o750


def test_a_file_cannot_be_a_parent(sandbox):
    dest, _ = sandbox
    with pytest.raises(LayerError, match="needs 'f' to be a directory"):
        unpack(dest, member("f", data=b"x"), member("f/g", data=b"y"))


# -- limits and damaged archives -------------------------------------------------------------------


def test_decompression_bomb_limit(sandbox):
    dest, _ = sandbox
    with pytest.raises(LayerError) as info:
        unpack(dest, member("a", data=b"x" * 600), member("b", data=b"x" * 600), limits=UnpackLimits(max_total_bytes=1000))
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
        unpack(dest, member("f", data=b"x", pax={"GNU.sparse.map": "x,y", "GNU.sparse.major": "0", "GNU.sparse.minor": "1"}))
    huge = tar_bytes(member("f", pax={"comment": "c" * (2 * 1024 * 1024)}))
    with pytest.raises(LayerError, match="extended tar header"):
        unpack_layer(io.BytesIO(huge), str(dest))


def test_skipped_reasons_are_capped(sandbox):
    dest, _ = sandbox
    stats = unpack(dest, *[member(f"p{i}", "fifo") for i in range(1005)])
    assert len(stats.skipped) == 1001 and stats.skipped[-1] == ("...", "and 5 more members skipped or changed")


def test_limits_from_the_environment():
    assert UnpackLimits.from_env({}) == UnpackLimits()
    assert UnpackLimits.from_env({"TOOLBOX_MAX_LAYER_BYTES": "1234"}).max_total_bytes == 1234
    with pytest.raises(ConfigError, match="TOOLBOX_MAX_LAYER_BYTES"):
        UnpackLimits.from_env({"TOOLBOX_MAX_LAYER_BYTES": "1G"})


# -- merging ---------------------------------------------------------------------------------------


def unpack_layers(tmp_path, *layers):
    trees = []
    for index, members in enumerate(layers):
        tree = tmp_path / f"layer{index}"
        tree.mkdir()
        unpack_layer(io.BytesIO(tar_bytes(*members)), str(tree))
        trees.append(str(tree))
    return trees


LOWER = (
    member("a/x", data=b"x"), member("a/y", data=b"y"), member("d/old", data=b"old"), member("d/sub/deep", data=b"deep"),
    member("f2d", data=b"file"), member("d2f/child", data=b"c"), member("keep", data=b"k"), member("keep2", "hardlink", target="keep"),
    member("o2d", data=b"file under an opaque name"), member("m", "dir", mode=0o700, mtime=MTIME - 9, pax={"SCHILY.xattr.user.low": "1"}),
    member("m/low", data=b"low"), member("link", "symlink", target="a", mtime=MTIME - 4),
)
UPPER = (
    member("a/.wh.x"), member("a/.wh.never-existed"), member("d", "dir"), member("d/.wh..wh..opq"), member("d/new", data=b"new"),
    member("f2d/child", data=b"now a dir"), member("d2f", data=b"now a file"), member("o2d/.wh..wh..opq"), member("o2d/in", data=b"in"),
    member("m", "dir", mode=0o750, mtime=MTIME - 8, pax={"SCHILY.xattr.user.up": "2"}), member("m/up", data=b"up"),
    member("./", "dir", mode=0o750, mtime=MTIME - 2),
)


def test_merge_layers_follows_overlay_rules(tmp_path):
    merged = tmp_path / "merged"
    merged.mkdir()
    lower, upper = unpack_layers(tmp_path, LOWER, UPPER)
    merge_layers([lower, upper], str(merged))
    found = sorted(str(p.relative_to(merged)) for p in merged.rglob("*"))
    assert found == ["a", "a/y", "d", "d/new", "d2f", "f2d", "f2d/child", "keep", "keep2", "link", "m", "m/low", "m/up", "o2d", "o2d/in"]
    assert (merged / "d2f").read_bytes() == b"now a file"
    assert (merged / "keep").stat().st_ino == os.lstat(os.path.join(lower, "keep")).st_ino  # hard-linked, not copied
    assert (merged / "keep2").stat().st_ino == (merged / "keep").stat().st_ino
    # Directories show the upper-most layer's mode, mtime and xattrs; symlinks keep their mtime.
    assert mode_of(merged / "m") == 0o750 and (merged / "m").stat().st_mtime == MTIME - 8
    assert os.listxattr(merged / "m") == ["user.up"]
    assert os.lstat(merged / "link").st_mtime == MTIME - 4
    assert mode_of(merged) == 0o750 and merged.stat().st_mtime == MTIME - 2
    # Nothing of overlayfs's own format is left in the flat tree.
    for path in merged.rglob("*"):
        assert not is_whiteout(path) and not opaque(path)


def test_merge_copies_across_filesystems(tmp_path):
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's temporary directory")
    size = 64 * 1024 * 1024
    holes = member("holes", data=b"ab", mode=0o600, pax={"GNU.sparse.map": f"0,1,{size - 1},1", "GNU.sparse.size": str(size)})
    (tree,) = unpack_layers(tmp_path, (member("f", data=b"data", mode=0o640, pax={"SCHILY.xattr.user.kept": "1"}), holes))
    merged = os.path.join("/dev/shm", f"toolbox-merge-test-{os.getpid()}")
    os.mkdir(merged)
    try:
        merge_layers([tree], merged)
        copied = os.path.join(merged, "f")
        assert open(copied, "rb").read() == b"data" and mode_of(copied) == 0o640 and os.getxattr(copied, "user.kept") == b"1"
        assert os.stat(copied).st_mtime == MTIME and os.stat(copied).st_ino != os.stat(os.path.join(tree, "f")).st_ino
        sparse = os.stat(os.path.join(merged, "holes"))
        assert sparse.st_size == size and sparse.st_blocks * 512 <= 64 * 1024  # holes copied as holes
        with open(os.path.join(merged, "holes"), "rb") as file:
            assert os.pread(file.fileno(), 1, 0) == b"a" and os.pread(file.fileno(), 2, size - 2) == b"\0b"
    finally:
        shutil.rmtree(merged)


def test_merge_walks_trees_deeper_than_the_recursion_limit(deep_tmp_path):
    import sys

    from tests.support.trees import DEPTH, make_deep_tree
    from toolbox import fsutil

    assert DEPTH > sys.getrecursionlimit()
    lower, upper, merged = (deep_tmp_path / name for name in ("lower", "upper", "merged"))
    make_deep_tree(lower)
    make_deep_tree(upper, depth=DEPTH // 2)
    merged.mkdir()
    merge_layers([str(lower), str(upper)], str(merged))
    assert fsutil.tree_summary(merged)[1:] == fsutil.tree_summary(lower)[1:]  # the same names and content
    fd = os.open(merged, os.O_RDONLY | os.O_DIRECTORY)
    deepest_file = (DEPTH - 1) // 100 * 100 + 1  # make_deep_tree puts one in every 100th level
    for _ in range(deepest_file):  # one level at a time
        fd, parent = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(parent)
    assert os.stat("f", dir_fd=fd).st_ino == os.stat(os.path.join(lower, *["d"] * deepest_file, "f")).st_ino  # hard-linked
    os.close(fd)


def describe(root):
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st_ = os.lstat(path)
            key = os.path.relpath(path, root)
            if stat.S_ISLNK(st_.st_mode):
                found[key] = ("symlink", os.readlink(path), st_.st_mtime)
            elif stat.S_ISDIR(st_.st_mode):
                found[key] = ("dir", oct(stat.S_IMODE(st_.st_mode)), st_.st_mtime)
            else:
                with open(path, "rb") as file:
                    found[key] = ("file", oct(stat.S_IMODE(st_.st_mode)), st_.st_mtime, file.read())
    return found


@pytest.mark.needs_userns_overlay
def test_merge_layers_shows_what_overlayfs_shows(tmp_path):
    same_layer = (member("x", "dir"), member("x/mine", data=b"m"), member(".wh.x"), member(".wh.f"), member("f", "dir"),
                  member("f/new", data=b"n"))
    trees = unpack_layers(tmp_path, LOWER + (member("x/old", data=b"o"), member("f", data=b"f")), UPPER, same_layer)
    merged = tmp_path / "merged"
    merged.mkdir()
    merge_layers(trees, str(merged))
    for name in ("mnt", "seen"):
        (tmp_path / name).mkdir()
    lowerdir = ":".join(reversed(trees))  # overlayfs lists the top layer first
    script = f"mount -t overlay overlay -o userxattr,lowerdir={lowerdir} {tmp_path}/mnt && cp -a {tmp_path}/mnt/. {tmp_path}/seen/"
    subprocess.run(["unshare", "-Urm", "sh", "-c", script], check=True, capture_output=True)
    assert describe(tmp_path / "seen") == describe(merged)
    assert sorted(os.listdir(merged / "x")) == ["mine"] and sorted(os.listdir(merged / "f")) == ["new"]
