"""Trust in a project's own recipes, and the project files toolbox follows at all.

Trust is about grants (what a recipe gives a tool of your machine), recorded per checkout, asked
for again only when grants change and shown as +/- against what was trusted. The races are run
as races: another local account (tests/support/other_user.py) renames files over the ones
toolbox reads, in a tight loop, while toolbox works; no attempt may win.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.installation import cli
from tests.support.upstream import LINT, Upstream, tool_image

EVIL = ('[recipes.lint]\nimage = "ghcr.io/evil/lint"\ndefault_version = "1"\ncommand = ["lint"]\n'
        'mounts = [{ source = "~/.ssh", target = "~/.ssh" }]\n')


@pytest.fixture
def upstream(toolbox, registry):
    up = Upstream(toolbox, registry)
    for version in ("1", "2"):
        up.publish("ghcr.io/example/lint", version, tool_image(f"lint-{version}", "/usr/local/bin/lint"))
    up.publish("ghcr.io/evil/lint", "1", tool_image("EVIL", "/usr/local/bin/lint"))
    return up


@pytest.fixture
def shared_dir():
    """A directory another local account may write in (not sticky, like a group-writable
    checkout): what the races and ownership tests need. Outside pytest's 0700 tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="toolbox-shared-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def record_of(toolbox, project_file):
    from toolbox.project.trust import TrustStore

    return TrustStore(toolbox.layout).read(str(project_file)).recipes


# -- grants, not bytes ---------------------------------------------------------------------------
def test_pins_comments_and_other_recipes_never_touch_trust_and_add_of_a_project_recipe_works(toolbox,
                                                                                             upstream,
                                                                                             tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "toolbox.toml").write_text(LINT)
    refused = cli(toolbox, "add", "lint", cwd=project)
    assert refused.returncode == 125 and "not trusted yet" in refused.stderr, refused.stderr
    # untouched
    assert (project / "toolbox.toml").read_text() == LINT and not (project / "toolbox.lock").exists()
    trusted = cli(toolbox, "trust", cwd=project)
    assert trusted.returncode == 0, trusted.stderr
    assert "+ image ghcr.io/example/lint" in trusted.stdout and "+ command lint" in trusted.stdout
    # round 1 looped here: the edit voided the hash it trusted
    added = cli(toolbox, "add", "lint", cwd=project)
    assert added.returncode == 0, added.stderr
    assert 'lint = "1"' in (project / "toolbox.toml").read_text() and (project / "toolbox.lock").exists()
    # A teammate bumps the pin, adds a comment and a recipe of their own: lint is still trusted.
    (project / "toolbox.toml").write_text("# team tools\n" + LINT.replace('default_version = "1"',
                                                                          'default_version = "1"  # ours')
                                          + '\n[recipes.fmt]\nimage = '
                                            '"ghcr.io/example/lint"\ndefault_version = "1"\n'
                                          + '\n[tools]\nlint = "2"\n')
    assert cli(toolbox, "lock", cwd=project).returncode == 0
    ran = cli(toolbox, "run", "lint", "x", cwd=project)
    assert (ran.returncode, ran.stdout) == (0, "lint-2 lint:x\n"), ran.stderr
    fmt = cli(toolbox, "run", "fmt", cwd=project)  # the new recipe asks on its own
    assert (fmt.returncode == 125 and "fmt (a recipe of this project's own)" in fmt.stderr
            and "lint (" not in fmt.stderr)


