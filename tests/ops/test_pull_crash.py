"""Interrupting and racing pulls: nothing half-done is ever visible, and the next pull completes."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import images
from tests.support.faults import FaultProxy
from tests.support.host import run_on_a_small_store
from tests.support.push import push_raw


@pytest.fixture(scope="module")
def big_image(registry_factory):
    """Eight layers of incompressible data (~24 MB): slow enough to interrupt mid-pull."""
    rng = random.Random(7)
    layers = tuple(
        images.Layer((images.file(f"data/{i}.bin", rng.randbytes(3 * 1024 * 1024)),), "gzip")
        for i in range(8)
    )
    built = images.build_image(images.busybox_spec(layers=(images.busybox_layer(),) + layers))
    server = registry_factory("plain")
    push_raw(server, "big", "1", built)
    return server, f"{server.host}/big:1", built


def start_pull(toolbox, reference):
    return subprocess.Popen(
        [sys.executable, "-m", "toolbox", "pull", "--quiet", reference],
        env=toolbox.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_store_consistent(toolbox):
    """Every visible layer is complete; every record names content that is there."""
    layers = Path(toolbox.layout.layers_dir) / "sha256"
    for layer in layers.iterdir() if layers.exists() else []:
        info = json.loads((layer / "layer.json").read_text())
        assert (layer / "tree").is_dir() and info["diff_id"].endswith(layer.name)
    store = toolbox.store
    for record in store.records():
        image = store.load_image(record)
        assert store.missing_layers(image) == []


def test_sigkill_at_random_points_then_pull_completes(toolbox, big_image):
    server, reference, built = big_image
    toolbox.trust(server)
    rng = random.Random(1)
    for _ in range(6):
        process = start_pull(toolbox, reference)
        time.sleep(rng.uniform(0.05, 0.8))
        process.kill()
        process.wait()
        assert_store_consistent(toolbox)
    result = toolbox.cli("pull", "--quiet", reference)
    assert result.returncode == 0, result.stderr
    assert toolbox.leftovers() == []  # the abandoned temp trees were cleaned by that pull
    assert len(toolbox.layer_dirs()) == len(built.diff_ids)
    assert_store_consistent(toolbox)


def interrupt_when_unpacking(toolbox, process, timeout=20):
    """SIGINT to the pull once a layer's temp tree is there (or after `timeout`)."""
    tmp = Path(toolbox.layout.tmp_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (tmp.exists() and any(p.is_dir() for p in tmp.iterdir())):
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=60)


def test_ctrl_c_mid_pull_exits_130_and_cleans_up(toolbox, big_image):
    """First at the pull's own pace; if it finished before the interrupt arrived, again through a
    proxy that sends each data layer's first MiB and then stalls, so the interrupt lands mid-pull."""
    from toolbox.ops.images import prune, remove_images

    server, reference, built = big_image
    toolbox.trust(server)
    with FaultProxy(server.url) as proxy:
        toolbox.trust(proxy)
        data_layers = "|".join(layer["digest"] for layer in built.layers[1:])
        for attempt in range(3):
            if attempt:  # the last pull won the race: from an empty store, slowed down
                store = toolbox.store
                remove_images(store, [record.reference for record in store.records()])
                prune(store)
                assert toolbox.layer_dirs() == [] and toolbox.leftovers() == []
                proxy.add(rf"/blobs/({data_layers})$", "stall_after", after=1024 * 1024, seconds=2, times=100)
            process = start_pull(toolbox, reference if attempt == 0 else f"{proxy.host}/big:1")
            _out, err = interrupt_when_unpacking(toolbox, process)
            if process.returncode != 0:
                break
        else:
            pytest.fail("every pull finished before its interrupt arrived, even through the stalling proxy")
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert toolbox.leftovers() == []
    assert toolbox.store.records() == []
    assert_store_consistent(toolbox)


def test_concurrent_pulls_of_one_image(toolbox, big_image):
    server, reference, built = big_image
    toolbox.trust(server)
    processes = [start_pull(toolbox, reference) for _ in range(4)]
    for process in processes:
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    assert len(toolbox.layer_dirs()) == len(built.diff_ids)
    assert toolbox.leftovers() == []
    assert_store_consistent(toolbox)
    (record,) = toolbox.store.records()
    assert record.reference == reference


