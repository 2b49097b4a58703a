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
from tests.support.installation import REPO

# a new Debian user's home: ~/.profile reads ~/.bashrc, then adds ~/.local/bin to PATH
SKEL = Path("/etc/skel")
LOGIN_PATH = "/usr/local/bin:/usr/bin:/bin"  # what login(1) gives a new user: no ~/.local/bin


def install_env(home, shell, **extra):
    env = {"HOME": str(home), "PATH": LOGIN_PATH, "LANG": "C.UTF-8", "SHELL": shell,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "HTTPS_PROXY",
                "https_proxy"):
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
@pytest.mark.needs_program("python3")
def test_scripts_install_then_the_launcher_and_a_shim_work(tmp_path, toolbox, registry, pushed_images):
    home = tmp_path / "user-home"
    home.mkdir()
    env = install_env(home, "/bin/bash", TOOLBOX_HOME=str(toolbox.root / "toolbox"))
    # A shim an earlier toolbox wrote (its module was toolbox.shim then), and a program of the user's.
    shims = Path(toolbox.layout.shims_dir)
    shims.mkdir(parents=True, exist_ok=True)
    (shims / "rg").write_text("#!/usr/bin/python3 -IS\n# toolbox shim\nimport sys\nfrom toolbox.shim import "
                              "main\nsys.exit(main('rg'))\n")
    (shims / "mine").write_text("#!/bin/sh\necho mine\n")
    installed = subprocess.run([str(REPO / "scripts" / "install")], env=env, capture_output=True, text=True,
                               timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    rewritten = (shims / "rg").read_text()
    assert "from toolbox.hot.shim import main" in rewritten and "sys.exit(main('rg'))" in rewritten, rewritten
    assert (shims / "mine").read_text() == "#!/bin/sh\necho mine\n"
    launcher = home / ".local" / "bin" / "toolbox"
    first_line = launcher.read_text().splitlines()[0]
    assert first_line.startswith("#!") and first_line.endswith(" -IS"), first_line
    # It ends with toolbox doctor's report (every check, the shell's last), then the rc line.
    report = json.loads(subprocess.run([str(launcher), "doctor", "--json"], env=env, capture_output=True,
                                       text=True, timeout=60).stdout)
    names = [check["name"] for check in report["checks"]]
    after_version = installed.stdout.partition("toolbox 0.1.0\n")[2].split("\n")
    assert [line[6:].split("  ")[0].strip() for line in after_version
            if line[:4] in ("ok  ", "warn", "FAIL")] == names, installed.stdout
    # not yet: the line is not in ~/.bashrc
    assert names[-1] == "shell" and "not on PATH" in report["checks"][-1]["detail"]
    assert printed_rc_line(installed.stdout) == ("~/.bashrc",
                                                 f'[ -x {launcher} ] && eval "$({launcher} shell-init bash)"')
    # doctor's fix: the same line
    assert (f'fix: add this line to ~/.bashrc: [ -x {launcher} ] && eval "$({launcher} shell-init bash)"'
            in installed.stdout)
    recipes = subprocess.run([str(launcher), "recipes", "list"], env=env, capture_output=True, text=True,
                             timeout=60)
    # packaged recipes
    assert recipes.returncode == 0 and "ghcr.io/jqlang/jq" in recipes.stdout, recipes.stderr
    toolbox.trust(registry)
    image = pushed_images["busybox"].reference
    if userns_overlay_works():
        ran = subprocess.run([str(launcher), "run", image, "sh", "-c", "echo from-the-image"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0 and ran.stdout == "from-the-image\n", ran.stderr
    # A shim written by the installed toolbox: its interpreter and import path, outside any pin.
    assert subprocess.run([str(launcher), "shim", "install", "jq"], env=env, capture_output=True,
                          timeout=60).returncode == 0
    host_bin = tmp_path / "host-bin"
    host_bin.mkdir()
    (host_bin / "jq").write_text('#!/bin/sh\necho "host jq $*"\n')
    (host_bin / "jq").chmod(0o755)
    shim = Path(toolbox.layout.shims_dir) / "jq"
    fell = subprocess.run([str(shim), "x"], env=dict(env, PATH=f"{shim.parent}:{host_bin}:/usr/bin:/bin"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert fell.stdout == "host jq x\n", fell.stderr
    assert sys.executable not in shim.read_text()  # the installed venv's python, not the test's


def tmux_session(socket, env, command, typed, done, timeout=60):
    """Start `command` in a tmux session (a real terminal), type each of `typed` into it,
    wait for the file `done`, and return what the terminal showed."""
    tmux = ["tmux", "-S", str(socket), "-f", "/dev/null"]
    subprocess.run(tmux + ["new-session", "-d", "-x", "250", "-y", "50", "-s", "t", *command], env=env,
                   check=True, timeout=30)
    try:
        for text in typed:
            subprocess.run(tmux + ["send-keys", "-t", "t", text, "Enter"], env=env, check=True, timeout=30)
        deadline = time.monotonic() + timeout
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return subprocess.run(tmux + ["capture-pane", "-p", "-S", "-", "-t", "t"], env=env,
                              capture_output=True, text=True, timeout=30).stdout
    finally:
        subprocess.run(tmux + ["kill-server"], env=env, capture_output=True, timeout=30)


# What is typed at the first prompt: PATH as the shell exports it, where a child finds jq, what jq
# is to the shell, `toolbox doctor` by name; then a directory put first (a venv activated), which
# later prompts must leave first.
PROBES = {
    "sh": ["{{ printf '%s\\n' \"$PATH\"; sh -c 'command -v jq'; type jq | head -n 1; toolbox doctor --json; "
           "}} > {out} 2>&1",
           "export PATH={venv}:$PATH", "printf '%s\\n' \"$PATH\" > {later}; touch {done}"],
    "fish": ["begin; string join : $PATH; sh -c 'command -v jq'; type -t jq; toolbox doctor --json; end > "
             "{out} 2>&1",
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
    # a common way to share ~/.profile with zsh
    (home / ".zprofile").write_text("emulate sh -c '. ~/.profile'\n")
    (home / ".config" / "fish").mkdir(parents=True)
    launcher = home / ".local" / "bin" / "toolbox"
    user = pwd.getpwuid(os.getuid()).pw_name
    for shell, rc in (("bash", ".bashrc"), ("zsh", ".zshrc"), ("fish", ".config/fish/config.fish")):
        installed = subprocess.run([str(REPO / "scripts" / "install")],
                                   env=install_env(home, shutil.which(shell)), capture_output=True, text=True,
                                   timeout=600)
        assert installed.returncode == 0, installed.stderr[-2000:]
        rc_name, line = printed_rc_line(installed.stdout)
        assert rc_name == f"~/{rc}" and str(launcher) in line, (rc_name, line)
        with open(home / rc, "a") as file:
            file.write(line + "\n")
    with open(home / ".config" / "fish" / "config.fish", "a") as file:
        file.write("fish_add_path ~/.local/bin\n")  # a later line that puts a directory before the shims
    session_env = {"HOME": str(home), "USER": user, "LOGNAME": user, "PATH": LOGIN_PATH, "LANG": "C.UTF-8",
                   "TERM": "xterm-256color"}
    shims = home / ".local" / "share" / "toolbox" / "shims"
    put = subprocess.run([str(launcher), "shim", "install", "jq"], env=session_env, capture_output=True,
                         text=True, timeout=60)
    assert put.returncode == 0, put.stderr
    with tempfile.TemporaryDirectory(prefix="tb-tmux-") as short:  # a socket path must be short
        for shell, mode in (("bash", "-l"), ("bash", "-i"), ("zsh", "-l"), ("zsh", "-i"), ("fish", "-l"),
                            ("fish", "-i")):
            name = f"{shell}{mode}"
            out, later, done, venv = (tmp_path / f"{name}.{what}" for what in ("out", "later", "done",
                                                                               "venv"))
            typed = [text.format(out=out, later=later, done=done, venv=venv)
                     for text in PROBES["fish" if shell == "fish" else "sh"]]
            screen = tmux_session(Path(short) / name, dict(session_env, SHELL=shutil.which(shell)),
                                  [shell, mode], typed, done)
            assert done.exists(), (name, screen)
            assert "not found" not in screen and "toolbox: " not in screen, (name, screen)
            lines = out.read_text().split("\n")
            assert lines[0].split(":")[0] == str(shims), (name, lines[0])
            assert lines[1] == str(shims / "jq"), (name, lines)
            # found on PATH
            assert ("function" not in lines[2]
                    and ("shims/jq" in lines[2] or lines[2] == "file")), (name, lines)
            report = json.loads("\n".join(lines[3:]))
            shell_check = next(check for check in report["checks"] if check["name"] == "shell")
            assert (shell_check["status"] == "ok"
                    and "first on PATH (1 shim (jq))" in shell_check["detail"]), (name, shell_check)
            assert later.read_text().split(":")[0] == str(venv), (name, "a later prompt moved the shims "
                                                                        "first again")


def _quiet_shells(home, user, tmp_path, label):
    """A new login and interactive bash, zsh and fish in tmux, with the rc files of `home`: the
    screen of each, which must show no error."""
    session_env = {"HOME": str(home), "USER": user, "LOGNAME": user, "PATH": LOGIN_PATH, "LANG": "C.UTF-8",
                   "TERM": "xterm-256color"}
    screens = {}
    with tempfile.TemporaryDirectory(prefix="tb-tmux-") as short:
        for shell, mode in (("bash", "-l"), ("bash", "-i"), ("zsh", "-l"), ("zsh", "-i"), ("fish", "-l"),
                            ("fish", "-i")):
            name = f"{label}-{shell}{mode}"
            done = tmp_path / f"{name}.done"
            screens[name] = tmux_session(Path(short) / name, dict(session_env, SHELL=shutil.which(shell)),
                                         [shell, mode], [f"touch {done}"], done)
            assert done.exists(), (name, screens[name])
    return screens


@pytest.mark.slow
def test_self_uninstall_removes_what_install_made_and_the_rc_line_stays_quiet(tmp_path):
    """`toolbox self uninstall` lists (--dry-run: only lists) and removes the launcher, the venv,
    the shims, the store and the data directory, keeps the config directory unless told (no
    terminal to ask), and names the rc lines to remove; the line scripts/install printed, left in
    the rc files, then does nothing: a new bash, zsh or fish prints no error."""
    home = tmp_path / "home"
    shutil.copytree(SKEL, home, symlinks=True)
    (home / ".config" / "fish").mkdir(parents=True)
    installed = subprocess.run([str(REPO / "scripts" / "install")],
                               env=install_env(home, shutil.which("bash")), capture_output=True, text=True,
                               timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    launcher = home / ".local" / "bin" / "toolbox"
    from toolbox.ops.shimgen import rc_line

    lines = {"bash": printed_rc_line(installed.stdout)[1], "zsh": rc_line("zsh", str(launcher)),
             "fish": rc_line("fish", str(launcher))}
    for shell, rc in (("bash", ".bashrc"), ("zsh", ".zshrc"), ("fish", ".config/fish/config.fish")):
        with open(home / rc, "a") as file:
            file.write(lines[shell] + "\n")
    user = pwd.getpwuid(os.getuid()).pw_name
    env = {"HOME": str(home), "USER": user, "PATH": LOGIN_PATH, "LANG": "C.UTF-8"}

    def toolbox(*args):
        return subprocess.run([str(launcher), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120)

    # shims, a volume, the store
    for args in (("shim", "install", "jq"), ("volume", "create", "notes"), ("prune",)):
        assert toolbox(*args).returncode == 0, args
    data, cache, config = home / ".local/share/toolbox", home / ".cache/toolbox", home / ".config/toolbox"
    config.mkdir(parents=True)
    (config / "config.toml").write_text('[tools]\njq = "1.7.1"\n')
    venv = data / "venv"
    assert all(path.exists() for path in (launcher, venv, data / "shims" / "jq", data / "volumes" / "notes",
                                          cache, config / "config.toml"))
    dry = toolbox("self", "uninstall", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    parts = ("launcher", "virtualenv", "shims", "store", "data", "config")
    listed = {line.split()[0]: line.split()[1] for line in dry.stdout.splitlines()
              if line.split()[:1] and line.split()[0] in parts}
    assert listed == {"launcher": "~/.local/bin/toolbox", "virtualenv": "~/.local/share/toolbox/venv",
                      "shims": "~/.local/share/toolbox/shims", "store": "~/.cache/toolbox",
                      "data": "~/.local/share/toolbox", "config": "~/.config/toolbox"}, dry.stdout
    assert "(1 volume, " in dry.stdout and "(only with --yes, or if you answer yes)" in dry.stdout
    assert all(path.exists() for path in (launcher, venv, data, cache, config))  # a dry run removes nothing
    done = toolbox("self", "uninstall")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert not launcher.exists() and not data.exists() and not cache.exists(), done.stdout
    # nobody to ask
    assert (config / "config.toml").exists() and "(kept: no terminal to ask; --yes removes it)" in done.stdout
    assert "Removed toolbox; kept ~/.config/toolbox" in done.stdout
    for rc, line in (("~/.bashrc", lines["bash"]), ("~/.zshrc", lines["zsh"]),
                     ("~/.config/fish/config.fish", lines["fish"])):
        assert any(text.startswith(f"  {rc}:") and text.endswith(f": {line} (it does nothing once toolbox is "
                                                                 "gone)")
                   for text in done.stdout.splitlines()), (rc, done.stdout)
    rest = subprocess.run([sys.executable, "-m", "toolbox", "self", "uninstall", "--yes"],
                          env=dict(env, PYTHONPATH=str(REPO)), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)
    assert rest.returncode == 0 and not config.exists(), rest.stdout + rest.stderr  # --yes: the config too
    # a toolbox run from another environment leaves that environment alone
    assert Path(sys.executable).exists()
    # The lines left in the rc files: silent, in the shells' own startup and on their own.
    for shell, argv in (("bash", ["bash", "--norc", "--noprofile", "-c"]), ("zsh", ["zsh", "-f", "-c"]),
                        ("fish", ["fish", "--no-config", "-c"])):
        ran = subprocess.run(argv + [lines[shell] + "; echo after"], env=env, capture_output=True, text=True,
                             timeout=60)
        assert (ran.stdout, ran.stderr) == ("after\n", ""), (shell, ran)
    for name, screen in _quiet_shells(home, user, tmp_path, "after").items():
        assert not any(word in screen for word in ("No such file", "not found", "toolbox: ",
                                                   "bad interpreter", "Unknown command")), (name, screen)


def test_self_uninstall_recognises_only_the_launcher_scripts_install_writes(tmp_path):
    """pip's console script and other programs named toolbox are not taken for the launcher, so
    their interpreter's environment is never removed."""
    from toolbox.ops.uninstall import install_launcher_venv

    venv = tmp_path / "share" / "toolbox" / "venv"
    ours = tmp_path / "ours"
    ours.write_text(f'#!{venv}/bin/python3 -IS\nimport sys\nsys.path[:0] = '
                    f'["{venv}/lib/python3/site-packages"]\n'
                    "from toolbox.entry import main\nsys.exit(main())\n")
    assert install_launcher_venv(ours) == str(venv)
    pip = tmp_path / "pip"
    pip.write_text(f"#!{venv}/bin/python3\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom "
                   "toolbox.entry import main\n"
                   "if __name__ == '__main__':\n    sys.exit(main())\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(ours.read_text().replace(str(venv), str(tmp_path / "project" / ".venv")))
    assert install_launcher_venv(pip) is None and install_launcher_venv(elsewhere) is None
    assert install_launcher_venv(tmp_path / "missing") is None
