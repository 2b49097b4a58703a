"""The store's layer trees are made for overlayfs: mounted as lower directories by an ordinary
user (user + mount namespace, `userxattr`), they must show exactly the image — whiteouts and
opaque directories applied — with a writable scratch layer on top that leaves them untouched."""

import os
import subprocess

import pytest

from toolbox.oci.digest import Digest
from toolbox.runtime.flatten import merge_layers


def listing(root):
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            if os.path.islink(path):
                found[relative] = "-> " + os.readlink(path)
            elif os.path.isdir(path):
                found[relative] = "dir"
            else:
                with open(path, "rb") as file:
                    found[relative] = file.read()
    return found


@pytest.mark.needs_userns_overlay
def test_layers_stack_under_a_rootless_overlay(toolbox, registry, pushed_images, tmp_path):
    toolbox.trust(registry)
    image = pushed_images["whiteout"]
    toolbox.pull(image.reference)
    trees = [toolbox.layout.layer_tree(Digest.parse(d)) for d in image.built.diff_ids]
    expected = tmp_path / "expected"
    expected.mkdir()
    merge_layers(trees, str(expected))

    for name in ("upper", "work", "merged", "seen"):
        (tmp_path / name).mkdir()
    lowerdir = ":".join(reversed(trees))  # overlayfs lists the top layer first
    script = (
        "mount -t overlay overlay -o "
        f"userxattr,lowerdir={lowerdir},upperdir={tmp_path}/upper,workdir={tmp_path}/work {tmp_path}/merged"
        f" && cp -a {tmp_path}/merged/. {tmp_path}/seen/"
        f" && echo scratch > {tmp_path}/merged/a/y && rm {tmp_path}/merged/bin/busybox"
    )
    subprocess.run(["unshare", "-Urm", "sh", "-c", script], check=True, capture_output=True)
    assert listing(tmp_path / "seen") == listing(expected)
    assert (not os.path.exists(tmp_path / "seen" / "a" / "x")
            and sorted(os.listdir(tmp_path / "seen" / "d")) == ["new"])
    # Writes went to the scratch layer; the stored layers are as they were.
    assert (tmp_path / "upper" / "a" / "y").read_text() == "scratch\n"
    assert open(os.path.join(trees[1], "a", "y")).read() == "y\n"
    assert os.path.exists(os.path.join(trees[0], "bin", "busybox"))
