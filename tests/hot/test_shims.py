"""Shims and shell integration: pinned tools that feel installed, in real bash, zsh and fish.

Two sibling projects pin different versions of the real jq recipe; its upstream image is served
by the loopback registry through the mirror config (tests/support/upstream.py)."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from toolbox.layout import Layout

from tests.support.projects import Projects
from tests.support.upstream import EXACT_SCRIPT, tool_image

pytestmark = pytest.mark.needs_userns_overlay


@pytest.fixture
def projects(toolbox, registry, tmp_path):
    return Projects(toolbox, registry, tmp_path)


ARGUMENTS = [b"plain", b"two words", b"'single'", b'"double"', b"*", b"$HOME", b"", b"line\nbreak",
             b"\xff\xfe not utf-8", b"-x", b"--", b"--version", b"\\back\\slash", b"tab\there",
             "unicodé".encode()]


def test_arguments_arrive_byte_for_byte_and_the_exit_status_is_the_tools(projects):
    result = projects.shim(*ARGUMENTS, cwd=projects.a)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"jq-1.6\n" + b"".join(arg + b"\0" for arg in ARGUMENTS)
    assert projects.shim("--exit=3", cwd=projects.a).returncode == 3
    assert projects.shim("--exit=0", cwd=projects.b).stdout.startswith(b"jq-1.7.1\n")


def test_the_plan_follows_its_inputs(projects):  # what a shim imports: tests/test_hotpath.py
    assert projects.shim(cwd=projects.a).stdout == b"jq-1.6\n"  # makes the tool plan and the run plan
    # A change of pin, lock or recipe is seen at the next call.
    (projects.a / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
    assert projects.shim(cwd=projects.a).stdout == b"jq-1.7.1\n"
    projects.upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("jq-1.7.1-moved", script=EXACT_SCRIPT))
    assert projects.shim(cwd=projects.a).stdout == b"jq-1.7.1\n"  # locked
    assert projects.cli("lock", "--upgrade", cwd=projects.a).returncode == 0
    assert projects.shim(cwd=projects.a).stdout == b"jq-1.7.1-moved\n"
    recipes = os.path.join(projects.toolbox.layout.config_dir, "recipes")
    os.makedirs(recipes)
    with open(os.path.join(recipes, "jq.toml"), "w") as recipe:
        recipe.write('image = "ghcr.io/jqlang/jq"\ndefault_version = "1.6"\ncommand = ["/usr/bin/tool", '
                     '"--from-user-recipe"]\n')
    assert projects.shim(cwd=projects.a).stdout == b"jq-1.7.1-moved\n--from-user-recipe\0"


SHELL_SCRIPTS = {
    "bash": 'eval "$(toolbox shell-init bash)"; type -t jq; type -P jq; cd a && jq x; cd ../b && jq y',
    "zsh": 'eval "$(toolbox shell-init zsh)"; whence -w jq; whence -p jq; cd a && jq x; cd ../b && jq y',
    "fish": 'toolbox shell-init fish | source; type -t jq; command -s jq; cd a; and jq x; cd ../b; and jq y',
}


@pytest.mark.parametrize("shell", [pytest.param(shell, marks=pytest.mark.needs_program(shell))
                                   for shell in SHELL_SCRIPTS])
def test_cd_switches_versions_in_the_shell(projects, shell):
    # A script started from such a shell (no functions there) finds the shim on PATH.
    script = SHELL_SCRIPTS[shell] + "; sh -c 'command -v jq'"
    result = subprocess.run([shell, "-c", script], env=projects.toolbox.env, cwd=projects.a.parent,
                            capture_output=True, timeout=120)
    lines = result.stdout.split(b"\n")
    assert result.returncode == 0, result.stderr
    # a program on PATH
    assert b"function" not in lines[0] and lines[1] == os.path.join(projects.shims, "jq").encode(), lines
    assert lines[2:] == [b"jq-1.6", b"x\0jq-1.7.1", b"y\0" + os.path.join(projects.shims, "jq").encode(),
                         b""], (lines, result.stderr)
    assert b"compdef" not in result.stderr and b"not found" not in result.stderr, result.stderr


PATH_SCRIPTS = {
    "bash": 'eval "$(toolbox shell-init bash)"; printf "%s\\n" "$PATH"; eval "$(toolbox shell-init bash)"; '
            'printf "%s\\n" "$PATH"',
    "zsh": 'eval "$(toolbox shell-init zsh)"; printf "%s\\n" "$PATH"; eval "$(toolbox shell-init zsh)"; '
           'printf "%s\\n" "$PATH"',
    "fish": 'toolbox shell-init fish | source; string join : $PATH; toolbox shell-init fish | source; string '
            'join : $PATH',
}


@pytest.mark.parametrize("shell", list(PATH_SCRIPTS))
def test_shell_init_puts_the_shims_directory_first_once_whatever_its_name(toolbox, tmp_path, shell):
    """Already on PATH behind other directories (twice, even), the shims directory moves to the
    front and appears once; a name with spaces and glob characters is taken literally."""
    env = dict(toolbox.env, TOOLBOX_HOME=str(tmp_path / "a b*[c]?"))
    shims = Layout.from_env(env).shims_dir
    venv_bin = os.path.dirname(shutil.which("toolbox", path=toolbox.env["PATH"]))
    env["PATH"] = f"/usr/bin:{shims}:{venv_bin}::/bin:{shims}"
    result = subprocess.run([shell, "-c", PATH_SCRIPTS[shell]], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    # the empty entry (the current directory) kept where it was; fish spells it "."
    here = "." if shell == "fish" else ""
    expected = f"{shims}:/usr/bin:{venv_bin}:{here}:/bin"
    assert result.stdout.split("\n") == [expected, expected, ""], result.stdout


def test_where_no_pin_applies_the_next_program_runs_or_127(projects, tmp_path):
    host_bin = tmp_path / "host-bin"
    host_bin.mkdir()
    (host_bin / "jq").write_text('#!/bin/sh\necho "host jq $*"\n')
    (host_bin / "jq").chmod(0o755)
    with_host = {"PATH": f"{projects.shims}:{host_bin}:/usr/bin:/bin"}
    result = projects.shim("a b", cwd=projects.elsewhere, env=with_host)
    assert result.stdout == b"host jq a b\n" and result.returncode == 0
    missing = projects.shim(cwd=projects.elsewhere, env={"PATH": f"{projects.shims}:/nonexistent"})
    assert (missing.returncode == 127 and b"not pinned here" in missing.stderr
            and b"toolbox add jq" in missing.stderr)
    # The shims directory twice on PATH, once through a symlink: still 127, not a loop.
    alias = tmp_path / "alias-of-shims"
    alias.symlink_to(projects.shims)
    twice = projects.shim(cwd=projects.elsewhere, env={"PATH": f"{projects.shims}:{alias}:/nonexistent"})
    assert twice.returncode == 127
    looping = projects.shim(cwd=projects.elsewhere, env={"PATH": f"{host_bin}", "TOOLBOX_SHIM_DEPTH": "4"})
    assert looping.returncode == 127 and b"shims kept calling shims" in looping.stderr


def test_a_host_program_run_through_a_shim_sees_its_own_path(projects):
    """Outside any pin the host's python3 runs with its own path as argv[0], so sys.executable
    and a venv made through the shim are the host interpreter's, not the shim's."""
    assert projects.cli("shim", "install", "python3", cwd=projects.elsewhere).returncode == 0
    host_python = "/usr/bin/python3"  # Debian's, which scripts/test uses to make the suite's venv
    env = dict(projects.toolbox.env, PATH=f"{projects.shims}:/usr/bin:/bin")
    script = ('python3 -c "import sys; print(sys.executable)"; '
              'python3 -m venv --without-pip v && v/bin/python -c "import sys; print(sys.prefix, '
              'sys.base_prefix)"')
    result = subprocess.run(["bash", "-c", script], env=env, cwd=projects.elsewhere, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    base_prefix = subprocess.run([host_python, "-I", "-c", "import sys; print(sys.base_prefix)"],
                                 capture_output=True, text=True).stdout.strip()
    assert result.stdout.splitlines() == [host_python, f"{projects.elsewhere / 'v'} {base_prefix}"], result


@pytest.mark.needs_program("make")
def test_shims_from_make_xargs_and_a_tools_subprocess(projects):
    (projects.a / "Makefile").write_text("all:\n\t@jq from-make\n")
    made = subprocess.run(["make", "-s"], env=projects.env, cwd=projects.a, capture_output=True, timeout=120)
    assert made.stdout == b"jq-1.6\nfrom-make\0", made.stderr
    piped = subprocess.run(["xargs", "jq"], input=b"one two\n", env=projects.env, cwd=projects.b,
                           capture_output=True, timeout=120)
    assert piped.stdout == b"jq-1.7.1\none\0two\0", piped.stderr
    (projects.a / "sub").mkdir()
    nested = subprocess.run(["sh", "-c", "cd sub && jq nested"], env=projects.env, cwd=projects.a,
                            capture_output=True, timeout=120)
    assert nested.stdout == b"jq-1.6\nnested\0", nested.stderr


def test_shim_commands_and_add_installs_shims_once_in_use(projects):
    listed = projects.cli("shim", "list", cwd=projects.a)
    assert "jq 1.6 (pinned by" in listed.stdout
    assert "not pinned" in projects.cli("shim", "list", cwd=projects.elsewhere).stdout
    unknown = projects.cli("shim", "install", "jqq", cwd=projects.a)
    assert unknown.returncode == 125 and "did you mean jq" in unknown.stderr
    projects.upstream.publish("docker.io/library/python", "3.11-slim",
                              tool_image("python-3.11", "/usr/local/bin/python", entrypoint=False))
    added = projects.cli("add", "python3.11", cwd=projects.a)
    assert added.returncode == 0, added.stderr
    # the name typed, and the tool now pinned
    assert sorted(os.listdir(projects.shims)) == ["jq", "python", "python3.11"]
    ran = subprocess.run(["python3.11", "-V"], env=projects.env, cwd=projects.a, capture_output=True,
                         timeout=120)
    assert ran.stdout == b"python-3.11 python:-V\n", ran.stderr
    assert projects.cli("shim", "remove", "python3.11", cwd=projects.a).returncode == 0
    assert sorted(os.listdir(projects.shims)) == ["jq", "python"]
    completion = projects.cli("shell-init", "bash", cwd=projects.a).stdout
    assert "complete -o default -F _toolbox_completion toolbox" in completion
    words = subprocess.run(["toolbox"], env=dict(projects.toolbox.env, _TOOLBOX_COMPLETE="complete_bash",
                                                 COMP_WORDS="toolbox sh",
                                                 COMP_CWORD="1"), capture_output=True, text=True, timeout=60)
    assert {"shim", "shell-init"} <= set(words.stdout.split()), words


# registry trusted by projects
def test_inside_a_toolbox_container_the_hosts_shims_are_not_there(projects, toolbox, pushed_images):
    """Nested use: the image's PATH is the image's, so a shimmed name inside a container is the
    image's program or the shell's plain "not found" (127), never a half-working shim."""
    busybox = pushed_images["busybox"].reference
    toolbox.pull(busybox)
    inside = subprocess.run([sys.executable, "-m", "toolbox", "run", busybox, "sh", "-c", "jq x"],
                            env=projects.env, cwd=projects.a, capture_output=True, timeout=120)
    assert inside.returncode == 127 and b"jq: not found" in inside.stderr, inside


def test_global_pins_apply_in_a_project_for_the_tools_it_does_not_pin(projects, tmp_path):
    """As mise layers its configs: a project pins what it cares about; the user's global pins
    still apply to the rest, in `run`, in shims, in `list` and `shim list`. Round 1: a
    toolbox.toml pinning anything made every global pin vanish below it."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "toolbox.toml").write_text('[tools]\nyq = "4"\n')  # pins something else
    assert projects.cli("add", "--global", "jq@1.6", cwd=projects.elsewhere).returncode == 0
    assert projects.shim(cwd=other).stdout == b"jq-1.6\n"
    assert projects.shim(cwd=projects.b).stdout == b"jq-1.7.1\n"  # the project's own pin wins
    listed = projects.cli("list", cwd=other)
    assert "jq" in listed.stdout and projects.toolbox.layout.config_file in listed.stdout, listed.stderr
    assert f"jq 1.6 (pinned by {projects.toolbox.layout.config_file})" in projects.cli("shim", "list",
                                                                                       cwd=other).stdout
    # The global pin changes: the cached plan in the project follows (config.toml and the global
    # lock are its inputs).
    assert projects.cli("add", "--global", "jq@1.7.1", cwd=projects.elsewhere).returncode == 0
    assert projects.shim(cwd=other).stdout == b"jq-1.7.1\n"
    # A project with a jq recipe of its own: the global pin is a version of another recipe.
    (other / "toolbox.toml").write_text('[recipes.jq]\nimage = "ghcr.io/jqlang/jq"\ndefault_version = '
                                        '"1.6"\n')
    shown = projects.cli("shim", "list", cwd=other)
    assert "not pinned" in shown.stdout, shown.stdout


