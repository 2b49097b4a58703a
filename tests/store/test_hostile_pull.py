"""Hostile layers served by the loopback registry, beyond the scenarios every test shares (see
test_pull.py: `..`, a symlink to / written through, a hard link to a host file, 600 levels deep,
data after the tar's end, absolute names, devices/FIFOs/setuid bits). Each is refused with a
message naming the problem, or neutralised; a canary tree outside the store stays as it was, and
`toolbox check` finds the store clean. What is pulled is also run, in each root filesystem mode
(overlay, fuse-overlayfs, read-only: TOOLBOX_ROOTFS), and must show the same image in all three."""

import os
import re
import subprocess
import sys
import uuid

import pytest

from toolbox.oci.digest import Digest
from toolbox.runtime.flatten import merge_layers
from toolbox.store.check import check_store
from toolbox.store.unpack import UnpackLimits

from tests.support import images
from tests.support.images import Entry, Layer, directory, file, hardlink, symlink
from tests.support.push import push_raw
from tests.support.rootfs_modes import rootfs_mode_params

BOMB_LIMIT = 8 * 1024 * 1024


def one_layer(*entries, **layer):
    return (Layer(tuple(entries), **layer),)


REFUSED = {
    "whiteout naming ..": (one_layer(directory("a"), file("a/.wh..."), ), "whiteout"),
    "whiteout of ../x": (one_layer(file("a/.wh.x"), Entry("../.wh.passwd")), "'..'"),
    "hard link through ../": (one_layer(file("x", "x"), hardlink("y", "../x")), "'..'"),
    "4 KiB name": (one_layer(file("n" * 4096, "long")), "long"),
    "PAX path with ..": (one_layer(Entry("innocent", data=b"pwned\n", pax_headers={"path": "../../pwned"})),
                         "'..'"),
    "symlink loop then a file through it": (one_layer(symlink("a", "b"), symlink("b", "a"),
                                                      file("a/pwned", "x")), "symlink"),
    "truncated gzip stream": (one_layer(file("f", os.urandom(200_000)), cut=5000),
                              "truncated|incomplete|ended|damaged|corrupt"),
    "truncated zstd stream": (one_layer(file("f", os.urandom(200_000)), compression="zstd", cut=5000),
                              "truncated|incomplete|ended|damaged|corrupt"),
    "decompression bomb": (one_layer(file("zeros", bytes(4 * BOMB_LIMIT))), "limit"),
    "a file as a parent": (one_layer(file("f", "f"), file("f/pwned", "x")), "not a directory|file"),
}

NEUTRALISED = {
    # name: (layers, {path in the merged image: expected content, or None for absent})
    # (Not etc/passwd: the runtime adds the user's entry there.)
    "absolute whiteout stays inside": ((Layer((file("etc/issue", "image\n"),)),
                                        Layer((Entry("/etc/.wh.issue"),))), {"etc/issue": None}),
    "file, then directory, then file again": (
        (Layer((file("x", "1\n"),)), Layer((directory("x"), file("x/inner", "2\n"))),
         Layer((file("x", "3\n"),))), {"x": b"3\n"}),
    "duplicate members: the last wins": ((Layer((file("d", "first\n"), file("d", "second\n"))),),
                                         {"d": b"second\n"}),
    "symlink to /etc in one layer, a file below it in the next": (
        (Layer((symlink("etc", "/etc"),)), Layer((directory("etc"), file("etc/inside", "x\n")))),
        {"etc/inside": b"x\n"}),
    "setuid root file": ((Layer((file("su", "#!/bin/sh\n", 0o4755, uid=0),)),), {"su": b"#!/bin/sh\n"}),
    "non-UTF-8 name": ((Layer((Entry("raw", raw_name=b"\xff\xfe.bin", data=b"bytes\n"),)),),
                       {os.fsdecode(b"\xff\xfe.bin"): b"bytes\n"}),
}


