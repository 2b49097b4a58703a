#!/usr/bin/env python3
"""The long fuzzing run: the suite's property tests (image references, WWW-Authenticate,
recipes, toolbox.toml edits, toolbox.lock, the layer unpacker) with thousands of examples each
instead of ~150 (HYPOTHESIS_PROFILE=long). Takes several minutes; run it as an ordinary user:

    python3 bench/fuzz.py [pytest args]
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = ["tests/project/test_fuzz_config.py", "tests/oci/test_reference.py", "tests/oci/test_auth.py",
           "tests/store/test_unpack.py::test_fuzzed_layers_never_escape"]

if __name__ == "__main__":
    env = dict(os.environ, HYPOTHESIS_PROFILE="long", PYTHONPATH=str(REPO))
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TARGETS,
                              *sys.argv[1:]], cwd=REPO, env=env))
