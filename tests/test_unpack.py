"""The layer unpacker against hostile and unusual tars, built in memory."""

import io
import os
import stat
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from toolbox.errors import LayerError
from toolbox.unpack import OPAQUE_XATTR, UnpackLimits, merge_layers, unpack_layer

MTIME = 1_700_000_000


def member(name, kind="file", data=b"", mode=0o644, target="", pax=None):
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    info.mode = mode
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                 "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}[kind]
    info.linkname = target
    info.size = len(data) if kind == "file" else 0
    if pax:
        info.pax_headers = pax
    return info, data


def tar_bytes(*members, encoding="utf-8"):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding=encoding, errors="surrogateescape") as tar:
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


def test_round_trip_of_ordinary_members(sandbox):
    dest, _ = sandbox
    stats = unpack(
        dest,
        member("etc", "dir", mode=0o755),
        member("etc/conf", data=b"hello", mode=0o640),
        member("bin/tool", data=b"#!/bin/sh\n", mode=0o755),
        member("bin/alias", "symlink", target="tool"),
        member("bin/abs", "symlink", target="/usr/bin/elsewhere"),
        member("bin/copy", "hardlink", target="bin/tool"),
    )
    assert (dest / "etc" / "conf").read_bytes() == b"hello"
    assert stat.S_IMODE((dest / "etc" / "conf").stat().st_mode) == 0o640
    assert stat.S_IMODE((dest / "bin" / "tool").stat().st_mode) == 0o755
    assert os.readlink(dest / "bin" / "alias") == "tool"
    assert os.readlink(dest / "bin" / "abs") == "/usr/bin/elsewhere"
    assert (dest / "bin" / "copy").stat().st_ino == (dest / "bin" / "tool").stat().st_ino
    assert (dest / "etc").stat().st_mtime == MTIME and (dest / "etc" / "conf").stat().st_mtime == MTIME
    # "bin" was created as a parent, not by a member of its own: members are what is counted.
    assert (stats.files, stats.dirs, stats.symlinks, stats.hardlinks) == (2, 1, 2, 1)


def test_dotdot_is_refused_and_nothing_escapes(sandbox, tmp_path):
    dest, canary = sandbox
    with pytest.raises(LayerError, match="'..'"):
        unpack(dest, member("../canary/keep", data=b"overwritten"))
    with pytest.raises(LayerError, match="'..'"):
        unpack(dest, member("a/../../escape", data=b"x"))
    assert_canary(tmp_path, canary)


def test_absolute_names_become_relative(sandbox, tmp_path):
    dest, canary = sandbox
    unpack(dest, member(str(canary / "keep"), data=b"inside"))
    assert (dest / str(canary).lstrip("/") / "keep").read_bytes() == b"inside"
    assert_canary(tmp_path, canary)


def test_writing_through_a_symlink_is_refused(sandbox, tmp_path):
    dest, canary = sandbox
    with pytest.raises(LayerError, match="through the symlink 'evil'"):
        unpack(dest, member("evil", "symlink", target=str(canary)), member("evil/keep", data=b"pwned"))
    assert_canary(tmp_path, canary)
    with pytest.raises(LayerError, match="symlink"):
        unpack(dest, member("root", "symlink", target="/"), member("root/tmp/pwned", data=b"x"))
    assert_canary(tmp_path, canary)


@pytest.mark.parametrize("target", ["/etc/passwd", "../canary/keep", "missing", "dir", "link/inner"])
def test_hard_links_must_stay_inside_the_layer(sandbox, tmp_path, target):
    dest, canary = sandbox
    with pytest.raises(LayerError, match="'..'|points outside the layer"):
        unpack(dest, member("dir", "dir"), member("link", "symlink", target=str(canary)), member("passwd", "hardlink", target=target))
    assert_canary(tmp_path, canary)


def test_symlink_loops_are_just_symlinks(sandbox):
    dest, _ = sandbox
    unpack(dest, member("a", "symlink", target="b"), member("b", "symlink", target="a"))
    assert os.readlink(dest / "a") == "b" and os.readlink(dest / "b") == "a"


def test_devices_and_fifos_are_skipped_setuid_stripped(sandbox):
    dest, _ = sandbox
    stats = unpack(
        dest,
        member("null", "chr", mode=0o666),
        member("pipe", "fifo"),
        member("su", data=b"x", mode=0o4755),
        member("sg", data=b"x", mode=0o2711),
        member("ro", "dir", mode=0o555),
        member("ro/f", data=b"x", mode=0o400),
    )
    assert not os.path.lexists(dest / "null") and not os.path.lexists(dest / "pipe")
    assert stat.S_IMODE((dest / "su").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "sg").stat().st_mode) == 0o711
    assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o755  # owner-writable
    assert stat.S_IMODE((dest / "ro" / "f").stat().st_mode) == 0o600
    reasons = dict(stats.skipped)
    assert "device node" in reasons["null"] and "FIFO" in reasons["pipe"] and "setuid" in reasons["su"]


