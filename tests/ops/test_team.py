"""toolbox in a team: what is committed, how CI runs it, what a teammate sees. The CI recipe of
the README's "Using toolbox in a team" is run here as CI runs it: a fresh home, no terminal."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.installation import REPO, ToolboxUnderTest
from tests.support.upstream import LINT, Upstream, multiarch, tool_image


def ci(toolbox, *args, cwd, env=None):
    """A CI step: no terminal (stdin from /dev/null), CI=true, the fresh home's environment."""
    return subprocess.run([sys.executable, "-m", "toolbox", *args],
                          env=dict(toolbox.env, CI="true", **(env or {})), cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.needs_userns_overlay
def test_the_readme_ci_recipe_in_a_fresh_home_without_a_terminal(tmp_path, registry):
    lead = ToolboxUnderTest(tmp_path / "lead")
    upstream = Upstream(lead, registry)
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-1.7.1"))
    upstream.publish("ghcr.io/example/lint", "1", tool_image("lint-1", "/usr/local/bin/lint"))
    project = tmp_path / "checkout"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\nlint = "1"\n\n' + LINT)
    assert ci(lead, "trust", cwd=project).returncode == 0
    locked = subprocess.run([sys.executable, "-m", "toolbox", "lock"], env=lead.env, cwd=project,
                            capture_output=True, text=True, timeout=120)
    assert locked.returncode == 0, locked.stderr

    def fresh_ci_machine(name):
        machine = ToolboxUnderTest(tmp_path / name)
        os.makedirs(machine.layout.config_dir, exist_ok=True)
        # the registry's address, as a CI secret would give it
        shutil.copy(lead.layout.config_file, machine.layout.config_file)
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


class Teammate:
    """The other local account (tests/support/other_user.py) as a teammate: its own toolbox
    home, its own clone, the same toolbox code (the suite's interpreter and checkout)."""

    def __init__(self, other_user, config_text):
        self.other = other_user
        self.root = Path(other_user.python("import tempfile; print(tempfile.mkdtemp(prefix='teammate-', "
                                           "dir='/tmp'))").strip())
        self.env = {"HOME": str(self.root / "home"), "TOOLBOX_HOME": str(self.root / "toolbox"),
                    "XDG_RUNTIME_DIR": str(self.root / "run"),
                    "PATH": f"{self.root / 'toolbox' / 'data' / 'shims'}:/usr/bin:/bin", "LANG": "C.UTF-8",
                    "PYTHONPATH": str(REPO)}
        # The lead's bare repository is another user's: git wants it declared safe (global config).
        other_user.python("import os, sys\nroot = sys.argv[1]\nfor d in ('home', 'run', 'toolbox/config'):\n"
                          "    os.makedirs(os.path.join(root, d), mode=0o700, exist_ok=True)\n"
                          "open(os.path.join(root, 'toolbox/config/config.toml'), 'w').write(sys.argv[2])\n"
                          "open(os.path.join(root, 'home/.gitconfig'), 'w').write('[safe]\\n\\tdirectory = "
                          "*\\n')", self.root, config_text)

    def run(self, *argv, cwd):
        return self.other.run(list(argv), cwd=cwd, env=self.env, timeout=180)

    def toolbox(self, *args, cwd):
        return self.run(sys.executable, "-m", "toolbox", *args, cwd=cwd)

    def cleanup(self):
        self.other.run(["rm", "-rf", str(self.root)], timeout=120)


def git(*args, cwd, env=None):
    done = subprocess.run(["git", "-c", "user.name=Lead", "-c", "user.email=lead@example.invalid", "-c",
                           "init.defaultBranch=main", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.needs_userns_overlay
@pytest.mark.needs_program("git")
def test_a_team_lead_teammate_and_ci_share_pins_without_surprises(tmp_path, registry, other_user):
    """A lead pins and commits; a teammate (another account) clones, trusts, syncs, uses shims,
    pulls an upgrade and switches branches; CI syncs in a fresh home. Digests agree everywhere,
    and every change is said."""
    import json
    import tempfile

    lead = ToolboxUnderTest(tmp_path / "lead")
    upstream = Upstream(lead, registry)
    for version in ("1.6", "1.7"):  # the same shape of version as the pin: what `outdated` compares
        upstream.publish("ghcr.io/jqlang/jq", version, multiarch(f"jq-{version}"))
    upstream.publish("ghcr.io/example/lint", "1", tool_image("lint-1", "/usr/local/bin/lint"))
    upstream.publish("docker.io/library/redis", "7.4-alpine",
                     tool_image("redis-7.4", "/usr/local/bin/redis-cli"))
    shared = Path(tempfile.mkdtemp(prefix="team-", dir="/tmp"))
    shared.chmod(0o755)
    teammate = Teammate(other_user, Path(lead.layout.config_file).read_text())
    transcript = []
    try:
        # The lead: pins, a recipe of the project's own, the lock; committed and pushed.
        work = shared / "lead-checkout"
        work.mkdir()
        (work / "toolbox.toml").write_text('[tools]\njq = "1.6"\nlint = "1"\n\n' + LINT)
        lead_env = dict(os.environ, **lead.env)
        assert ci(lead, "trust", cwd=work).returncode == 0
        assert subprocess.run([sys.executable, "-m", "toolbox", "lock"], env=lead.env, cwd=work,
                              capture_output=True).returncode == 0
        git("init", "-q", cwd=work)
        git("add", "toolbox.toml", "toolbox.lock", cwd=work)
        git("commit", "-q", "-m", "pin tools", cwd=work)
        git("clone", "-q", "--bare", str(work), str(shared / "team.git"), cwd=shared)
        git("remote", "add", "origin", str(shared / "team.git"), cwd=work)
        lead_digests = {r["tool"]: r["digest"] for r in json.loads(subprocess.run([sys.executable, "-m",
                                                                                   "toolbox", "list",
                                                                                   "--json"],
                                                                                  env=lead.env, cwd=work,
                                                                                  capture_output=True,
                                                                                  text=True).stdout)}

        # The teammate clones: the project's recipe is not trusted on their account yet.
        code, _, err = teammate.run("git", "clone", "-q", str(shared / "team.git"), "clone",
                                    cwd=teammate.root)
        assert code == 0, err
        clone = teammate.root / "clone"
        code, out, err = teammate.toolbox("sync", cwd=clone)
        transcript.append(("teammate", "git clone && toolbox sync", out + err))
        assert code == 125 and "not trusted yet" in err and "+ command lint" in err, err
        assert teammate.toolbox("trust", cwd=clone)[0] == 0
        code, out, err = teammate.toolbox("sync", cwd=clone)
        assert code == 0, err
        code, out, err = teammate.toolbox("shim", "install", "--pinned", cwd=clone)
        assert code == 0 and "jq" in out and "lint" in out, err
        listed = {r["tool"]: r["digest"]
                  for r in json.loads(teammate.toolbox("list", "--json", cwd=clone)[1])}
        assert listed == lead_digests  # the same digests as the lead's
        code, out, err = teammate.run("jq", "x", cwd=clone)  # the shim, found on PATH
        assert (code, out) == (0, "jq-1.6 tool:x\n"), err

        # CI, in a fresh home, without a terminal: the same digests.
        runner = ToolboxUnderTest(tmp_path / "ci")
        os.makedirs(runner.layout.config_dir, exist_ok=True)
        shutil.copy(lead.layout.config_file, runner.layout.config_file)
        synced = ci(runner, "sync", "--frozen", cwd=work, env={"TOOLBOX_TRUSTED_PROJECTS": str(work)})
        transcript.append(("ci", "CI=true TOOLBOX_TRUSTED_PROJECTS=$PWD toolbox sync --frozen",
                           synced.stdout + synced.stderr))
        assert synced.returncode == 0, synced.stderr
        assert {r["tool"]: r["digest"]
                for r in json.loads(ci(runner, "list", "--json", cwd=work).stdout)} == lead_digests

        # The lead sees jq 1.7.1 is out, upgrades it and pins redis-cli: lock says only what changed.
        outdated = subprocess.run([sys.executable, "-m", "toolbox", "outdated"], env=lead.env, cwd=work,
                                  capture_output=True, text=True)
        transcript.append(("lead", "toolbox outdated", outdated.stdout + outdated.stderr))
        assert "jq: 1.7 is out" in outdated.stdout, outdated.stdout + outdated.stderr
        (work / "toolbox.toml").write_text('[tools]\njq = "1.7"\nlint = "1"\nredis-cli = "7.4"\n\n' + LINT)
        relocked = subprocess.run([sys.executable, "-m", "toolbox", "lock"], env=lead.env, cwd=work,
                                  capture_output=True, text=True)
        transcript.append(("lead", "toolbox lock", relocked.stdout + relocked.stderr))
        assert (relocked.returncode == 0 and "jq 1.6 → 1.7" in relocked.stdout
                and "redis-cli added" in relocked.stdout)
        assert "lint" not in relocked.stdout  # unchanged: not printed
        git("commit", "-q", "-am", "jq 1.7, redis-cli", cwd=work)
        git("push", "-q", "origin", "HEAD:main", cwd=work, env=lead_env)
        assert teammate.run("git", "pull", "-q", cwd=clone)[0] == 0
        code, out, err = teammate.toolbox("sync", cwd=clone)
        transcript.append(("teammate", "git pull && toolbox sync", out + err))
        assert code == 0 and "Installed shims for redis-cli" in out, (out, err)
        code, out, err = teammate.run("redis-cli", "ping", cwd=clone)
        assert out == "redis-7.4 redis-cli:ping\n", err
        code, out, err = teammate.run("jq", cwd=clone)
        transcript.append(("teammate", "jq", out + err))
        # a teammate's upgrade is no surprise
        assert out == "jq-1.7 tool:\n" and "jq is now 1.7 (was 1.6)" in err, err

        # A branch with the old pin: checking it out switches the shim at once.
        git("checkout", "-q", "-b", "old", "HEAD~1", cwd=work)
        git("push", "-q", "origin", "old", cwd=work, env=lead_env)
        assert teammate.run("git", "fetch", "-q", cwd=clone)[0] == 0
        assert teammate.run("git", "checkout", "-q", "old", cwd=clone)[0] == 0
        code, out, err = teammate.run("jq", cwd=clone)
        assert out == "jq-1.6 tool:\n", err
        transcript.append(("teammate", "git checkout old && jq", out + err))
        # not pinned on this branch: said, not silent
        code, out, err = teammate.run("redis-cli", "ping", cwd=clone)
        transcript.append(("teammate", "redis-cli ping", out + err))
        assert code == 127 and "redis-cli is not pinned here" in err, err

        # The lead widens the recipe's grants: the teammate is asked again, seeing exactly what is new.
        git("checkout", "-q", "main", cwd=work)
        (work / "toolbox.toml").write_text((work / "toolbox.toml").read_text().replace(
            'command = ["lint"]\n', 'command = ["lint"]\nmounts = [{ source = "~/.ssh", target = "~/.ssh" '
                                    '}]\n'))
        git("commit", "-q", "-am", "lint reads ssh keys", cwd=work)
        git("push", "-q", "origin", "HEAD:main", cwd=work, env=lead_env)
        assert teammate.run("git", "checkout", "-q", "main", cwd=clone)[0] == 0
        assert teammate.run("git", "pull", "-q", cwd=clone)[0] == 0
        code, out, err = teammate.run("lint", cwd=clone)
        transcript.append(("teammate", "git pull && lint", out + err))
        assert (code == 125 and "    + mount ~/.ssh at ~/.ssh read-write" in err
                and "changed since you trusted it" in err), err
        for who, command, output in transcript:  # for the record (pytest -s shows it)
            print(f"--- {who}: {command}\n{output.rstrip()}")
    finally:
        teammate.cleanup()
        shutil.rmtree(shared, ignore_errors=True)