def test_add_then_remove_leaves_no_empty_project_behind(projects, tmp_path):
    """`toolbox add` where there is no project makes a toolbox.toml; removing its last pin used
    to leave an empty [tools] file that made the directory a project (hiding the global pins)."""
    home_like = tmp_path / "somewhere"
    home_like.mkdir()
    assert projects.cli("add", "--global", "jq@1.6", cwd=home_like).returncode == 0
    added = projects.cli("add", "jq@1.7.1", cwd=home_like)
    assert added.returncode == 0 and (home_like / "toolbox.toml").exists()
    assert projects.shim(cwd=home_like).stdout == b"jq-1.7.1\n"
    removed = projects.cli("remove", "jq", cwd=home_like)
    assert removed.returncode == 0 and "nothing was left in them" in removed.stdout
    assert sorted(os.listdir(home_like)) == []
    assert projects.shim(cwd=home_like).stdout == b"jq-1.6\n"
    missing = projects.shim(cwd=projects.elsewhere, env={"TOOLBOX_CONFIG": str(tmp_path / "none.toml"),
                                                         "PATH": f"{projects.shims}:/nonexistent"})
    assert b"toolbox add --global jq" in missing.stderr


def test_a_stopped_shim_shows_as_what_was_typed(projects, tmp_path):
    """Ctrl-Z on a shimmed tool in an interactive bash (a real terminal: tmux): the job line is
    the command typed (`jq --slow`), not a function's body (`'/home/.../shims/jq' "$@"`)."""
    projects.upstream.publish("ghcr.io/jqlang/jq", "slow",
                              tool_image("jq-slow", script="#!/bin/sh\nsleep 60\n"))
    (projects.a / "toolbox.toml").write_text('[tools]\njq = "slow"\n')
    assert projects.cli("lock", cwd=projects.a).returncode == 0
    assert projects.cli("sync", cwd=projects.a).returncode == 0  # pulled now: the run below starts at once
    rc = tmp_path / "rc"
    rc.write_text(f'PS1="$ "\neval "$({sys.executable} -m toolbox shell-init bash)"\ncd {projects.a}\n')
    with tempfile.TemporaryDirectory(prefix="tb-tmux-") as short:
        tmux = ["tmux", "-S", os.path.join(short, "s"), "-f", "/dev/null"]
        env = dict(projects.toolbox.env, TERM="xterm")
        subprocess.run(tmux + ["new-session", "-d", "-x", "200", "-y", "40", "-s", "t", "bash", "--rcfile",
                               str(rc), "-i"],
                       env=env, check=True, timeout=30)
        try:
            subprocess.run(tmux + ["send-keys", "-t", "t", "jq --slow", "Enter"], env=env, check=True,
                           timeout=30)
            screen = ""
            for _ in range(300):  # until the tool's sleep runs, then stop it
                time.sleep(0.1)
                if subprocess.run(["pgrep", "-f", "^sleep 60$"], capture_output=True).returncode == 0:
                    break
            subprocess.run(tmux + ["send-keys", "-t", "t", "C-z"], env=env, check=True, timeout=30)
            for _ in range(100):
                time.sleep(0.1)
                screen = subprocess.run(tmux + ["capture-pane", "-p", "-t", "t"], env=env,
                                        capture_output=True, text=True, timeout=30).stdout
                if "Stopped" in screen:
                    break
            subprocess.run(tmux + ["send-keys", "-t", "t", "kill -9 %1", "Enter"], env=env, timeout=30)
        finally:
            subprocess.run(tmux + ["kill-server"], env=env, capture_output=True, timeout=30)
    stopped = [line for line in screen.splitlines() if "Stopped" in line]
    assert stopped and stopped[0].split("Stopped", 1)[1].strip() == "jq --slow", screen


