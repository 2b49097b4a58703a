"""The hot tier's promise (STYLE.md): `toolbox run` and a shim import light standard modules,
toolbox's own hot modules and the cffi backend, nothing else (tests/support/hotpath.py).

The module report is written just before the runtime starts, so these tests hold on every host:
where the container cannot start (no user namespaces) the run ends in 125 after the report."""

import os
import subprocess
import sys

import _cffi_backend
import pytest

from toolbox.ops import bundle
from toolbox.ops.shimgen import launcher_text

from tests.support.host import userns_available
from tests.support.hotpath import (
    FORBIDDEN,
    LIGHT,
    cold_modules,
    heavy_modules,
    interpreter_baseline,
    read_loaders,
    read_report,
)
from tests.support.installation import REPO
from tests.support.projects import Projects

REPORT = "TOOLBOX_REPORT_MODULES"


def expected_status():
    """A run of `true`: 0 where the container starts (user namespaces, then overlayfs,
    fuse-overlayfs or a read-only root), 125 where the namespaces are refused."""
    return 0 if userns_available() else 125


def test_modules_are_judged_by_top_level_package():
    assert not FORBIDDEN & LIGHT
    assert heavy_modules({"typer.core", "json.decoder", "toolbox.hot.launch", "os.path", "_cffi_backend",
                          "some_new_package.x"}) == [
        "json.decoder", "some_new_package.x", "typer.core"]
    # the interpreter's own
    assert heavy_modules({"re", "re._parser", "toolbox.hot.launch"}, baseline={"re", "re._parser"}) == []
    assert cold_modules({"toolbox.store.store", "toolbox.oci.registry", "toolbox.ops", "toolbox.hot.launch",
                         "toolbox.runtime.container", "toolbox.errors", "toolbox",
                         "tomllib"}) == ["toolbox.oci.registry", "toolbox.ops", "toolbox.store.store"]
    assert cold_modules({"toolbox.ops.prepare", "toolbox.cli.app", "toolbox.project.recipes"}) == [
        "toolbox.cli.app", "toolbox.ops.prepare", "toolbox.project.recipes"]


def launcher(tmp_path):
    """The `toolbox` command as scripts/install writes it, importing from this checkout."""
    (tmp_path / "bin").mkdir()
    path = tmp_path / "bin" / "toolbox"
    path.write_text(launcher_text(sys.executable, str(REPO), os.path.dirname(_cffi_backend.__file__)))
    path.chmod(0o755)
    return [str(path)]


def assert_loaded_from_the_bundle(loaders):
    """Every toolbox module the launch path loaded came from the launch bundle (ops/bundle.py)."""
    assert bundle.refresh()  # current: the first call's plan miss wrote it
    imported = sorted(name for name, state in loaders.items()
                      if name.split(".")[0] == "toolbox" and state != bundle.LOADER_STATE)
    assert imported == []


@pytest.mark.parametrize("how", ["launcher", "python -m"])
def test_toolbox_run_loads_no_heavy_module(toolbox, registry, pushed_images, tmp_path, how):
    toolbox.trust(registry)
    image = pushed_images["busybox"].reference
    toolbox.pull(image)
    command = ((launcher(tmp_path) if how == "launcher" else [sys.executable, "-m", "toolbox"])
               + ["run", image, "true"])
    # writes the run plan
    first = subprocess.run(command, env=toolbox.env, cwd=toolbox.root, capture_output=True, timeout=60)
    assert first.returncode == expected_status(), first.stderr
    report = tmp_path / "modules"
    again = subprocess.run(command, env=dict(toolbox.env, **{REPORT: str(report)}), cwd=toolbox.root,
                           capture_output=True, timeout=60)
    assert again.returncode == expected_status(), again.stderr
    loaded = read_report(report)
    assert {"toolbox.hot.launch", "toolbox.runtime.container",
            "toolbox.runtime.syscalls"} <= loaded, sorted(loaded)
    assert heavy_modules(loaded, interpreter_baseline([sys.executable], toolbox.env)) == []
    assert cold_modules(loaded) == []
    if how == "launcher":
        assert_loaded_from_the_bundle(read_loaders(report))


def test_a_shim_loads_no_heavy_module(toolbox, registry, tmp_path):
    projects = Projects(toolbox, registry, tmp_path)
    # writes the tool plan and the run plan
    assert projects.shim(cwd=projects.a).returncode == expected_status()
    report = tmp_path / "modules"
    called = projects.shim(cwd=projects.a, env={REPORT: str(report)})
    assert called.returncode == expected_status(), called.stderr
    loaded = read_report(report)
    assert {"toolbox.hot.shim", "toolbox.hot.plans", "toolbox.hot.launch"} <= loaded, sorted(loaded)
    # A shim starts the interpreter with -IS (shims/shim.in): nearly nothing is loaded before it.
    assert heavy_modules(loaded, interpreter_baseline([sys.executable, "-IS"], projects.env)) == []
    assert cold_modules(loaded) == []
    assert_loaded_from_the_bundle(read_loaders(report))
