"""What the benchmarks share: a loopback registry serving their image, and a toolbox of their own
that trusts it and has pulled the image."""

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.push import push_raw  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402


@dataclass(frozen=True)
class Setup:
    workdir: Path  # scratch space, removed afterwards
    registry: RegistryServer
    reference: str  # the image, as the toolbox pulled it
    toolbox: list  # the command: the toolbox on PATH (as scripts/install makes it), else python -m toolbox
    env: dict  # its environment: TOOLBOX_HOME under workdir
    home: Path  # that TOOLBOX_HOME


@contextmanager
def bench_setup(name, repository, tag, built):
    """A Setup serving `built` (tests.support.images) as REPOSITORY:TAG, pulled; all of it
    removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"toolbox-{name}-"))
    try:
        with RegistryServer(workdir / "registry", "plain") as registry:
            push_raw(registry, repository, tag, built)
            reference = f"{registry.host}/{repository}:{tag}"
            home = workdir / "toolbox"
            (home / "config").mkdir(parents=True)
            (home / "config" / "config.toml").write_text(registry.toolbox_config_toml())
            env = dict(os.environ, TOOLBOX_HOME=str(home), PYTHONPATH=str(REPO))
            on_path = shutil.which("toolbox")
            toolbox = [on_path] if on_path else [sys.executable, "-m", "toolbox"]
            subprocess.run(toolbox + ["pull", "-q", reference], env=env, check=True, capture_output=True)
            yield Setup(workdir, registry, reference, toolbox, env, home)
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(workdir)], capture_output=True)  # layers' read-only dirs
        shutil.rmtree(workdir, ignore_errors=True)
