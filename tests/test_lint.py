"""The lint configuration in pyproject.toml ([tool.ruff]: pyflakes, sorted imports, lines of at
most 110 characters) holds for the package, the tests and the benchmarks."""

import subprocess
import sys

from tests.support.installation import REPO


def test_ruff_finds_nothing():
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "toolbox", "tests", "bench"]
    checked = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-2000:]
