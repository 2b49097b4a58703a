"""scripts/install as a user would run it: a venv in the data directory, the `python3 -IS`
launcher in ~/.local/bin, the recipes inside the package; then the installed launcher and a shim
it writes run as they must (no site module, nothing imported after pivot_root)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.host import userns_overlay_works

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_scripts_install_then_the_launcher_and_a_shim_work(tmp_path, toolbox, registry, pushed_images):
    if shutil.which("python3") is None:
        pytest.skip("no python3 on PATH")
    home = tmp_path / "user-home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "TOOLBOX_HOME": str(toolbox.root / "toolbox")}
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "HTTPS_PROXY", "https_proxy"):
        if key in os.environ:
            env[key] = os.environ[key]
    installed = subprocess.run([str(REPO / "scripts" / "install")], env=env, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    launcher = home / ".local" / "bin" / "toolbox"
    first_line = launcher.read_text().splitlines()[0]
    assert first_line.startswith("#!") and first_line.endswith(" -IS"), first_line
    assert "toolbox 0.1.0" in installed.stdout
    recipes = subprocess.run([str(launcher), "recipes", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert recipes.returncode == 0 and "ghcr.io/jqlang/jq" in recipes.stdout, recipes.stderr  # packaged recipes
    toolbox.trust(registry)
    image = pushed_images["busybox"].reference
    if userns_overlay_works():
        ran = subprocess.run([str(launcher), "run", image, "sh", "-c", "echo from-the-image"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0 and ran.stdout == "from-the-image\n", ran.stderr
    # A shim written by the installed toolbox: its interpreter and import path, outside any pin.
    assert subprocess.run([str(launcher), "shim", "install", "jq"], env=env, capture_output=True, timeout=60).returncode == 0
    host_bin = tmp_path / "host-bin"
    host_bin.mkdir()
    (host_bin / "jq").write_text('#!/bin/sh\necho "host jq $*"\n')
    (host_bin / "jq").chmod(0o755)
    shim = Path(toolbox.layout.shims_dir) / "jq"
    fell = subprocess.run([str(shim), "x"], env=dict(env, PATH=f"{shim.parent}:{host_bin}:/usr/bin:/bin"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert fell.stdout == "host jq x\n", fell.stderr
    assert sys.executable not in shim.read_text()  # the installed venv's python, not the test's