def test_inside_a_project_a_shim_never_falls_through_silently(projects, tmp_path):
    """A pin a teammate removed, or misspelt (`jqq`), used to make the `jq` shim run the host's
    jq without a word."""
    host_bin = tmp_path / "host-bin"
    host_bin.mkdir()
    (host_bin / "jq").write_text('#!/bin/sh\necho "host jq $*"\n')
    (host_bin / "jq").chmod(0o755)
    env = {"PATH": f"{projects.shims}:{host_bin}:/usr/bin:/bin"}
    typo = tmp_path / "typo"
    typo.mkdir()
    (typo / "toolbox.toml").write_text('[tools]\njqq = "1.7.1"\n')
    misspelt = projects.shim("x", cwd=typo, env=env)
    assert misspelt.returncode == 125 and b"host jq" not in misspelt.stdout
    assert (f"{typo / 'toolbox.toml'} pins 'jqq', which no recipe knows: is it jq?".encode()
            in misspelt.stderr), misspelt.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "toolbox.toml").write_text('[tools]\nyq = "4"\n')
    first = projects.shim("x", cwd=other, env=env)
    assert (first.stdout == b"host jq x\n"
            and f"jq is not pinned by {other / 'toolbox.toml'}".encode() in first.stderr)
    again = projects.shim("y", cwd=other, env=env)
    assert again.stdout == b"host jq y\n" and again.stderr == b""  # said once per project and tool
    outside = projects.shim("z", cwd=projects.elsewhere, env=env)
    assert outside.stdout == b"host jq z\n" and outside.stderr == b""  # no project: as installed programs do