def test_a_changed_recipe_shows_what_is_new_and_what_was_dropped(toolbox, upstream, tmp_path):
    (tmp_path / "toolbox.toml").write_text(LINT + 'pass_env = ["LINT_*"]\n')
    assert cli(toolbox, "trust", cwd=tmp_path).returncode == 0
    (tmp_path / "toolbox.toml").write_text(LINT.replace('command = ["lint"]\n',
                                                        'command = ["sh", "-c", "lint"]\n')
                                           + 'mounts = [{ source = "~/.ssh", target = "~/.ssh" }]\n')
    refused = cli(toolbox, "run", "lint", cwd=tmp_path)
    assert refused.returncode == 125
    lines = refused.stderr.splitlines()
    assert "  lint (changed since you trusted it):" in lines, refused.stderr
    assert "    + mount ~/.ssh at ~/.ssh read-write" in lines
    assert ("    + command sh -c lint" in lines and "    - command lint" in lines
            and "    - host variable LINT_*" in lines)
    assert "      image ghcr.io/example/lint" in lines  # unchanged: no mark
    # What `toolbox trust` prints is what it records.
    shown = cli(toolbox, "trust", cwd=tmp_path)
    assert "    + mount ~/.ssh at ~/.ssh read-write" in shown.stdout.splitlines()
    from toolbox.project.recipes import describe_grant

    recorded = {describe_grant(item) for item in record_of(toolbox, tmp_path / "toolbox.toml")["lint"]}
    current = {line[6:] for line in shown.stdout.splitlines() if line.startswith(("    + ", "      "))}
    assert recorded == current and "mount ~/.ssh at ~/.ssh read-write" in recorded


def test_grant_lines_show_the_tag_scheme_and_no_network_is_not_a_grant(toolbox, upstream, tmp_path):
    """The lines said `tags made as {version}`, the placeholder unexpanded, and listed
    `network none` as something granted: a restriction is not a grant. Giving the host's network
    is one, so host -> none shows as a dropped grant and none -> host as a new one."""
    upstream.publish("ghcr.io/example/lint", "1-slim", tool_image("lint-1-slim", "/usr/local/bin/lint"))
    slim = LINT + 'tag = "{version}-slim"\n'
    (tmp_path / "toolbox.toml").write_text(slim + 'network = "none"\n')
    trusted = cli(toolbox, "trust", cwd=tmp_path)
    lines = trusted.stdout.splitlines()
    assert "    + tags VERSION-slim" in lines, trusted.stdout
    assert "{version}" not in trusted.stdout and "network" not in trusted.stdout
    (tmp_path / "toolbox.toml").write_text(slim + 'network = "host"\n')
    widened = cli(toolbox, "run", "lint", cwd=tmp_path)
    assert widened.returncode == 125 and "    + network host" in widened.stderr.splitlines(), widened.stderr
    assert "      tags VERSION-slim" in widened.stderr.splitlines()  # unchanged: no mark
    assert cli(toolbox, "trust", cwd=tmp_path).returncode == 0
    (tmp_path / "toolbox.toml").write_text(slim + 'network = "none"\n')
    narrowed = cli(toolbox, "run", "lint", cwd=tmp_path)
    assert (narrowed.returncode == 125
            and "    - network host" in narrowed.stderr.splitlines()), narrowed.stderr
    assert "network none" not in narrowed.stderr
    # A record written when `network none` was counted as a grant still matches the same recipe.
    from toolbox.project.trust import TrustStore

    store = TrustStore(toolbox.layout)
    path = store.record_path(str(tmp_path / "toolbox.toml"))
    assert cli(toolbox, "trust", cwd=tmp_path).returncode == 0
    doc = json.loads(Path(path).read_text())
    doc["recipes"]["lint"].append(["network", "none"])
    Path(path).write_text(json.dumps(doc))
    (tmp_path / "toolbox.toml").write_text(slim + 'network = "none"\n\n[tools]\nlint = "1"\n')
    locked = cli(toolbox, "lock", cwd=tmp_path)
    assert locked.returncode == 0, locked.stderr


def test_ci_trusts_the_projects_named_in_the_environment(toolbox, upstream, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "toolbox.toml").write_text(LINT)
    env = {"TOOLBOX_TRUSTED_PROJECTS": f"relative/a:{tmp_path / 'a'}/"}
    ran = cli(toolbox, "run", "lint", cwd=tmp_path / "a", env=env)
    assert (ran.returncode, ran.stdout) == (0, "lint-1 lint:\n"), ran.stderr
    assert cli(toolbox, "run", "lint", cwd=tmp_path / "b", env=env).returncode == 125  # not listed
    # the plan made under it does not outlive it
    assert cli(toolbox, "run", "lint", cwd=tmp_path / "a").returncode == 125
    assert not record_of(toolbox, tmp_path / "a" / "toolbox.toml")  # nothing recorded


