import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.host import CI, HostFeatureMissing

pytest_plugins = ["tests.support.fixtures"]

REPO = Path(__file__).resolve().parent.parent

# Property tests: a short run in the suite; bench/fuzz.py sets HYPOTHESIS_PROFILE=long.
settings.register_profile("short", max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("long", max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "short"))


# -- under CI=true a skip is a failure, unless a host feature CI may lack is missing -------------
# A test that skips has tested nothing: on CI, where everything the suite needs is installed, a
# skip means a broken setup. The exception is declared in the test, with the reason
# (tests/support/host.py: lacks_host_feature, or the host_feature marker).
def pytest_configure(config):
    config.addinivalue_line("markers", "host_feature(present, reason): skip unless present; a host feature CI may lack")


def pytest_report_header(config):
    if CI:
        return "CI=true: a skipped test fails, unless it lacks a host feature CI may lack"
    return None


def pytest_runtest_setup(item):
    for mark in item.iter_markers("host_feature"):
        if not mark.kwargs["present"]:
            raise HostFeatureMissing(mark.kwargs["reason"])


def _fail_skip_under_ci(report, excinfo):
    if not (CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    if excinfo is not None and excinfo.errisinstance(HostFeatureMissing):
        return
    reason = report.longrepr[2].removeprefix("Skipped: ") if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, where only a host feature CI may lack may skip (tests/support/host.py): {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _fail_skip_under_ci(report, call.excinfo)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield  # a module that skips as a whole (pytest.skip(allow_module_level=True)) fails
    _fail_skip_under_ci(report, None)
    return report


class RecordingProgress:
    """Keeps what a pull reported, to tell which layers it really downloaded."""

    def __init__(self):
        self.layers = []
        self.downloaded = []

    def resolved(self, reference, digest, platform, layers):
        self.layers = list(layers)

    def layer_advanced(self, layer, done_bytes):
        pass

    def layer_done(self, layer, stats):
        if stats is not None:
            self.downloaded.append(layer.diff_id)


class ToolboxUnderTest:
    """One isolated toolbox installation: its own store, config and credentials files."""

    def __init__(self, root):
        self.root = Path(root)
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        (self.root / "run").mkdir(mode=0o700, exist_ok=True)
        self.env = {
            "HOME": str(self.home),
            "TOOLBOX_HOME": str(self.root / "toolbox"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TOOLBOX_RETRIES": "2",
            "TOOLBOX_RETRY_BACKOFF": "0.05",
            "PYTHONPATH": str(REPO),
        }
        from toolbox.layout import Layout

        self.layout = Layout.from_env(self.env)

    def trust(self, *registries):
        """Let toolbox reach these test registries (insecure HTTP, or their CA)."""
        path = Path(self.layout.config_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as config:
            for server in registries:
                config.write(server.toolbox_config_toml())

    def services(self):
        from toolbox.ops.wiring import load_services

        return load_services(self.layout, self.env)

    @property
    def store(self):
        return self.services().store

    def pull(self, reference, platform=None, progress=None):
        from toolbox.oci.platform import Platform
        from toolbox.ops.pull import PullOptions, pull_image
        from toolbox.oci.reference import ImageRef

        services = self.services()
        client = services.registry_client()
        try:
            options = PullOptions(platform=Platform.parse(platform) if platform else None)
            return pull_image(ImageRef.parse(reference), store=services.store, client=client, options=options, progress=progress)
        finally:
            client.close()

    def cli(self, *args, input=None, timeout=120):
        return subprocess.run(
            [sys.executable, "-m", "toolbox", *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def leftovers(self):
        """Temp entries still in the store (there must be none once toolbox is done)."""
        tmp = Path(self.layout.tmp_dir)
        return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []

    def layer_dirs(self):
        root = Path(self.layout.layers_dir) / "sha256"
        return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture
def toolbox(tmp_path):
    return ToolboxUnderTest(tmp_path)


@pytest.fixture
def deep_tmp_path(tmp_path):
    """tmp_path for trees deeper than the recursion limit: removed without recursion afterwards,
    whatever the test did."""
    from tests.support.trees import remove_with_coreutils

    yield tmp_path
    remove_with_coreutils(tmp_path)


@pytest.fixture
def recorder():
    return RecordingProgress()
