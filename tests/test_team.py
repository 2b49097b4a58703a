"""toolbox in a team: what is committed, how CI runs it, what a teammate sees. The CI recipe of
the README's "Using toolbox in a team" is run here as CI runs it: a fresh home, no terminal."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ToolboxUnderTest
from tests.support.upstream import Upstream, multiarch, tool_image
from tests.test_run import needs_userns

LINT = '[recipes.lint]\nimage = "ghcr.io/example/lint"\ndefault_version = "1"\ncommand = ["lint"]\n'


def ci(toolbox, *args, cwd, env=None):
    """A CI step: no terminal (stdin from /dev/null), CI=true, the fresh home's environment."""
    return subprocess.run([sys.executable, "-m", "toolbox", *args], env=dict(toolbox.env, CI="true", **(env or {})), cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)


@needs_userns
def test_the_readme_ci_recipe_in_a_fresh_home_without_a_terminal(tmp_path, registry):
    lead = ToolboxUnderTest(tmp_path / "lead")
    upstream = Upstream(lead, registry)
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-1.7.1"))
    upstream.publish("ghcr.io/example/lint", "1", tool_image("lint-1", "/usr/local/bin/lint"))
    project = tmp_path / "checkout"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\nlint = "1"\n\n' + LINT)
    assert ci(lead, "trust", cwd=project).returncode == 0
    locked = subprocess.run([sys.executable, "-m", "toolbox", "lock"], env=lead.env, cwd=project, capture_output=True, text=True, timeout=120)
    assert locked.returncode == 0, locked.stderr

    def fresh_ci_machine(name):
        machine = ToolboxUnderTest(tmp_path / name)
        os.makedirs(machine.layout.config_dir, exist_ok=True)
        shutil.copy(lead.layout.config_file, machine.layout.config_file)  # the registry's address, as a CI secret would give it
        return machine

    # The recipe, step by step: trust the checkout explicitly, sync frozen, run the tools.
    first = fresh_ci_machine("ci-1")
    untrusted = ci(first, "sync", "--frozen", cwd=project)
    assert untrusted.returncode == 125 and f"TOOLBOX_TRUSTED_PROJECTS={project}" in untrusted.stderr
    trusted = {"TOOLBOX_TRUSTED_PROJECTS": str(project)}
    synced = ci(first, "sync", "--frozen", cwd=project, env=trusted)
    assert synced.returncode == 0 and "Pulling" in synced.stderr, synced.stderr
    assert ci(first, "run", "jq", "x", cwd=project, env=trusted).stdout == "jq-1.7.1 tool:x\n"
    assert ci(first, "run", "lint", "y", cwd=project, env=trusted).stdout == "lint-1 lint:y\n"
    # The cache: the store, keyed by the lock's hash, restored on the next machine: nothing is pulled.
    key = hashlib.sha256((project / "toolbox.lock").read_bytes()).hexdigest()[:16]
    cache = tmp_path / f"ci-cache-{key}"
    shutil.copytree(first.layout.cache_dir, cache, symlinks=True)
    second = fresh_ci_machine("ci-2")
    shutil.copytree(cache, second.layout.cache_dir, symlinks=True)
    again = ci(second, "sync", "--frozen", cwd=project, env=trusted)
    assert again.returncode == 0 and "Pulling" not in again.stderr, again.stderr
    assert ci(second, "run", "jq", cwd=project, env=trusted).stdout == "jq-1.7.1 tool:\n"
    assert ci(second, "check", cwd=project).returncode == 0  # a restored store is whole
    # A pin changed without a new lock: CI fails with what to do, and writes nothing.
    (project / "toolbox.toml").write_text('[tools]\njq = "1.6"\nlint = "1"\n\n' + LINT)
    stale = ci(second, "sync", "--frozen", cwd=project, env=trusted)
    assert stale.returncode == 125 and "does not match" in stale.stderr and "toolbox lock" in stale.stderr
    assert hashlib.sha256((project / "toolbox.lock").read_bytes()).hexdigest()[:16] == key