def test_shims_follow_the_pins(projects, tmp_path):
    """A teammate pins redis-cli: `git pull && toolbox sync` (or the first call of any tool
    after the lock changed) gives me a redis-cli shim; `shim install --pinned` installs every
    pinned tool's; a project recipe's shim can be installed from outside its project."""
    projects.upstream.publish("docker.io/library/redis", "7.4-alpine",
                              tool_image("redis-7.4", "/usr/local/bin/redis-cli"))
    shims = projects.shims
    (projects.a / "toolbox.toml").write_text('[tools]\njq = "1.6"\nredis-cli = "7.4"\n')
    synced = projects.cli("sync", cwd=projects.a)
    assert synced.returncode == 0 and "Installed shims for redis-cli" in synced.stdout, synced.stderr
    redis = subprocess.run([os.path.join(shims, "redis-cli"), "ping"], env=projects.env, cwd=projects.a,
                           capture_output=True, timeout=120)
    assert redis.stdout == b"redis-7.4 redis-cli:ping\n", redis.stderr
    os.unlink(os.path.join(shims, "redis-cli"))
    (projects.a / "toolbox.toml").write_text('[tools]\njq = "1.6"\nredis-cli = "7.4"\n# changed\n')
    called = projects.shim(cwd=projects.a)  # the plan is made again: the missing shim comes back
    assert (called.returncode == 0 and b"installed shims for redis-cli" in called.stderr
            and os.path.exists(os.path.join(shims, "redis-cli")))
    os.unlink(os.path.join(shims, "redis-cli"))
    pinned = projects.cli("shim", "install", "--pinned", cwd=projects.a)
    assert pinned.returncode == 0 and sorted(os.listdir(shims)) == ["jq", "redis-cli"], pinned.stderr
    # A recipe of a (trusted) project, installed from elsewhere: said where it lives.
    lint = tmp_path / "lint-project"
    lint.mkdir()
    (lint / "toolbox.toml").write_text('[recipes.lint]\nimage = "ghcr.io/example/lint"\ndefault_version = '
                                       '"1"\n')
    unknown = projects.cli("shim", "install", "lint", cwd=projects.elsewhere)
    assert unknown.returncode == 125 and "no recipe for 'lint'" in unknown.stderr
    assert projects.cli("trust", cwd=lint).returncode == 0
    known = projects.cli("shim", "install", "lint", cwd=projects.elsewhere)
    assert (known.returncode == 0
            and f"lint: a recipe of {lint / 'toolbox.toml'}" in known.stdout), known.stderr
