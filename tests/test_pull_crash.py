"""Interrupting and racing pulls: nothing half-done is ever visible, and the next pull completes."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import images
from tests.support.push import push_raw


@pytest.fixture(scope="module")
def big_image(registry_factory):
    """Eight layers of incompressible data (~24 MB): slow enough to interrupt mid-pull."""
    rng = random.Random(7)
    layers = tuple(
        images.Layer((images.file(f"data/{i}.bin", rng.randbytes(3 * 1024 * 1024)),), "gzip") for i in range(8)
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


def test_ctrl_c_mid_pull_exits_130_and_cleans_up(toolbox, big_image):
    server, reference, _built = big_image
    toolbox.trust(server)
    process = start_pull(toolbox, reference)
    tmp = Path(toolbox.layout.tmp_dir)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (tmp.exists() and any(p.is_dir() for p in tmp.iterdir())):
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the pull finished before the interrupt arrived")
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