def test_a_second_checkout_asks_on_its_own_and_is_told_where_the_same_grants_are_trusted(toolbox, upstream,
                                                                                         tmp_path):
    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "toolbox.toml").write_text(LINT)
    assert cli(toolbox, "trust", cwd=tmp_path / "main").returncode == 0
    shutil.copytree(tmp_path / "main", tmp_path / "worktree")
    refused = cli(toolbox, "run", "lint", cwd=tmp_path / "worktree")
    assert (refused.returncode == 125
            and f"the same grants are trusted for {tmp_path / 'main' / 'toolbox.toml'}" in refused.stderr)


def test_untrust_and_a_plan_cache_never_outlive_a_trust_decision(toolbox, upstream, tmp_path):
    (tmp_path / "toolbox.toml").write_text(LINT)
    assert cli(toolbox, "trust", cwd=tmp_path).returncode == 0
    assert cli(toolbox, "run", "lint", cwd=tmp_path).stdout == "lint-1 lint:\n"
    assert cli(toolbox, "untrust", cwd=tmp_path).returncode == 0
    assert cli(toolbox, "run", "lint", cwd=tmp_path).returncode == 125


def _run_in_terminal(toolbox, args, cwd, answer):
    """Run toolbox with a pty as stdin and stderr, answer its question; (status, all it wrote)."""
    import pty

    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "toolbox", *args], stdin=slave, stdout=subprocess.PIPE,
                               stderr=slave, env=toolbox.env, cwd=cwd)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        seen += chunk
    if b"[y/N]" in seen:
        os.write(master, answer.encode() + b"\n")
    out, _ = process.communicate(timeout=120)
    try:
        while chunk := os.read(master, 4096):
            seen += chunk
    except OSError:
        pass
    os.close(master)
    return process.returncode, seen.decode(errors="replace"), out.decode()


def test_in_a_terminal_run_offers_to_trust_after_showing_the_grants(toolbox, upstream, tmp_path):
    (tmp_path / "toolbox.toml").write_text(LINT + 'mounts = [{ source = "~/.ssh", target = "~/.ssh", '
                                                  'read_only = true }]\n')
    status, terminal, out = _run_in_terminal(toolbox, ["run", "lint", "a"], tmp_path, "n")
    assert (status == 125 and "+ mount ~/.ssh at ~/.ssh read-only" in terminal and "[y/N]" in terminal
            and out == "")
    assert not record_of(toolbox, tmp_path / "toolbox.toml")
    status, terminal, out = _run_in_terminal(toolbox, ["run", "lint", "a"], tmp_path, "y")
    assert (status, out) == (0, "lint-1 lint:a\n"), terminal
    assert "lint" in record_of(toolbox, tmp_path / "toolbox.toml")
    # Without a terminal nobody is asked: a pipe gets the refusal, and so does CI=true.
    (tmp_path / "toolbox.toml").write_text(LINT)
    piped = cli(toolbox, "run", "lint", cwd=tmp_path, input="y\n")
    assert (piped.returncode == 125 and "[y/N]" not in piped.stderr
            and "changed since you trusted it" in piped.stderr)
    status, terminal, out = _run_in_terminal(toolbox, ["run", "lint"], tmp_path, "y")
    assert status == 0 and "- mount ~/.ssh at ~/.ssh read-only" in terminal  # what goes away is shown too


# -- trust gates every use -------------------------------------------------------------------------
def test_untrusted_project_recipes_fetch_nothing(toolbox, upstream, tmp_path):
    (tmp_path / "toolbox.toml").write_text(LINT + '\n[tools]\nlint = "1"\n')
    assert cli(toolbox, "trust", cwd=tmp_path).returncode == 0
    assert cli(toolbox, "lock", cwd=tmp_path).returncode == 0
    assert cli(toolbox, "untrust", cwd=tmp_path).returncode == 0
    shutil.rmtree(toolbox.layout.cache_dir)
    for args in (["sync"], ["sync", "--frozen"], ["lock"], ["lock", "--frozen"], ["lock", "--check"],
                 ["lock", "--upgrade"], ["run", "lint"], ["run", "lint@2"], ["run", "--frozen", "lint"]):
        result = cli(toolbox, *args, cwd=tmp_path)
        assert result.returncode == 125 and "not trusted yet" in result.stderr, (args, result.stderr)
    blobs = Path(toolbox.layout.blobs_dir)
    assert (not blobs.exists()
            or not any(p.is_file() for p in blobs.rglob("*"))), "an untrusted recipe's registry was contacted"


