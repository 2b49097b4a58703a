"""Images with as many layers as Docker allows (127) run in every root filesystem mode.

mount(2) copies one page of options and cuts the rest off, ending the string at the page's last
byte (fs/namespace.c). overlayfs's lowerdir list of sha256/<64 hex>/tree names outgrows a page
at 53 layers: the kernel then mounted the top 52 layers, the 53rd layer's *directory* (its
tree/ and layer.json at /) and no upperdir or workdir. That read-only wrong root failed at the
next mount point the runtime made ("mount /proc, /sys and /dev: Read-only file system"), unless
the image already had every one of them: then the tool ran in it. Both are run here."""

import errno
import os
import subprocess
import sys
import uuid

import pytest

from tests.support import images
from tests.support.images import Layer, directory, file
from tests.support.push import push_raw
from tests.support.rootfs_modes import rootfs_mode_params

# What the runtime creates in the root when the image lacks it; with all of them in the image
# and `--user root --no-cwd`, the truncated mount used to run without a single write.
MOUNT_POINTS = (file("etc/resolv.conf", ""), file("etc/hosts", ""))


def many_layers(count):
    """`count` layers: data at the bottom (one file each in /layers, a file the top layer
    deletes and another it replaces), busybox in the top one."""
    data = [Layer((directory("layers"), file("layers/0", "bottom\n"), file("deleted", "lower\n"),
                   file("replaced", "lower\n")))]
    data += [Layer((file(f"layers/{i}", f"{i}\n"),)) for i in range(1, count - 1)]
    top = Layer(tuple(images.busybox_entries()) + MOUNT_POINTS + (images.whiteout("deleted"),
                                                                  file("replaced", "top\n")))
    return tuple(data) + (top,)


@pytest.fixture(scope="module")
def published(registry):
    """Images of 53 (the first that outgrew the page) and 127 layers (Docker's most)."""
    references = {}
    for count in (53, 127):
        built = images.build_image(images.ImageSpec(layers=many_layers(count), cmd=("sh",),
                                                    labels={"org.example.layers": str(count)}))
        assert len(built.diff_ids) == count
        repository = f"many-layers/{uuid.uuid4().hex[:12]}"
        push_raw(registry, repository, "1", built)
        references[count] = f"{registry.host}/{repository}:1"
    return references


def run(toolbox, mode, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "toolbox", "run", *args],
                          env=dict(toolbox.env, TOOLBOX_ROOTFS=mode), capture_output=True,
                          cwd=cwd or toolbox.root, timeout=120)


LOOK = "ls /layers | wc -l; cat /layers/0 /replaced; test ! -e /deleted && echo deleted; ls -a /"


@pytest.mark.parametrize("count", [53, 127])
@pytest.mark.parametrize("mode", rootfs_mode_params())
def test_an_image_of_many_layers_runs_whole_in_every_root_mode(toolbox, registry, published, tmp_path, mode,
                                                               count):
    toolbox.trust(registry)
    toolbox.pull(published[count])
    expected_root = ["bin", "dev", "etc", "home", "layers", "proc", "replaced", "root", "sys", "tmp", "usr",
                     "var"]
    made = ["run"] if mode == "read-only" else []  # its tmpfs (rootfs.WRITABLE_IN_READ_ONLY)
    # As an ordinary run (the working directory is mounted), and as the run the truncated mount
    # used to let through (nothing to create in the root).
    for options in ([], ["--user", "root", "--no-cwd"]):
        result = run(toolbox, mode, *options, published[count], "sh", "-c", LOOK, cwd=tmp_path)
        assert result.returncode == 0, (options, result.stderr.decode()[-2000:])
        lines = result.stdout.decode().split("\n")
        assert lines[:4] == [str(count - 1), "bottom", "top", "deleted"], (options, lines)
        shown = sorted(name for name in lines[4:] if name not in ("", ".", ".."))
        # no tree/, no layer.json
        assert [name for name in shown
                if name not in expected_root + made + [tmp_path.parts[1]]] == [], (options, shown)
        assert set(expected_root) <= set(shown), (options, shown)


def test_mount_options_longer_than_a_page_are_refused_not_cut():
    """mount(2) would cut them silently at the page's end: the wrapper refuses them first."""
    from toolbox.runtime import syscalls as sc

    page = os.sysconf("SC_PAGE_SIZE")
    with pytest.raises(OSError, match="one page") as refused:
        sc.mount("toolbox", "/nonexistent-mount-point", "overlay", 0, "lowerdir=" + "x" * page)
    assert refused.value.errno == errno.E2BIG
    with pytest.raises(OSError) as kernel:  # one byte less (and its NUL) fits: the kernel answers
        sc.mount("toolbox", "/nonexistent-mount-point", "overlay", 0, "x" * (page - 1))
    assert kernel.value.errno != errno.E2BIG
