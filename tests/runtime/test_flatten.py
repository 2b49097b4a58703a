"""Layer trees flattened into one tree (toolbox/runtime/flatten.py), with overlayfs's rules;
checked against a real overlayfs mount where one can be made. The trees are unpacked from tars
built in memory, so whiteouts and opaque directories are in the store's format."""

import io
import os
import shutil
import stat
import subprocess

import pytest

from toolbox.runtime.flatten import merge_layers
from toolbox.store.unpack import unpack_layer

from tests.support.images import MTIME
from tests.support.tars import is_whiteout, member, mode_of, opaque, tar_bytes


def unpack_layers(tmp_path, *layers):
    trees = []
    for index, members in enumerate(layers):
        tree = tmp_path / f"layer{index}"
        tree.mkdir()
        unpack_layer(io.BytesIO(tar_bytes(*members)), str(tree))
        trees.append(str(tree))
    return trees


LOWER = (
    member("a/x", data=b"x"), member("a/y", data=b"y"), member("d/old", data=b"old"), member("d/sub/deep",
                                                                                             data=b"deep"),
    member("f2d", data=b"file"), member("d2f/child", data=b"c"), member("keep", data=b"k"),
    member("keep2", "hardlink", target="keep"),
    member("o2d", data=b"file under an opaque name"), member("m", "dir", mode=0o700, mtime=MTIME - 9,
                                                             pax={"SCHILY.xattr.user.low": "1"}),
    member("m/low", data=b"low"), member("link", "symlink", target="a", mtime=MTIME - 4),
)
UPPER = (member("a/.wh.x"), member("a/.wh.never-existed"), member("d", "dir"), member("d/.wh..wh..opq"),
         member("d/new", data=b"new"), member("f2d/child", data=b"now a dir"),
         member("d2f", data=b"now a file"), member("o2d/.wh..wh..opq"), member("o2d/in", data=b"in"),
         member("m", "dir", mode=0o750, mtime=MTIME - 8, pax={"SCHILY.xattr.user.up": "2"}),
         member("m/up", data=b"up"), member("./", "dir", mode=0o750, mtime=MTIME - 2),)


def test_merge_layers_follows_overlay_rules(tmp_path):
    merged = tmp_path / "merged"
    merged.mkdir()
    lower, upper = unpack_layers(tmp_path, LOWER, UPPER)
    merge_layers([lower, upper], str(merged))
    found = sorted(str(p.relative_to(merged)) for p in merged.rglob("*"))
    assert found == ["a", "a/y", "d", "d/new", "d2f", "f2d", "f2d/child", "keep", "keep2", "link", "m",
                     "m/low", "m/up", "o2d", "o2d/in"]
    assert (merged / "d2f").read_bytes() == b"now a file"
    # hard-linked, not copied
    assert (merged / "keep").stat().st_ino == os.lstat(os.path.join(lower, "keep")).st_ino
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
    holes = member("holes", data=b"ab", mode=0o600,
                   pax={"GNU.sparse.map": f"0,1,{size - 1},1", "GNU.sparse.size": str(size)})
    (tree,) = unpack_layers(tmp_path, (member("f", data=b"data", mode=0o640,
                                              pax={"SCHILY.xattr.user.kept": "1"}), holes))
    merged = os.path.join("/dev/shm", f"toolbox-merge-test-{os.getpid()}")
    os.mkdir(merged)
    try:
        merge_layers([tree], merged)
        copied = os.path.join(merged, "f")
        assert (open(copied, "rb").read() == b"data" and mode_of(copied) == 0o640
                and os.getxattr(copied, "user.kept") == b"1")
        assert (os.stat(copied).st_mtime == MTIME
                and os.stat(copied).st_ino != os.stat(os.path.join(tree, "f")).st_ino)
        sparse = os.stat(os.path.join(merged, "holes"))
        assert sparse.st_size == size and sparse.st_blocks * 512 <= 64 * 1024  # holes copied as holes
        with open(os.path.join(merged, "holes"), "rb") as file:
            assert os.pread(file.fileno(), 1, 0) == b"a" and os.pread(file.fileno(), 2, size - 2) == b"\0b"
    finally:
        shutil.rmtree(merged)


def test_merge_walks_trees_deeper_than_the_recursion_limit(deep_tmp_path):
    import sys

    from toolbox import fsutil

    from tests.support.trees import DEPTH, make_deep_tree

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
    # hard-linked
    assert os.stat("f", dir_fd=fd).st_ino == os.stat(os.path.join(lower, *["d"] * deepest_file, "f")).st_ino
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
    same_layer = (member("x", "dir"), member("x/mine", data=b"m"), member(".wh.x"), member(".wh.f"),
                  member("f", "dir"), member("f/new", data=b"n"))
    trees = unpack_layers(tmp_path, LOWER + (member("x/old", data=b"o"), member("f", data=b"f")), UPPER,
                          same_layer)
    merged = tmp_path / "merged"
    merged.mkdir()
    merge_layers(trees, str(merged))
    for name in ("mnt", "seen"):
        (tmp_path / name).mkdir()
    lowerdir = ":".join(reversed(trees))  # overlayfs lists the top layer first
    script = (f"mount -t overlay overlay -o userxattr,lowerdir={lowerdir} {tmp_path}/mnt && "
              f"cp -a {tmp_path}/mnt/. {tmp_path}/seen/")
    subprocess.run(["unshare", "-Urm", "sh", "-c", script], check=True, capture_output=True)
    assert describe(tmp_path / "seen") == describe(merged)
    assert sorted(os.listdir(merged / "x")) == ["mine"] and sorted(os.listdir(merged / "f")) == ["new"]