# -- files owned by someone else, and their size -----------------------------------------------------
def test_project_files_of_another_user_are_refused_unless_allowed(toolbox, upstream, other_user, shared_dir):
    # The other user's project: toolbox.toml and toolbox.lock are theirs.
    theirs = shared_dir / "theirs"
    other_user.python("import os, sys; os.mkdir(sys.argv[1]); os.chmod(sys.argv[1], 0o755);"
                      "open(os.path.join(sys.argv[1], 'toolbox.toml'), 'w').write('[tools]\\njq = "
                      "\"1.6\"\\n')", theirs)
    refused = cli(toolbox, "list", cwd=theirs)
    assert (refused.returncode == 125 and "belongs to toolbox-other" in refused.stderr
            and "TOOLBOX_SAFE_DIRECTORIES" in refused.stderr)
    assert cli(toolbox, "run", "jq", cwd=theirs).returncode == 125
    allowed = cli(toolbox, "list", "--json", cwd=theirs, env={"TOOLBOX_SAFE_DIRECTORIES": str(theirs)})
    assert allowed.returncode == 0 and json.loads(allowed.stdout)[0]["version"] == "1.6"
    config = Path(toolbox.layout.config_file)
    # a top-level key: before the tables
    config.write_text(f'safe_directories = ["{theirs}"]\n' + config.read_text())
    assert cli(toolbox, "list", cwd=theirs).returncode == 0
    # Your own directory below someone else's: the walk up stops at theirs (global pins apply).
    other_user.python("import os, sys; os.chmod(sys.argv[1], 0o777)", theirs)
    mine = theirs / "mine"
    mine.mkdir()
    listed = cli(toolbox, "list", cwd=mine)
    assert listed.returncode == 0 and "No tools pinned" in listed.stdout and "theirs" not in listed.stdout
    # A world-writable sticky directory (like /tmp) is never looked in, nor anything above it.
    scratch = shared_dir / "scratch"
    scratch.mkdir()
    scratch.chmod(0o1777)
    other_user.python("import sys; open(sys.argv[1], 'w').write('[tools]\\njq = \"1.6\"\\n')",
                      scratch / "toolbox.toml")
    (scratch / "mine").mkdir()
    below = cli(toolbox, "list", cwd=scratch / "mine")
    assert below.returncode == 0 and "No tools pinned" in below.stdout
    # A lock of theirs beside your toolbox.toml is refused too.
    other_user.python("import os, sys; open(sys.argv[1], 'w').write('lock_version = 1\\n')",
                      shared_dir / "toolbox.lock")
    (shared_dir / "toolbox.toml").write_text('[tools]\njq = "1.6"\n')
    lock = cli(toolbox, "lock", "--frozen", cwd=shared_dir)
    assert lock.returncode == 125 and "toolbox.lock belongs to toolbox-other" in lock.stderr


@pytest.mark.parametrize("where", ["project", "parent", "lock", "recipe", "config"])
def test_every_file_read_is_bounded_in_size(toolbox, tmp_path, where):
    project = tmp_path / "a" / "b"
    project.mkdir(parents=True)
    target = {"project": project / "toolbox.toml", "parent": tmp_path / "a" / "toolbox.toml",
              "lock": project / "toolbox.lock", "recipe": Path(toolbox.layout.user_recipes_dir) / "big.toml",
              "config": Path(toolbox.layout.config_file)}[where]
    if where == "lock":
        (project / "toolbox.toml").write_text('[tools]\njq = "1.6"\n')
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as file:
        file.truncate(400 << 20)  # sparse: 400 MB of NULs that cost no disk
    started = time.monotonic()
    # A recipe file refused stops only its own name (big): ask for that one.
    result = cli(toolbox, *(("recipes", "show", "big") if where == "recipe" else ("lock", "--frozen")),
                 cwd=project)
    assert (result.returncode == 125
            and f"{target} is {400 << 20} bytes, more than toolbox reads" in result.stderr), result.stderr
    assert time.monotonic() - started < 30  # not a timing test: round 1 read it all (1.8 s, 1.2 GB)


