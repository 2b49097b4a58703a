"""scripts/install as a user would run it: a venv in the data directory, the `python3 -IS`
launcher in ~/.local/bin, the recipes inside the package; then the installed launcher and a shim
it writes run as they must (no site module, nothing imported after pivot_root). It ends with
`toolbox doctor` and the line for the rc file of the user's shell, which is then added to a fresh
Debian home (/etc/skel) and tried in login and interactive bash, zsh and fish in tmux."""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.host import userns_overlay_works

REPO = Path(__file__).resolve().parent.parent
SKEL = Path("/etc/skel")  # a new Debian user's home: ~/.profile reads ~/.bashrc, then adds ~/.local/bin to PATH
LOGIN_PATH = "/usr/local/bin:/usr/bin:/bin"  # what login(1) gives a new user: no ~/.local/bin


def install_env(home, shell, **extra):
    env = {"HOME": str(home), "PATH": LOGIN_PATH, "LANG": "C.UTF-8", "SHELL": shell, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "HTTPS_PROXY", "https_proxy"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def printed_rc_line(stdout):
    """(rc file, line) from scripts/install's last words: 'add this line to RC:', a blank
    line, the line indented."""
    lines = stdout.rstrip("\n").split("\n")
    assert lines[-2] == "" and lines[-1].startswith("    ") and lines[-3].endswith(":"), lines[-4:]
    return lines[-3].rpartition(" add this line to ")[2][:-1], lines[-1][4:]


@pytest.mark.slow
def test_scripts_install_then_the_launcher_and_a_shim_work(tmp_path, toolbox, registry, pushed_images):
    if shutil.which("python3") is None:
        pytest.skip("no python3 on PATH")
    home = tmp_path / "user-home"
    home.mkdir()
    env = install_env(home, "/bin/bash", TOOLBOX_HOME=str(toolbox.root / "toolbox"))
    installed = subprocess.run([str(REPO / "scripts" / "install")], env=env, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    launcher = home / ".local" / "bin" / "toolbox"
    first_line = launcher.read_text().splitlines()[0]
    assert first_line.startswith("#!") and first_line.endswith(" -IS"), first_line
    # It ends with toolbox doctor's report (every check, the shell's last), then the rc line.
    report = json.loads(subprocess.run([str(launcher), "doctor", "--json"], env=env, capture_output=True, text=True, timeout=60).stdout)
    names = [check["name"] for check in report["checks"]]
    after_version = installed.stdout.partition("toolbox 0.1.0\n")[2].split("\n")
    assert [line[6:].split("  ")[0].strip() for line in after_version if line[:4] in ("ok  ", "warn", "FAIL")] == names, installed.stdout
    assert names[-1] == "shell" and "not on PATH" in report["checks"][-1]["detail"]  # not yet: the line is not in ~/.bashrc
    assert printed_rc_line(installed.stdout) == ("~/.bashrc", f'eval "$({launcher} shell-init bash)"')
    assert f'fix: add this line to ~/.bashrc: eval "$({launcher} shell-init bash)"' in installed.stdout  # doctor's fix: the same line
    recipes = subprocess.run([str(launcher), "recipes", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert recipes.returncode == 0 and "ghcr.io/jqlang/jq" in recipes.stdout, recipes.stderr  # packaged recipes
    toolbox.trust(registry)
    image = pushed_images["busybox"].reference
    if userns_overlay_works():
        ran = subprocess.run([str(launcher), "run", image, "sh", "-c", "echo from-the-image"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0 and ran.stdout == "from-the-image\n", ran.stderr
    # A shim written by the installed toolbox: its interpreter and import path, outside any pin.
    assert subprocess.run([str(launcher), "shim", "install", "jq"], env=env, capture_output=True, timeout=60).returncode == 0
    host_bin = tmp_path / "host-bin"
    host_bin.mkdir()
    (host_bin / "jq").write_text('#!/bin/sh\necho "host jq $*"\n')
    (host_bin / "jq").chmod(0o755)
    shim = Path(toolbox.layout.shims_dir) / "jq"
    fell = subprocess.run([str(shim), "x"], env=dict(env, PATH=f"{shim.parent}:{host_bin}:/usr/bin:/bin"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert fell.stdout == "host jq x\n", fell.stderr
    assert sys.executable not in shim.read_text()  # the installed venv's python, not the test's


def tmux_session(socket, env, command, typed, done, timeout=60):
    """Start `command` in a tmux session (a real terminal), type each of `typed` into it,
    wait for the file `done`, and return what the terminal showed."""
    tmux = ["tmux", "-S", str(socket), "-f", "/dev/null"]
    subprocess.run(tmux + ["new-session", "-d", "-x", "250", "-y", "50", "-s", "t", *command], env=env, check=True, timeout=30)
    try:
        for text in typed:
            subprocess.run(tmux + ["send-keys", "-t", "t", text, "Enter"], env=env, check=True, timeout=30)
        deadline = time.monotonic() + timeout
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return subprocess.run(tmux + ["capture-pane", "-p", "-S", "-", "-t", "t"], env=env, capture_output=True, text=True, timeout=30).stdout
    finally:
        subprocess.run(tmux + ["kill-server"], env=env, capture_output=True, timeout=30)


# What is typed at the first prompt: PATH as the shell exports it, where a child finds jq, what jq
# is to the shell, `toolbox doctor` by name; then a directory put first (a venv activated), which
# later prompts must leave first.
PROBES = {
    "sh": ["{{ printf '%s\\n' \"$PATH\"; sh -c 'command -v jq'; type jq | head -n 1; toolbox doctor --json; }} > {out} 2>&1",
           "export PATH={venv}:$PATH", "printf '%s\\n' \"$PATH\" > {later}; touch {done}"],
    "fish": ["begin; string join : $PATH; sh -c 'command -v jq'; type -t jq; toolbox doctor --json; end > {out} 2>&1",
             "set -gx PATH {venv} $PATH", "string join : $PATH > {later}; touch {done}"],
}


@pytest.mark.slow
def test_the_line_scripts_install_prints_works_in_login_and_interactive_shells(tmp_path):
    """A fresh Debian home: the line scripts/install prints for $SHELL, added to the rc file,
    puts the shims first on PATH in login and interactive shells (tmux, `bash -l`, `zsh -l`,
    `fish -l` and not), and `toolbox` runs by name, though ~/.profile adds ~/.local/bin only after
    ~/.bashrc has run and zsh and fish never read it."""
    assert (SKEL / ".profile").is_file() and (SKEL / ".bashrc").is_file(), "Debian's /etc/skel"
    home = tmp_path / "home"
    shutil.copytree(SKEL, home, symlinks=True)
    (home / ".zprofile").write_text("emulate sh -c '. ~/.profile'\n")  # a common way to share ~/.profile with zsh
    (home / ".config" / "fish").mkdir(parents=True)
    launcher = home / ".local" / "bin" / "toolbox"
    user = pwd.getpwuid(os.getuid()).pw_name
    for shell, rc in (("bash", ".bashrc"), ("zsh", ".zshrc"), ("fish", ".config/fish/config.fish")):
        installed = subprocess.run([str(REPO / "scripts" / "install")], env=install_env(home, shutil.which(shell)), capture_output=True,
                                   text=True, timeout=600)
        assert installed.returncode == 0, installed.stderr[-2000:]
        rc_name, line = printed_rc_line(installed.stdout)
        assert rc_name == f"~/{rc}" and str(launcher) in line, (rc_name, line)
        with open(home / rc, "a") as file:
            file.write(line + "\n")
    with open(home / ".config" / "fish" / "config.fish", "a") as file:
        file.write("fish_add_path ~/.local/bin\n")  # a later line that puts a directory before the shims
    session_env = {"HOME": str(home), "USER": user, "LOGNAME": user, "PATH": LOGIN_PATH, "LANG": "C.UTF-8", "TERM": "xterm-256color"}
    shims = home / ".local" / "share" / "toolbox" / "shims"
    put = subprocess.run([str(launcher), "shim", "install", "jq"], env=session_env, capture_output=True, text=True, timeout=60)
    assert put.returncode == 0, put.stderr
    with tempfile.TemporaryDirectory(prefix="tb-tmux-") as short:  # a socket path must be short
        for shell, mode in (("bash", "-l"), ("bash", "-i"), ("zsh", "-l"), ("zsh", "-i"), ("fish", "-l"), ("fish", "-i")):
            name = f"{shell}{mode}"
            out, later, done, venv = (tmp_path / f"{name}.{what}" for what in ("out", "later", "done", "venv"))
            typed = [text.format(out=out, later=later, done=done, venv=venv) for text in PROBES["fish" if shell == "fish" else "sh"]]
            screen = tmux_session(Path(short) / name, dict(session_env, SHELL=shutil.which(shell)), [shell, mode], typed, done)
            assert done.exists(), (name, screen)
            assert "not found" not in screen and "toolbox: " not in screen, (name, screen)
            lines = out.read_text().split("\n")
            assert lines[0].split(":")[0] == str(shims), (name, lines[0])
            assert lines[1] == str(shims / "jq"), (name, lines)
            assert "function" not in lines[2] and ("shims/jq" in lines[2] or lines[2] == "file"), (name, lines)  # found on PATH
            report = json.loads("\n".join(lines[3:]))
            shell_check = next(check for check in report["checks"] if check["name"] == "shell")
            assert shell_check["status"] == "ok" and "first on PATH (1 shim (jq))" in shell_check["detail"], (name, shell_check)
            assert later.read_text().split(":")[0] == str(venv), (name, "a later prompt moved the shims first again")
