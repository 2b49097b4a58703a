"""What of your machine a tool sees through the current directory and the paths in its
arguments (argpaths.py): never toolbox's own directories writable, never your credentials, and
only the object that was judged — also when another local user swaps a directory for a symlink
while toolbox starts."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.test_run import busybox, needs_userns  # noqa: F401  (a fixture, and the marker)


def run(toolbox, *args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "toolbox", "run", *map(str, args)], env=dict(toolbox.env, **(env or {})),
                          capture_output=True, text=True, cwd=cwd, timeout=60)


def secrets(home):
    (home / ".ssh").mkdir(exist_ok=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    (home / ".netrc").write_text("machine x password SECRET\n")
    (home / ".config").mkdir(exist_ok=True)
    (home / ".config" / "app.conf").write_text("setting\n")


def test_protected_places_are_judged_by_their_real_paths(toolbox, tmp_path):
    from toolbox.argpaths import HIDDEN, READ_ONLY, protected_places, protection

    home = Path(toolbox.home)
    secrets(home)
    (tmp_path / "keys").mkdir()
    (home / ".aws").symlink_to(tmp_path / "keys")  # a credential kept elsewhere, linked in
    places = dict(protected_places(toolbox.layout, str(home), {}))
    assert places[str(home / ".ssh")] == HIDDEN and places[str(home / ".netrc")] == HIDDEN
    assert places[str(tmp_path / "keys")] == HIDDEN and str(home / ".aws") not in places
    os.makedirs(toolbox.layout.data_dir, exist_ok=True)
    assert dict(protected_places(toolbox.layout, str(home), {}))[toolbox.layout.data_dir] == READ_ONLY
    places = protected_places(toolbox.layout, str(home), {})
    assert protection(str(home / ".ssh" / "sub"), places) is None
    assert protection(str(tmp_path / "keys"), places) is None
    read_only, masks = protection(str(tmp_path), places)
    assert not read_only and ("keys", HIDDEN) in masks and ("home/.ssh", HIDDEN) in masks and ("home/.netrc", HIDDEN) in masks
    assert protection(str(tmp_path / "elsewhere"), places) == (False, ())


@needs_userns
def test_toolbox_directories_never_become_writable_through_an_argument(toolbox, busybox, tmp_path):
    """Round 1: naming config.toml mounted its directory read-write, and the tool planted a
    recipe that every later `jq` ran, with ~/.ssh mounted."""
    config = Path(toolbox.layout.config_file)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(config.read_text() if config.exists() else "")
    recipes = Path(toolbox.layout.user_recipes_dir)
    plant = f'mkdir -p {recipes} && echo \'image = "evil/jq"\' > {recipes}/jq.toml; cat {config} >/dev/null && echo read'
    work = tmp_path / "work"
    work.mkdir()
    result = run(toolbox, busybox, "sh", "-c", plant, config, cwd=work)
    assert not (recipes / "jq.toml").exists(), result.stderr
    assert "read" in result.stdout  # the file named is there, to read
    appended = run(toolbox, busybox, "sh", "-c", f"echo x >> {config}", config, cwd=work)
    assert appended.returncode != 0 and "x" not in config.read_text()


@needs_userns
def test_the_current_directory_never_exposes_credentials_or_toolbox_state(toolbox, busybox, tmp_path):
    home = Path(toolbox.home)
    secrets(home)
    # tmp_path holds the home directory and toolbox's directories: working there shows neither.
    script = (f"ls -A {home}/.ssh | wc -l; cat {home}/.netrc; echo ok > {tmp_path}/written;"
              f"touch {toolbox.layout.data_dir}/planted 2>/dev/null || echo refused; cat {home}/.config/app.conf")
    result = run(toolbox, busybox, "sh", "-c", script, cwd=tmp_path)
    assert result.stdout.split() == ["0", "refused", "setting"], result.stderr
    assert (tmp_path / "written").read_text() == "ok\n" and not os.path.exists(os.path.join(toolbox.layout.data_dir, "planted"))
    assert (home / ".ssh" / "id_ed25519").read_text() == "PRIVATE KEY\n"  # covered, not touched
    # Working in a credentials directory: it is not mounted, and toolbox says so.
    inside = run(toolbox, busybox, "sh", "-c", f"cat {home}/.ssh/id_ed25519; pwd", cwd=home / ".ssh")
    assert "PRIVATE KEY" not in inside.stdout and "not mounting the current directory" in inside.stderr
    # Arguments naming credentials: not mounted; a file of a broad directory (~/.config) alone.
    named = run(toolbox, busybox, "sh", "-c", f'cat "$1" "$2"; ls {home}/.config', "sh", home / ".ssh" / "id_ed25519",
                home / ".config" / "app.conf", cwd=tmp_path / "toolbox")
    assert "PRIVATE KEY" not in named.stdout and "setting" in named.stdout and f"not mounting {home}/.ssh" in named.stderr
    assert named.stdout.split().count("app.conf") == 1  # ~/.config itself is not listed beyond the file


@needs_userns
def test_a_current_directory_swapped_for_a_symlink_is_never_mounted(toolbox, busybox, other_user):
    """Another user renames your working directory away in a shared directory and puts a symlink
    to one of yours in its place, again and again, while `toolbox run` starts; the tool must see
    your working directory or nothing, never the link's target."""
    shared = Path(tempfile.mkdtemp(prefix="toolbox-shared-", dir="/tmp"))
    try:
        shared.chmod(0o777)
        work, private = shared / "work", Path(toolbox.home) / "private"
        work.mkdir()
        (work / "WORKDIR").write_text("")
        private.mkdir()
        (private / "SECRET").write_text("")
        # The tool's process is in the directory itself, as a shell that cd'ed there earlier is.
        work_fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
        swapper = other_user.spawn(["/usr/bin/python3", "-I", "-c", SWAP_CWD, work, private])
        outcomes = {"workdir": 0, "secret": 0, "refused": 0}
        try:
            deadline = time.monotonic() + 90
            while sum(outcomes.values()) < 150 and time.monotonic() < deadline:
                result = subprocess.run([sys.executable, "-m", "toolbox", "run", busybox, "ls"], env=toolbox.env, pass_fds=(work_fd,),
                                        preexec_fn=lambda: os.fchdir(work_fd), capture_output=True, text=True, timeout=60)
                outcomes["secret" if "SECRET" in result.stdout else "workdir" if "WORKDIR" in result.stdout else "refused"] += 1
        finally:
            swaps = int(other_user.stop(swapper) or 0)
            os.close(work_fd)
        print(f"swaps {swaps}, outcomes {outcomes}")
        assert swaps > 100 and outcomes["secret"] == 0 and outcomes["workdir"] > 0, (swaps, outcomes)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


SWAP_CWD = """
import os, signal, sys, time
work, target = sys.argv[1], sys.argv[2]
away, count = work + ".away", 0
signal.signal(signal.SIGTERM, lambda *_: (print(count), sys.exit(0)))
while True:
    try:
        os.rename(work, away)
        os.symlink(target, work)
        time.sleep(0.001)
        os.unlink(work)
        os.rename(away, work)
        count += 1
    except OSError:
        pass
    time.sleep(0.002)
"""