def test_a_fifo_or_device_for_a_project_file_is_never_read(toolbox, tmp_path):
    from toolbox.errors import ConfigError
    from toolbox.fsutil import read_input

    os.mkfifo(tmp_path / "toolbox.toml")
    result = cli(toolbox, "list", cwd=tmp_path)  # not a project file: ignored, and nothing blocks
    assert result.returncode == 0 and "No tools pinned" in result.stdout
    (tmp_path / "toolbox.lock").symlink_to("/dev/zero")
    for name in ("toolbox.toml", "toolbox.lock"):  # found as a file, then swapped: refused when read
        with pytest.raises(ConfigError, match="is not a regular file"):
            read_input(str(tmp_path / name))


# -- a hostile project directory: no traceback -------------------------------------------------------
def test_a_project_you_cannot_write_still_runs_its_tools(toolbox, upstream, tmp_path):
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("jq-1.7.1"))
    tmp_path = tmp_path / "project"
    tmp_path.mkdir()
    (tmp_path / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
    tmp_path.chmod(0o555)
    try:
        result = cli(toolbox, "run", "jq", "x", cwd=tmp_path)
        assert (result.returncode, result.stdout) == (0, "jq-1.7.1 tool:x\n"), result.stderr
        assert "cannot write" in result.stderr and "Traceback" not in result.stderr
        locked = cli(toolbox, "lock", cwd=tmp_path)  # writing the lock is its job: an error, in one line
        assert (locked.returncode == 125 and "cannot write" in locked.stderr
                and "Traceback" not in locked.stderr)
        again = cli(toolbox, "run", "jq", "y", cwd=tmp_path)
        assert (again.returncode, again.stdout) == (0, "jq-1.7.1 tool:y\n"), again.stderr
    finally:
        tmp_path.chmod(0o755)
    assert sorted(os.listdir(tmp_path)) == ["toolbox.toml"]


def test_a_broken_lock_entry_stops_only_its_own_tool(toolbox, upstream, tmp_path):
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("jq-1.7.1"))
    (tmp_path / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\nnode = "20"\n')
    assert cli(toolbox, "lock", "--frozen", cwd=tmp_path).returncode == 125
    assert cli(toolbox, "run", "jq", cwd=tmp_path).returncode == 0
    lock = (tmp_path / "toolbox.lock").read_text()
    broken = lock + '\n[tools.node]\nrecipe = "node"\nversion = 20\n'
    (tmp_path / "toolbox.lock").write_text(broken)
    ran = cli(toolbox, "run", "jq", "y", cwd=tmp_path)
    assert (ran.returncode, ran.stdout) == (0, "jq-1.7.1 tool:y\n"), ran.stderr
    assert (tmp_path / "toolbox.lock").read_text() == broken  # not this run's business: kept as it was
    node = cli(toolbox, "run", "--frozen", "node", cwd=tmp_path)
    assert node.returncode == 125 and "[tools.node] must have exactly" in node.stderr


# -- races against another local user ----------------------------------------------------------------
SWAPPER = """
import os, signal, sys
directory, count = sys.argv[1], 0
names = [os.path.join(directory, n) for n in (".good", ".evil")]
target = os.path.join(directory, "toolbox.toml")
signal.signal(signal.SIGTERM, lambda *_: (print(count), sys.exit(0)))
while True:
    for name in names:
        tmp = target + ".swap"
        try:
            os.unlink(tmp)  # left by a rename onto a link of the same file, which does nothing
        except FileNotFoundError:
            pass
        os.link(name, tmp)
        os.rename(tmp, target)
        count += 1
"""


def _plant(other_user, directory, good, evil):
    other_user.python("import os, sys\nfor name, text in ((sys.argv[2], sys.argv[3]), (sys.argv[4], "
                      "sys.argv[5])):\n"
                      "    path = os.path.join(sys.argv[1], name)\n    open(path, 'w').write(text)\n    "
                      "os.chmod(path, 0o644)",
                      directory, ".good", good, ".evil", evil)


@pytest.mark.parametrize("allowed", [True, False], ids=["safe-directory", "ownership"])
def test_a_file_swapped_while_toolbox_reads_it_never_runs(toolbox, upstream, other_user, shared_dir,
                                                          monkeypatch, allowed):
    """The attacker renames an untrusted toolbox.toml over the trusted one, and back, as fast as
    it can, while toolbox makes plans; neither what runs nor what is cached may ever be theirs.
    With the directory allowed (safe), trust is what must stop them; otherwise ownership is."""
    from toolbox.errors import ToolboxError
    from toolbox.hot import plans
    from toolbox.ops.prepare import run_settings

    _plant(other_user, shared_dir, LINT, EVIL)
    other_user.python("import os, sys; os.link(sys.argv[1], sys.argv[2])", shared_dir / ".good",
                      shared_dir / "toolbox.toml")
    env = dict(toolbox.env, **({"TOOLBOX_SAFE_DIRECTORIES": str(shared_dir)} if allowed else {}))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(shared_dir)
    if allowed:
        assert cli(toolbox, "trust", cwd=shared_dir, env=env).returncode == 0
    else:
        shutil.copy(shared_dir / ".good", shared_dir / "mine")
        os.rename(shared_dir / "mine", shared_dir / "toolbox.toml")  # yours now, and trusted
        assert cli(toolbox, "trust", cwd=shared_dir).returncode == 0
    swapper = other_user.spawn(["/usr/bin/python3", "-I", "-c", SWAPPER, shared_dir])
    outcomes = {"benign": 0, "refused": 0, "evil": 0, "evil cached": 0}
    pins_file = str(shared_dir / "toolbox.toml")
    try:
        deadline = time.monotonic() + 60
        while sum(outcomes.values()) < 400 and time.monotonic() < deadline:
            try:
                settings = run_settings("lint", cwd=str(shared_dir))
                outcomes["evil" if "evil" in settings["image"] or settings["mounts"] else "benign"] += 1
            except ToolboxError:
                outcomes["refused"] += 1
            cached = plans.read_tool_plan(toolbox.layout, pins_file, "lint")
            if cached is not None and ("evil" in cached["image"] or cached["mounts"]):
                outcomes["evil cached"] += 1
    finally:
        swaps = int(other_user.stop(swapper) or 0)
    print(f"swaps {swaps}, outcomes {outcomes}")
    assert swaps > 1000 and sum(outcomes.values()) >= 100, (swaps, outcomes)
    assert outcomes["evil"] == 0 and outcomes["evil cached"] == 0, outcomes
    if allowed:
        assert outcomes["benign"] > 0 and outcomes["refused"] > 0, outcomes  # both files were really met
    # Whatever the swapper left, a shim-speed run now agrees with trust.
    other_user.python("import os, sys; os.link(sys.argv[1], sys.argv[2]); "
                      "os.rename(sys.argv[2], sys.argv[3])",
                      shared_dir / ".evil", shared_dir / "evil-now", shared_dir / "toolbox.toml")
    final = cli(toolbox, "run", "lint", cwd=shared_dir, env=env)
    assert final.returncode == 125 and "EVIL" not in final.stdout


def test_trust_records_exactly_what_it_showed_while_the_file_is_swapped(toolbox, upstream, other_user,
                                                                        shared_dir, monkeypatch, capsys):
    from toolbox.cli import tools as cli_tools
    from toolbox.errors import ToolboxError
    from toolbox.project.recipes import describe_grant

    _plant(other_user, shared_dir, LINT, EVIL)
    for key, value in dict(toolbox.env, TOOLBOX_SAFE_DIRECTORIES=str(shared_dir)).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(shared_dir)
    swapper = other_user.spawn(["/usr/bin/python3", "-I", "-c", SWAPPER, shared_dir])
    mismatches, seen = 0, set()
    try:
        for _ in range(300):
            try:
                cli_tools.trust()
            except ToolboxError:
                capsys.readouterr()
                continue  # changed while read, or no file at that instant: nothing recorded wrongly
            shown = {line[6:] for line in capsys.readouterr().out.splitlines() if line.startswith(("    + ",
                                                                                                   "      "))}
            recorded = {describe_grant(item)
                        for item in record_of(toolbox, shared_dir / "toolbox.toml").get("lint", ())}
            seen.add("evil" if any("evil" in line for line in shown) else "good")
            mismatches += shown != recorded
    finally:
        swaps = int(other_user.stop(swapper) or 0)
    print(f"swaps {swaps}, seen {seen}")
    assert swaps > 1000 and seen == {"good", "evil"} and mismatches == 0
