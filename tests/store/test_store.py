import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from toolbox.errors import ConfigError, ImageNotStored, IntegrityError, StoreError
from toolbox.layout import Layout
from toolbox.oci.digest import Digest
from toolbox.store.store import ImageRecord, SpaceReserve, Store

from tests.support.trees import make_deep_tree


@pytest.fixture
def store(tmp_path):
    store = Store(Layout.under(tmp_path))
    store.prepare()
    return store


def test_put_blob_verifies_and_is_idempotent(store):
    digest = Digest.of_bytes(b"config")
    store.put_blob(digest, b"config")
    store.put_blob(digest, b"config")
    assert store.read_blob(digest) == b"config"
    with pytest.raises(IntegrityError):
        store.put_blob(Digest.of_bytes(b"other"), b"config")
    assert not store.has_blob(Digest.of_bytes(b"other"))
    assert os.listdir(os.path.dirname(store.layout.blob_path(digest))) == [digest.hex]


def test_staging_is_removed_on_error(store):
    with pytest.raises(RuntimeError):
        with store.staging("layer") as path:
            open(os.path.join(path, "f"), "w").close()
            os.chmod(path, 0o500)  # even a read-only directory is cleaned up
            raise RuntimeError("boom")
    assert os.listdir(store.layout.tmp_dir) == []


def test_commit_layer_and_gc(store):
    diff_id = Digest.of_bytes(b"layer")
    with store.staging("layer") as path:
        os.makedirs(os.path.join(path, "tree", "ro"))
        open(os.path.join(path, "tree", "ro", "f"), "w").write("x" * 10000)
        os.chmod(os.path.join(path, "tree", "ro"), 0o555)
        store.commit_layer(path, diff_id, {"files": 1})
    assert store.has_layer(diff_id)
    assert store.layer_info(diff_id)["disk_bytes"] >= 10000
    assert os.listdir(store.layout.tmp_dir) == []
    report = store.collect_garbage()  # no image references it
    assert report.layers_removed == 1 and not store.has_layer(diff_id)
    assert os.listdir(store.layout.tmp_dir) == []


def test_find_by_reference_and_digest_prefix(store):
    digest = Digest.of_bytes(b"m")
    store.put_image(ImageRecord("docker.io/library/jq:latest", digest, "linux/amd64", "now"))
    assert [r.reference for r in store.find("jq")] == ["docker.io/library/jq:latest"]
    assert store.find(digest.hex[:6])[0].digest == digest
    assert store.find(f"jq@{digest}")[0].digest == digest
    with pytest.raises(ImageNotStored) as info:
        store.get("yq")
    assert "toolbox pull yq" in info.value.hint


def abandon_staging(tmp_path):
    """A child process starts staging, then dies without cleaning up (as with SIGKILL).
    Returns the staging directory it left behind."""
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {os.getcwd()!r})
        from toolbox.layout import Layout
        from toolbox.store.store import Store
        store = Store(Layout.under({str(tmp_path)!r}))
        cm = store.staging("layer")
        path = cm.__enter__()
        open(os.path.join(path, "half"), "w").write("x")
        print(path, flush=True)
        os._exit(9)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True)
    return result.stdout.strip()


def test_abandoned_staging_of_a_dead_process_is_cleaned(store, tmp_path):
    abandon_staging(tmp_path)
    assert os.listdir(store.layout.tmp_dir)
    with store.staging("live") as live:
        assert store.clean_abandoned() == 1
        assert os.path.isdir(live)  # a live staging directory is left alone
    assert os.listdir(store.layout.tmp_dir) == []


def test_an_abandoned_tree_of_any_depth_and_modes_is_cleaned(store, deep_tmp_path):
    """A half-unpacked layer too deep for recursion, with directories the owner cannot enter,
    must not break every later pull and prune (they all clean abandoned work first)."""
    make_deep_tree(os.path.join(abandon_staging(deep_tmp_path), "tree"), strip=True)
    report = store.collect_garbage()
    assert report.temp_removed == 1
    assert os.listdir(store.layout.tmp_dir) == []


def blob_dir_entries(layout):
    return sorted(os.listdir(os.path.join(layout.blobs_dir, "sha256")))


