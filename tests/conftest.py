import os

import pytest
from hypothesis import HealthCheck, settings

from tests.support.host import CI, HostFeatureMissing
from tests.support.installation import RecordingProgress, ToolboxUnderTest

pytest_plugins = ["tests.support.markers", "tests.support.fixtures"]

# Property tests: a short run in the suite; bench/fuzz.py sets HYPOTHESIS_PROFILE=long.
settings.register_profile("short", max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("long", max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "short"))


# -- under CI=true a skip is a failure, unless a host feature CI may lack is missing -------------
# A test that skips has tested nothing: on CI, where everything the suite needs is installed, a
# skip means a broken setup. The exception is declared in the test, with the reason
# (tests/support/host.py: lacks_host_feature; tests/support/markers.py: needs_cgroup2, host_feature).
def pytest_report_header(config):
    if CI:
        return "CI=true: a skipped test fails, unless it lacks a host feature CI may lack"
    return None


def _fail_skip_under_ci(report, excinfo):
    if not (CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    if excinfo is not None and excinfo.errisinstance(HostFeatureMissing):
        return
    reason = (report.longrepr[2].removeprefix("Skipped: ") if isinstance(report.longrepr, tuple)
              else report.longrepr)
    report.outcome = "failed"
    report.longrepr = ("skipped under CI=true, where only a host feature CI may lack may skip "
                       f"(tests/support/host.py): {reason}")


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