def test_whiteouts_and_opaque_directories_in_overlay_format(sandbox):
    dest, _ = sandbox
    stats = unpack(dest, member("a", "dir"), member("a/.wh.gone", data=b""), member("d", "dir"), member("d/.wh..wh..opq"), member("d/new", data=b"n"))
    gone = os.lstat(dest / "a" / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(dest / "d", OPAQUE_XATTR) == b"y"
    assert not os.path.lexists(dest / "d" / ".wh..wh..opq")
    assert (stats.whiteouts, stats.opaque_dirs) == (1, 1)


@pytest.mark.parametrize("name", ["a/.wh...", "a/.wh..", ".wh."])
def test_whiteouts_of_dot_names_are_refused(sandbox, name):
    dest, _ = sandbox
    with pytest.raises(LayerError):
        unpack(dest, member(name))


def test_later_members_replace_earlier_ones(sandbox):
    dest, _ = sandbox
    unpack(
        dest,
        member("x", data=b"first"),
        member("x", data=b"second"),
        member("f2d", data=b"file"),
        member("f2d", "dir"),
        member("f2d/child", data=b"c"),
        member("d2f", "dir"),
        member("d2f/child", data=b"c"),
        member("d2f", data=b"now a file"),
    )
    assert (dest / "x").read_bytes() == b"second"
    assert (dest / "f2d" / "child").read_bytes() == b"c"
    assert (dest / "d2f").read_bytes() == b"now a file"


def test_non_utf8_and_long_names(sandbox):
    dest, _ = sandbox
    latin1 = b"caf\xe9".decode("utf-8", "surrogateescape")
    long_component = "n" * 250
    unpack(dest, member(latin1, data=b"bytes"), member(f"deep/{long_component}", data=b"long"))
    assert os.path.exists(os.fsencode(dest) + b"/caf\xe9")
    assert (dest / "deep" / long_component).read_bytes() == b"long"
    with pytest.raises(LayerError, match="longer than 4096"):
        unpack(dest, member("x/" * 2100 + "f", data=b""))
    with pytest.raises(LayerError, match="File name too long"):
        unpack(dest, member("n" * 300, data=b""))


def test_decompression_bomb_limit(sandbox):
    dest, _ = sandbox
    with pytest.raises(LayerError) as info:
        unpack(dest, member("a", data=b"x" * 600), member("b", data=b"x" * 600), limits=UnpackLimits(max_total_bytes=1000))
    assert "TOOLBOX_MAX_LAYER_BYTES" in info.value.hint
    with pytest.raises(LayerError, match="more than 3 members"):
        unpack(dest, *[member(f"f{i}") for i in range(4)], limits=UnpackLimits(max_entries=3))


def test_truncated_and_garbage_tars(sandbox):
    dest, _ = sandbox
    data = tar_bytes(member("big", data=b"x" * 5000))
    with pytest.raises(LayerError, match="truncated|not a valid tar"):
        unpack_layer(io.BytesIO(data[:2000]), str(dest))
    with pytest.raises(LayerError, match="not a valid tar"):
        unpack_layer(io.BytesIO(b"this is not a tar archive" * 40), str(dest))


def test_xattrs_user_kept_overlay_and_others_dropped(sandbox):
    dest, _ = sandbox
    pax = {"SCHILY.xattr.user.comment": "kept", "SCHILY.xattr.user.overlay.opaque": "y", "SCHILY.xattr.security.capability": "x"}
    stats = unpack(dest, member("d", "dir", pax=pax), member("f", data=b"x", pax=pax))
    for name in ("d", "f"):
        assert os.getxattr(dest / name, "user.comment") == b"kept"
        assert os.listxattr(dest / name) == ["user.comment"]
    assert sum("dropped" in reason for _, reason in stats.skipped) == 4


def test_merge_layers_follows_overlay_rules(tmp_path):
    lower, upper, merged = tmp_path / "lower", tmp_path / "upper", tmp_path / "merged"
    for path in (lower, upper, merged):
        path.mkdir()
    unpack_layer(io.BytesIO(tar_bytes(
        member("a/x", data=b"x"), member("a/y", data=b"y"), member("d/old", data=b"old"),
        member("f2d", data=b"file"), member("d2f/child", data=b"c"), member("keep", data=b"k"),
    )), str(lower))
    unpack_layer(io.BytesIO(tar_bytes(
        member("a/.wh.x"), member("d", "dir"), member("d/.wh..wh..opq"), member("d/new", data=b"new"),
        member("f2d/child", data=b"now a dir"), member("d2f", data=b"now a file"),
    )), str(upper))
    merge_layers([str(lower), str(upper)], str(merged))
    found = sorted(str(p.relative_to(merged)) for p in merged.rglob("*"))
    assert found == ["a", "a/y", "d", "d/new", "d2f", "f2d", "f2d/child", "keep"]
    assert (merged / "d2f").read_bytes() == b"now a file"
    assert (merged / "keep").stat().st_ino == (lower / "keep").stat().st_ino  # hard-linked, not copied


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["file", "dir", "symlink", "hardlink"]),
                          st.lists(st.sampled_from(["a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", "/"]), min_size=1, max_size=4),
                          st.sampled_from(["a", "/", "../a", "b/a", "/etc/passwd"])), max_size=8))
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