def test_a_writer_killed_mid_write_leaves_only_what_prune_removes(toolbox):
    """The kernel kills the writer inside put_blob: SIGXFSZ, for passing its file size limit
    (Python ignores that signal unless told otherwise)."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        from toolbox.oci.digest import Digest
        from toolbox.layout import Layout
        from toolbox.store.store import Store
        store = Store(Layout.under({str(toolbox.root / "toolbox")!r}))
        store.put_blob(Digest.of_bytes(b"small"), b"small")
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        data = b"blob" * 25_000
        store.put_blob(Digest.of_bytes(data), data)
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert child.returncode == -signal.SIGXFSZ, child.stderr
    assert blob_dir_entries(toolbox.layout) == [Digest.of_bytes(b"small").hex]  # no temp file beside it
    assert len(toolbox.leftovers()) == 2  # the staging directory and its lock file
    prune = toolbox.cli("prune")
    assert prune.returncode == 0 and "1 leftover;" in prune.stdout, prune.stderr
    assert toolbox.leftovers() == []


def test_a_live_writer_keeps_its_temp_file_through_a_prune(toolbox):
    store = toolbox.store
    digest = Digest.of_bytes(b"first half, second half")
    with store.new_file(store.layout.blob_path(digest)) as file:
        file.write(b"first half, ")
        file.flush()
        prune = toolbox.cli("prune")
        assert prune.returncode == 0 and "0 leftovers" in prune.stdout, prune.stderr
        file.write(b"second half")
    assert store.read_blob(digest) == b"first half, second half"
    assert blob_dir_entries(toolbox.layout) == [digest.hex] and toolbox.leftovers() == []


def test_records_survive_garbage(store):
    os.makedirs(store.layout.images_dir, exist_ok=True)
    with open(os.path.join(store.layout.images_dir, "broken"), "w") as f:
        f.write("{")
    assert store.records() == []
    json.dumps([r.to_json() for r in store.records()])


def test_prune_sweeps_what_a_killed_toolbox_rm_left(toolbox):
    from toolbox.ops.images import prune

    containers = os.path.join(toolbox.layout.data_dir, "containers")
    dead = os.path.join(containers, ".removing-old-999999999", "upper", "deep")
    live = os.path.join(containers, f".removing-busy-{os.getpid()}", "upper")
    os.makedirs(dead)
    os.makedirs(live)
    os.chmod(os.path.dirname(dead), 0o500)  # as overlayfs leaves some: remove_tree copes
    prune(toolbox.store)
    assert sorted(os.listdir(containers)) == [f".removing-busy-{os.getpid()}"]  # its remover still runs


def free_bytes(path):
    statvfs = os.statvfs(path)
    return statvfs.f_bavail * statvfs.f_frsize


def test_the_free_space_reserve(tmp_path):
    statvfs = os.statvfs(tmp_path)
    size = statvfs.f_blocks * statvfs.f_frsize
    assert SpaceReserve().bytes_on(statvfs) == min(1024**3, size * 5 // 100)
    assert SpaceReserve.from_env({}) == SpaceReserve()
    assert SpaceReserve.from_env({"TOOLBOX_MIN_FREE_BYTES": "0"}).bytes_on(statvfs) == 0
    assert SpaceReserve.from_env({"TOOLBOX_MIN_FREE_BYTES": " 4096 "}).bytes_on(statvfs) == 4096
    for bad in ("1G", "-1", "lots"):
        with pytest.raises(ConfigError, match="TOOLBOX_MIN_FREE_BYTES"):
            SpaceReserve.from_env({"TOOLBOX_MIN_FREE_BYTES": bad})


def test_a_blob_that_would_eat_into_the_reserve_is_refused_before_it_is_written(tmp_path):
    store = Store(Layout.under(tmp_path), reserve=SpaceReserve(free_bytes(tmp_path) + 1024**3))
    store.prepare()
    digest = Digest.of_bytes(b"config")
    refused = ("not enough free space to store blob [0-9a-f]{12}: [0-9.]+ (GiB|MiB|bytes) free "
               "on the filesystem of the store")
    with pytest.raises(StoreError, match=refused) as info:
        store.put_blob(digest, b"config")
    assert "TOOLBOX_MIN_FREE_BYTES" in info.value.hint and "0 turns it off" in info.value.hint
    assert not store.has_blob(digest) and os.listdir(store.layout.tmp_dir) == []
    Store(Layout.under(tmp_path), reserve=SpaceReserve(0)).put_blob(digest, b"config")
    assert store.has_blob(digest)


def test_the_watch_looks_at_the_free_space_as_a_layer_grows(tmp_path):
    """Every MiB of data or 256 members: a layer is stopped once it reaches the reserve."""
    store = Store(Layout.under(tmp_path), reserve=SpaceReserve(0))
    on_write = store.free_space_watch("unpack layer x")
    for _ in range(300):
        on_write(0)
    on_write(4 * 1024**2)
    store.reserve = SpaceReserve(free_bytes(tmp_path) + 1024**3)
    for _ in range(255):
        on_write(0)
    with pytest.raises(StoreError, match="to unpack layer x"):
        on_write(0)
    with pytest.raises(StoreError, match="to unpack layer x"):
        on_write(1024**2)
    on_write(1024**2 - 1)  # not yet looked at again


def test_an_abandoned_flattening_of_any_depth_is_removed_by_prune_and_a_live_one_kept(store, deep_tmp_path):
    """Read-only root mode flattens an image into flat/KEY.tmp-PID: a maker killed midway
    leaves it behind (a failed one removes it itself), and prune removes it once the PID is
    gone, however deep it is."""
    flat = store.layout.flat_dir
    os.makedirs(flat)
    make_deep_tree(os.path.join(flat, "a" * 64 + ".tmp-999999999"), strip=True)
    live = os.path.join(flat, "b" * 64 + f".tmp-{os.getpid()}")
    os.makedirs(os.path.join(live, "tree"))
    store.collect_garbage()
    assert os.listdir(flat) == [os.path.basename(live)]