def test_prune_during_a_pull_never_breaks_it(toolbox, big_image):
    server, reference, built = big_image
    toolbox.trust(server)
    process = start_pull(toolbox, reference)
    time.sleep(0.2)
    prune = toolbox.cli("prune")
    assert prune.returncode == 0, prune.stderr
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert_store_consistent(toolbox)
    assert len(toolbox.layer_dirs()) == len(built.diff_ids)


def check(toolbox):
    from toolbox.store.check import check_store

    return check_store(toolbox.store)


def test_sigkill_at_20_points_of_pull_unpack_and_prune_leaves_a_clean_store(toolbox, big_image):
    """Rounds go on until 20 processes were killed mid-work (a round whose process finished
    first does not count), each followed by a check that must find the store clean."""
    from toolbox.ops.images import prune, remove_images

    server, reference, built = big_image
    toolbox.trust(server)
    rng = random.Random(20)
    kills = rounds = 0
    while kills < 20:
        rounds += 1
        assert rounds <= 80, f"only {kills} kills mid-work in 80 rounds"
        store = toolbox.store
        stored = any(True for _ in store.records())
        if rounds % 3 == 0:  # prune, killed while it removes the image's layers
            if not stored:
                toolbox.pull(reference)
            remove_images(store, [reference])
            process = subprocess.Popen([sys.executable, "-m", "toolbox", "prune"], env=toolbox.env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.05, 0.25))
        else:  # pull: download, verify and unpack, from a store without the image
            if stored:
                remove_images(store, [reference])
                prune(store)
            process = start_pull(toolbox, reference)
            wait_for_work(toolbox, process)
            time.sleep(rng.uniform(0, 0.3))
        kills += process.poll() is None
        process.kill()
        process.wait()
        report = check(toolbox)
        assert report.clean, report.to_json()
        assert_store_consistent(toolbox)
    result = toolbox.cli("pull", "--quiet", reference)
    assert result.returncode == 0, result.stderr
    report = check(toolbox)
    assert report.clean and report.layers_checked == len(built.diff_ids), report.to_json()
    assert toolbox.leftovers() == []


