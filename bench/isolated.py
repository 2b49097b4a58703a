"""What the benchmarks share: a toolbox of their own, trusting their loopback registry."""

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def isolated_toolbox(workdir, registry):
    """(the toolbox command: the one on PATH, as scripts/install makes it, else `python -m
    toolbox`; an environment whose TOOLBOX_HOME is under `workdir`, trusting `registry`; that
    home)."""
    home = Path(workdir) / "toolbox"
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text(registry.toolbox_config_toml())
    env = dict(os.environ, TOOLBOX_HOME=str(home), PYTHONPATH=str(REPO))
    toolbox = [shutil.which("toolbox")] if shutil.which("toolbox") else [sys.executable, "-m", "toolbox"]
    return toolbox, env, home
