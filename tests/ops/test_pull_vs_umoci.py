"""The unpacked image must be the tree `umoci unpack --rootless` makes of the same image:
paths, types, permission bits, contents and link targets. Our layers are separate trees with
overlay whiteouts, so they are merged (as the overlay mount will show them) before comparing.
umoci 0.4.7 cannot read zstd layers, so zstd is covered by the pull tests alone."""

import hashlib
import os
import stat
import subprocess

import pytest

from toolbox.oci.digest import Digest
from toolbox.runtime.flatten import merge_layers

from tests.support import images

pytestmark = pytest.mark.needs_program("umoci")


def normalised_mode(st):
    """What toolbox promises to keep of a mode: permission bits without setuid/setgid, owner
    always able to read and write (files) or enter and write (directories)."""
    mode = stat.S_IMODE(st.st_mode) & ~0o6000
    return mode | (0o700 if stat.S_ISDIR(st.st_mode) else 0o600)


def snapshot(root):
    root = os.fsencode(root)
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[relative] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[relative] = ("dir", oct(normalised_mode(st)))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as file:
                    digest = hashlib.sha256(file.read()).hexdigest()
                found[relative] = ("file", oct(normalised_mode(st)), digest)
            else:
                found[relative] = ("other", stat.S_IFMT(st.st_mode))
    return found


@pytest.mark.parametrize("scenario", ["busybox", "whiteout", "odd_names", "shared_a", "uncompressed"])
def test_same_tree_as_umoci(toolbox, registry, pushed_images, tmp_path, scenario):
    image = pushed_images[scenario]
    toolbox.trust(registry)
    toolbox.pull(image.reference)
    ours = tmp_path / "ours"
    ours.mkdir()
    merge_layers([toolbox.layout.layer_tree(Digest.parse(d)) for d in image.built.diff_ids], str(ours))

    layout = tmp_path / "layout"
    built = image.built
    images.write_oci_layout(layout, built, "t")
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:t", str(bundle)], check=True,
                   capture_output=True)
    theirs = snapshot(bundle / "rootfs")
    mine = snapshot(ours)
    assert mine.keys() == theirs.keys()
    for path in mine:
        assert mine[path] == theirs[path], path
