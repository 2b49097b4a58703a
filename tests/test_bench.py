"""bench/ stays runnable as the package and the tests move (the benchmarks themselves are not
run here: speed is measured by them, not by timed tests)."""

import subprocess
import sys

from tests.support.installation import REPO


def test_the_fuzz_run_names_tests_that_exist():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from fuzz import TARGETS
    finally:
        sys.path.remove(str(REPO / "bench"))
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                                "no:cacheprovider", *TARGETS],
                               cwd=REPO, capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    assert "no tests collected" not in collected.stdout


def test_every_benchmark_starts():
    """Each bench/ script imports what it needs from where the package and tests are now."""
    for script in ("run_bench.py", "pull_bench.py", "service_bench.py"):
        shown = subprocess.run([sys.executable, str(REPO / "bench" / script), "--help"], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0 and "usage:" in shown.stdout, (script, shown.stderr[-2000:])