@pytest.fixture
def canary(tmp_path):
    tree = tmp_path / "canary"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "passwd").write_text("host\n")
    return tree


def publish(registry, layers, name):
    built = images.build_image(images.ImageSpec(layers=layers, cmd=("/bin/true",),
                                                labels={"org.example.scenario": name}))
    repository = f"hostile-more/{uuid.uuid4().hex[:12]}"
    push_raw(registry, repository, "1", built)
    return f"{registry.host}/{repository}:1", built


def assert_untouched(toolbox, canary):
    assert sorted(os.listdir(canary)) == ["etc"] and (canary / "etc" / "passwd").read_text() == "host\n"
    for _root, dirs, files in os.walk(canary.parent):
        assert "pwned" not in dirs + files
    report = check_store(toolbox.store)
    assert report.clean, report.to_json()
    assert toolbox.leftovers() == []


def run(toolbox, mode, *args):
    """`toolbox run` in one root filesystem mode."""
    return subprocess.run([sys.executable, "-m", "toolbox", "run", *args],
                          env=dict(toolbox.env, TOOLBOX_ROOTFS=mode), capture_output=True, cwd=toolbox.root,
                          timeout=120)


def flat_entries(toolbox):
    """What read-only mode keeps in the store's flat/ directory: flattened images, and the
    staging directories (NAME.tmp-PID) of flattenings still running or killed."""
    flat = toolbox.layout.flat_dir
    return sorted(os.listdir(flat)) if os.path.isdir(flat) else []


def assert_untouched_store(toolbox):
    report = check_store(toolbox.store)
    assert report.clean, report.to_json()
    assert toolbox.leftovers() == [] and [entry for entry in flat_entries(toolbox) if ".tmp-" in entry] == []


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused(toolbox, registry, canary, name):
    layers, words = REFUSED[name]
    toolbox.trust(registry)
    toolbox.env["TOOLBOX_MAX_LAYER_BYTES"] = str(BOMB_LIMIT)
    reference, _built = publish(registry, layers, name)
    result = toolbox.cli("pull", reference)
    assert result.returncode == 125 and "Traceback" not in result.stderr, result.stderr
    assert re.search(words, result.stderr, re.IGNORECASE), result.stderr
    assert toolbox.store.records() == [] and toolbox.layer_dirs() == []
    assert_untouched(toolbox, canary)


@pytest.mark.parametrize("name", sorted(NEUTRALISED))
def test_neutralised(toolbox, registry, canary, tmp_path, name):
    layers, expected = NEUTRALISED[name]
    toolbox.trust(registry)
    reference, built = publish(registry, layers, name)
    result = toolbox.cli("pull", reference)
    assert result.returncode == 0, result.stderr
    merged = tmp_path / "merged"
    merged.mkdir()
    merge_layers([toolbox.layout.layer_tree(Digest.parse(d)) for d in built.diff_ids], str(merged))
    for path, content in expected.items():
        target = merged / path
        if content is None:
            assert not os.path.lexists(target), path
        else:
            assert not target.is_symlink() and target.read_bytes() == content, path
            assert target.stat().st_mode & 0o6000 == 0  # no setuid or setgid bit survives
    assert_untouched(toolbox, canary)


@pytest.mark.parametrize("mode", rootfs_mode_params())
@pytest.mark.parametrize("name", sorted(NEUTRALISED))
def test_neutralised_layers_run_alike_in_every_root_mode(toolbox, registry, canary, name, mode):
    """The same layers over a busybox layer, pulled and run: each root filesystem mode shows
    what the layers mean, and nothing outside changed."""
    layers, expected = NEUTRALISED[name]
    toolbox.trust(registry)
    reference, _built = publish(registry, (images.busybox_layer(),) + layers, name)
    toolbox.pull(reference)
    look = ('if [ -e "$1" ] || [ -L "$1" ]; then [ ! -L "$1" ] && stat -c %a "$1" && cat "$1"; '
            'else echo absent; fi')
    for path, content in expected.items():
        seen = run(toolbox, mode, reference, "sh", "-c", look, "sh", "/" + path)
        assert seen.returncode == 0, (path, seen.stderr)
        if content is None:
            assert seen.stdout == b"absent\n", path
        else:
            mode_line, _, shown = seen.stdout.partition(b"\n")
            assert shown == content, path
            assert int(mode_line, 8) & 0o6000 == 0, path  # no setuid or setgid bit survives
    assert_untouched(toolbox, canary)
    assert [entry for entry in flat_entries(toolbox) if ".tmp-" in entry] == []