def wait_for_work(toolbox, process, timeout=20):
    """Until the pull has a temp entry in the store (it is fetching or unpacking), or ends."""
    tmp = Path(toolbox.layout.tmp_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if tmp.exists() and any(tmp.iterdir()):
            return
        time.sleep(0.005)


def test_check_removes_damage_and_names_the_images_to_pull_again(toolbox, big_image):
    server, reference, built = big_image
    toolbox.trust(server)
    assert toolbox.cli("pull", "--quiet", reference).returncode == 0
    store = toolbox.store
    record = store.get(reference)
    config_path = Path(toolbox.layout.blob_path(store.load_image(record).config_digest))
    damaged_layer = Path(toolbox.layout.layers_dir) / "sha256" / toolbox.layer_dirs()[0] / "tree"
    victim = next(p for p in damaged_layer.rglob("*") if p.is_file())
    victim.chmod(0o644)
    victim.unlink()  # a file lost from a layer tree (a disk error, a stray rm)
    config_path.chmod(0o644)
    config_path.write_bytes(config_path.read_bytes().replace(b"{", b" {", 1))  # a blob with other bytes
    result = toolbox.cli("check", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert not report["clean"] and report["incomplete_images"] == [record.reference], report
    assert any("does not match its digest" in line for line in report["removed"])
    assert any("names and" in line and "when it was unpacked" in line for line in report["removed"])
    assert toolbox.cli("pull", "--quiet", reference).returncode == 0  # repairs what was removed
    again = json.loads(toolbox.cli("check", "--json").stdout)
    assert again["clean"] and again["layers_checked"] == len(built.diff_ids), again
    assert "The store is clean" in toolbox.cli("check").stdout


@pytest.mark.needs_userns
def test_a_full_disk_is_a_clear_error_and_the_store_recovers(toolbox, big_image):
    """The store on a 48 MiB tmpfs (mounted in a user namespace of the test's own), all but
    3 MiB of it taken by a ballast file: the ~24 MB pull runs out of space, says so, leaves
    nothing half-written, and succeeds once the ballast is deleted."""
    server, reference, built = big_image
    toolbox.trust(server)
    toolbox.env["TOOLBOX_MIN_FREE_BYTES"] = "0"  # the disk itself runs out, not the reserve
    cache = toolbox.layout.cache_dir
    os.makedirs(cache, exist_ok=True)
    toolbox_cmd = f"{sys.executable} -m toolbox"
    script = (f"head -c 45m /dev/zero > {cache}/ballast\n"
              f"{toolbox_cmd} pull --quiet {reference}; echo first=$?\n"
              f"{toolbox_cmd} check --json > {cache}/../check.json; echo check=$?\n"
              f"rm {cache}/ballast\n"
              f"{toolbox_cmd} pull --quiet {reference}; echo second=$?\n"
              f"{toolbox_cmd} check --json > {cache}/../check-after.json\n")
    result = run_on_a_small_store(toolbox, script)
    assert "first=125" in result.stdout and "second=0" in result.stdout, (result.stdout, result.stderr)
    assert "no space left" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    first_check = json.loads(Path(cache, "..", "check.json").read_text())
    # nothing half-done was visible
    assert first_check["clean"] and first_check["images_checked"] == 0, first_check
    after = json.loads(Path(cache, "..", "check-after.json").read_text())
    assert after["clean"] and after["layers_checked"] == len(built.diff_ids), after


@pytest.mark.needs_userns
def test_a_layer_that_would_eat_into_the_free_space_reserve_is_stopped_before_the_disk_fills(toolbox,
                                                                                             registry):
    """The store on a 48 MiB tmpfs with a reserve of 16 MiB, and a layer of 40 MiB of zeros
    (a 40 kB blob: its size says nothing of what it unpacks to): the pull stops when the free
    space reaches the reserve, not when the disk is full, says how much is free and how to
    lower the reserve, and leaves nothing behind. Without the reserve the same layer fits."""
    toolbox.trust(registry)
    bomb = images.Layer((images.file("zeros", bytes(40 * 1024 * 1024)),))
    built = images.build_image(images.busybox_spec(layers=(images.busybox_layer(), bomb),
                                                   labels={"org.example.scenario": "reserve"}))
    assert len(built.blobs[built.layers[-1]["digest"]]) < 100_000
    push_raw(registry, "reserve", "1", built)
    reference = f"{registry.host}/reserve:1"
    cache, outside = toolbox.layout.cache_dir, toolbox.root
    os.makedirs(cache, exist_ok=True)
    toolbox_cmd = f"{sys.executable} -m toolbox"
    free = f"{sys.executable} -c 'import os; v = os.statvfs(\"{cache}\"); print(v.f_bavail * v.f_frsize)'"
    script = (f"TOOLBOX_MIN_FREE_BYTES={16 * 1024 * 1024} {toolbox_cmd} pull --quiet {reference}; echo "
              "first=$?\n"
              f"{toolbox_cmd} check --json > {outside}/check.json\n"
              f"ls -A {toolbox.layout.tmp_dir} > {outside}/leftovers.txt\n"
              f"{free} > {outside}/free.txt\n"
              f"TOOLBOX_MIN_FREE_BYTES=0 {toolbox_cmd} pull --quiet {reference}; echo second=$?\n"
              f"{toolbox_cmd} check --json > {outside}/check-after.json\n")
    result = run_on_a_small_store(toolbox, script)
    assert "first=125" in result.stdout and "second=0" in result.stdout, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "no space left" not in result.stderr.lower(), result.stderr
    message = re.search(r"not enough free space to unpack layer \S+ of \S+: ([0-9.]+) MiB free on the "
                        r"filesystem of the store "
                        r"\(.+\), and toolbox leaves 16\.0 MiB free there", result.stderr)
    assert message, result.stderr
    assert 8 <= float(message.group(1)) < 16  # stopped near the reserve, far from a full disk
    assert "TOOLBOX_MIN_FREE_BYTES=BYTES (now 16777216; 0 turns it off)" in result.stderr
    first_check = json.loads(Path(outside, "check.json").read_text())
    assert first_check["clean"] and first_check["images_checked"] == 0, first_check
    assert Path(outside, "leftovers.txt").read_text() == ""
    assert int(Path(outside, "free.txt").read_text()) > 40 * 1024 * 1024  # the half-unpacked layer is gone
    after = json.loads(Path(outside, "check-after.json").read_text())
    assert after["clean"] and after["layers_checked"] == 2, after
