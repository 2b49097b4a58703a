"""The layer unpacker against hostile and unusual tars, built in memory: what each member
becomes in the tree, and that nothing is ever written outside it. How the tar itself is read
(sparse maps, damage, the limits) is in test_layertar.py."""

import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolbox.errors import LayerError
from toolbox.store.unpack import unpack_layer

from tests.support.images import MTIME
from tests.support.tars import is_whiteout, member, mode_of, opaque, tar_bytes, unpack


def assert_canary(tmp_path, canary):
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary", "dest"]
    assert [p.name for p in canary.iterdir()] == ["keep"] and (canary / "keep").read_text() == "unchanged"


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
    stats = unpack(dest, member("./", "dir", mode=0o751, mtime=MTIME - 1), member("f", data=b"f"),
                   member(".", data=b"not a dir"))
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
        unpack(dest, member("link", "symlink", target="/"),
               member("link/etc/passwd", data=b"root::0:0::/:/bin/sh\n"))
    with pytest.raises(LayerError, match="symlink 'deep/link'"):
        unpack(dest, member("deep/link", "symlink", target="../../canary"),
               member("deep/link/keep", data=b"x"))
    assert_canary(tmp_path, canary)


@pytest.mark.parametrize("target", ["/etc/passwd", "../canary/keep", "x/../../canary/keep", "missing", "dir",
                                    "link/keep", "."])
def test_hard_links_must_stay_inside_the_layer(sandbox, tmp_path, target):
    dest, canary = sandbox
    with pytest.raises(LayerError, match="'..'|points outside the layer"):
        unpack(dest, member("dir", "dir"), member("link", "symlink", target=str(canary)),
               member("passwd", "hardlink", target=target))
    assert_canary(tmp_path, canary)


def test_hard_links_to_symlinks_and_to_themselves(sandbox):
    dest, _ = sandbox
    stats = unpack(dest, member("f", data=b"f"), member("s", "symlink", target="/etc"),
                   member("s2", "hardlink", target="s"), member("f", "hardlink", target="./f"))
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
    unpack(dest, member("a", "symlink", target="b"), member("b", "symlink", target="a"),
           member("c", "symlink", target="c"))
    assert (os.readlink(dest / "a") == "b" and os.readlink(dest / "b") == "a"
            and os.readlink(dest / "c") == "c")


@settings(max_examples=60 if settings.default.max_examples < 1000 else 2000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["file", "dir", "symlink", "hardlink"]),
                          st.lists(st.sampled_from(["a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", "/"]),
                                   min_size=1, max_size=4),
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
    pax = {"SCHILY.xattr.user.comment": "kept", "SCHILY.xattr.user.overlay.opaque": "y",
           "SCHILY.xattr.security.capability": "x", "SCHILY.xattr.trusted.overlay.whiteout": "y"}
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
    unpack(dest, member("nan", pax={"mtime": "nan"}), member("inf", pax={"mtime": "inf"}),
           member("far", pax={"mtime": "1e30"}), member("old", pax={"mtime": "-1000.5"}))
    assert (dest / "nan").stat().st_mtime == 0 and (dest / "old").stat().st_mtime == -1000.5
    assert (dest / "far").exists() and (dest / "inf").exists()


# -- whiteouts -------------------------------------------------------------------------------------


def test_whiteouts_and_opaque_directories_in_overlay_format(sandbox):
    dest, _ = sandbox
    stats = unpack(dest, member("a", "dir"), member("a/.wh.gone"), member("d", "dir"),
                   member("d/.wh..wh..opq"), member("d/new", data=b"n"))
    assert is_whiteout(dest / "a" / "gone") and mode_of(dest / "a" / "gone") == 0o600
    assert opaque(dest / "d") and not opaque(dest / "a")
    assert not os.path.lexists(dest / "d" / ".wh..wh..opq") and not os.path.lexists(dest / "a" / ".wh.gone")
    assert (stats.whiteouts, stats.opaque_dirs) == (1, 1)


def test_opaque_marker_creates_its_directory_and_survives_its_entry(sandbox):
    dest, _ = sandbox
    unpack(dest, member("x/y/.wh..wh..opq"), member("x/y", "dir", mode=0o700, mtime=MTIME - 3),
           member("x/y/z", data=b"z"))
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
    stats = unpack(dest, member(".wh..wh.plnk", "dir"), member(".wh..wh.plnk/1.2", data=b"aufs"),
                   member(".wh..wh.aufs"), member(".wh.x/y", data=b"odd"))
    assert os.listdir(dest) == []
    assert [name for name, _ in stats.skipped] == [".wh..wh.plnk", ".wh..wh.plnk/1.2", ".wh..wh.aufs",
                                                   ".wh.x/y"]


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


def test_skipped_reasons_are_capped(sandbox):
    dest, _ = sandbox
    stats = unpack(dest, *[member(f"p{i}", "fifo") for i in range(1005)])
    assert len(stats.skipped) == 1001 and stats.skipped[-1] == ("...",
                                                                "and 5 more members skipped or changed")