@pytest.mark.parametrize("mode", rootfs_mode_params())
def test_a_tree_as_deep_as_the_unpacker_allows_runs_in_every_root_mode(toolbox, registry, deep_tmp_path,
                                                                       mode):
    """Layers nested exactly as deep as the unpacker accepts, with a whiteout and a file at the
    bottom of the upper one: every root mode shows the image (read-only mode flattens it
    first, without recursion) and leaves nothing half-made in the store."""
    depth = UnpackLimits().max_depth
    bottom = "d/" * (depth - 1)  # the deepest directory; names in it are `depth` levels deep
    lower = Layer((file(bottom + "f", "lower\n"), file(bottom + "kept", "kept\n")))
    upper = Layer((Entry(bottom + ".wh.f"), file(bottom + "g", "deepest\n"), directory(bottom + "e")))
    toolbox.trust(registry)
    reference, _built = publish(registry, (images.busybox_layer(), lower, upper), f"deep-{mode}")
    toolbox.pull(reference)
    result = run(toolbox, mode, reference, "sh", "-c", 'ls "$1"; cat "$1/g" "$1/kept"; test ! -e "$1/f"',
                 "sh", "/" + bottom)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout == b"e\ng\nkept\ndeepest\nkept\n"
    assert_untouched_store(toolbox)
    assert len(flat_entries(toolbox)) == (1 if mode == "read-only" else 0)
    again = run(toolbox, mode, reference, "cat", "/" + bottom + "g")  # read-only: from the kept flat tree
    assert (again.returncode, again.stdout) == (0, b"deepest\n"), again.stderr
    # The store lets go of it all, the flattened tree too.
    assert toolbox.cli("rmi", reference).returncode == 0 and toolbox.cli("prune").returncode == 0
    assert toolbox.layer_dirs() == [] and flat_entries(toolbox) == [] and toolbox.leftovers() == []


@pytest.mark.parametrize("mode", rootfs_mode_params())
def test_a_sparse_bomb_is_stored_as_holes_and_runs_in_every_root_mode(toolbox, registry, mode):
    """A layer of a few hundred bytes whose one member is a sparse file of 1 GiB (GNU's PAX
    sparse format, the map in the header): stored with its holes, not as a gigabyte of
    zeros, and shown as it is in every root mode."""
    size = 1024**3
    sparse = Entry("sparse", data=b"headend",
                   pax_headers={"GNU.sparse.map": f"0,4,{size - 3},3", "GNU.sparse.size": str(size)})
    toolbox.trust(registry)
    reference, built = publish(registry, (images.busybox_layer(), Layer((sparse,))), f"sparse-{mode}")
    assert built.layers[-1]["size"] < 1000
    toolbox.pull(reference)
    stored = os.stat(os.path.join(toolbox.layout.layer_tree(Digest.parse(built.diff_ids[-1])), "sparse"))
    assert stored.st_size == size and stored.st_blocks * 512 <= 64 * 1024, stored
    result = run(toolbox, mode, reference, "sh", "-c", "stat -c '%s %b' /sparse; head -c 4 /sparse")
    assert result.returncode == 0, result.stderr
    shown_size, blocks, head = result.stdout.split(maxsplit=2)
    assert (int(shown_size), head) == (size, b"head") and int(blocks) * 512 <= 64 * 1024
    assert_untouched_store(toolbox)
