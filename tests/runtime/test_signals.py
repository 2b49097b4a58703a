"""A tool starts with the signal dispositions and mask its caller gave toolbox, as a program the
caller started itself would (toolbox/signals.py): SIGPIPE at its default unless the caller
ignores it, so `tool | head -1` ends quietly with 141; what the calling shell ignores (`trap ''
INT`, nohup, `cmd &`) stays ignored; the mask passes through. The same for fuse-overlayfs, which
toolbox starts before the tool, and for a host program a shim falls through to.

Each caller (real bash, interactive on a terminal too, zsh, fish, make, xargs, Python's
subprocess and os.system) runs the same command natively (the host's busybox) and through
toolbox, in each root filesystem mode; their /proc/self/status must agree. A Ctrl-C before the
tool has started ends toolbox by SIGINT, as it would have ended the tool."""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.support import images
from tests.support.rootfs_modes import rootfs_mode_params
from tests.support.upstream import Upstream

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
SEPARATOR = "=== toolbox ==="


def toolbox_command(busybox):
    return f"{sys.executable} -m toolbox run {busybox}"


def signal_fields(status):
    """SigIgn and SigBlk of a /proc/PID/status text."""
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return {key: int(fields[key], 16) for key in ("SigIgn", "SigBlk")}


def bit(signum):
    return 1 << (signum - 1)


class Caller:
    """A way of starting programs: `argv` (with `stdin`) runs the native command, prints
    SEPARATOR, runs the toolbox one. `ignores`: signals the native command must show ignored,
    so that the setup is known to work."""

    def __init__(self, argv, ignores=(), stdin=None):
        self.argv, self.ignores, self.stdin = argv, ignores, stdin

    def run(self, env, cwd):
        """(native status, toolbox status) as /proc/self/status texts, or an AssertionError."""
        result = subprocess.run(self.argv, input=self.stdin, stdin=None if self.stdin else subprocess.DEVNULL,
                                env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
        # \r\n: from a terminal
        native, _, boxed = result.stdout.replace("\r\n", "\n").partition(SEPARATOR + "\n")
        assert result.returncode == 0 and "SigIgn" in native and "SigIgn" in boxed, (self.argv, result)
        return native, boxed


def callers(native, boxed):
    """name -> Caller. A trailing `:` keeps a shell from exec'ing the last command in its own
    place: the parent of each command is the caller named."""
    pipe, xfsz, sigint, quit_ = signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT
    makefile = f"all:\n\t@{native}\n\t@echo '{SEPARATOR}'\n\t@{boxed}\n"
    python_subprocess = ("import shlex, signal, subprocess\n"
                         "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGWINCH})\n"
                         f"subprocess.run(shlex.split({native!r}))\nprint({SEPARATOR!r}, flush=True)\n"
                         f"subprocess.run(shlex.split({boxed!r}))\n")
    python_system = (f"import os\nos.system({native!r})\nprint({SEPARATOR!r}, flush=True)\n"
                     f"os.system({boxed!r})\n")
    # With `exec`, the shell system(3) started becomes the command: its parent is Python, in system().
    python_system_exec = python_system.replace("os.system('", "os.system('exec ")
    both = f"{native}; echo '{SEPARATOR}'; {boxed}; :"
    # xargs appends the path to the command.
    by_xargs = (f"echo /proc/self/status | xargs {native.rsplit(' ', 1)[0]}; echo '{SEPARATOR}'; "
                f"echo /proc/self/status | xargs {boxed.rsplit(' ', 1)[0]}; :")
    return {
        "bash": Caller(["bash", "-c", both]),
        # On a terminal, as a user types it: job control, and the shell ignores SIGQUIT, SIGTERM
        # and SIGTSTP for itself but not for what it starts. (util-linux script makes the terminal.)
        "interactive bash": Caller(["script", "-qec", f"bash --norc --noprofile -i -c {shlex.quote(both)}",
                                    "/dev/null"]),
        "bash, trap '' INT": Caller(["bash", "-c", f"trap '' INT; {both}"], (sigint,)),
        "bash, trap '' PIPE": Caller(["bash", "-c", f"trap '' PIPE; {both}"], (pipe,)),
        "bash, trap '' on five": Caller(["bash", "-c", f"trap '' PIPE XFSZ TERM USR1 QUIT; {both}"],
                                        (pipe, xfsz, signal.SIGTERM, signal.SIGUSR1, quit_)),
        "bash, nohup": Caller(["bash", "-c", f"nohup {native}; echo '{SEPARATOR}'; nohup {boxed}; :"],
                              (signal.SIGHUP,)),
        "bash, cmd &": Caller(["bash", "-c", f"{native} & wait; echo '{SEPARATOR}'; {boxed} & wait; :"],
                              (sigint, quit_)),
        "zsh, trap '' PIPE": Caller(["zsh", "-c", f"trap '' PIPE; {both}"], (pipe,)),
        "fish": Caller(["fish", "-c", f"{native}; echo '{SEPARATOR}'; {boxed}; true"]),
        "make": Caller(["make", "-s", "-f", "-"], stdin=makefile),
        "make, under trap '' PIPE": Caller(["bash", "-c", "trap '' PIPE; make -s -f - "
                                                          f"<<'EOF'\n{makefile}EOF\n:"], (pipe,)),
        "xargs": Caller(["bash", "-c", by_xargs]),
        "xargs, under trap '' PIPE": Caller(["bash", "-c", f"trap '' PIPE; {by_xargs}"], (pipe,)),
        "python subprocess, a mask": Caller([sys.executable, "-c", python_subprocess]),
        "python os.system": Caller([sys.executable, "-c", python_system], (pipe, xfsz)),
        "python os.system, exec": Caller([sys.executable, "-c", python_system_exec], (pipe, xfsz)),
    }


def differences(caller, env, cwd, helper_log=None):
    """What differs between the native command's SigIgn/SigBlk and the toolbox one's (and the
    fuse-overlayfs helper's, with `helper_log`), or []."""
    if helper_log is not None:
        helper_log.unlink(missing_ok=True)
    native, boxed = (signal_fields(status) for status in caller.run(env, cwd))
    found = [f"the native command does not ignore signal {signum}: the setup does not work"
             for signum in caller.ignores
             if not native["SigIgn"] & bit(signum)]
    started = {"toolbox": boxed}
    if helper_log is not None:
        started["fuse-overlayfs"] = signal_fields(helper_log.read_text())
    for what, fields in started.items():
        if fields != native:
            found.append(f"{what} {fields['SigIgn']:#x}/{fields['SigBlk']:#x} != native "
                         f"{native['SigIgn']:#x}/{native['SigBlk']:#x} (SigIgn/SigBlk)")
    return found


def fake_fuse_overlayfs(directory, log):
    """A fuse-overlayfs first on PATH that writes its own /proc status to `log`, then runs the
    real one: what the helper starts with, before fuse sets up handlers of its own."""
    real = shutil.which("fuse-overlayfs")
    directory.mkdir()
    script = directory / "fuse-overlayfs"
    # Read with builtins only: a command dash forks would start with what dash gives it, not
    # with what dash was given.
    script.write_text('#!/bin/sh\nwhile IFS= read -r line; do echo "$line"; done < /proc/$$/status > '
                      f'{log}\nexec {real} "$@"\n')
    script.chmod(0o755)
    return str(directory)


@pytest.mark.parametrize("mode", rootfs_mode_params())
def test_the_tool_starts_with_its_callers_dispositions_and_mask(toolbox, busybox, tmp_path, mode):
    native = f"{BUSYBOX} cat /proc/self/status"
    boxed = f"{toolbox_command(busybox)} cat /proc/self/status"
    env = dict(toolbox.env, TOOLBOX_ROOTFS=mode)
    helper_log = None
    if mode == "fuse-overlayfs":
        helper_log = tmp_path / "fuse-overlayfs.status"
        env["PATH"] = fake_fuse_overlayfs(tmp_path / "fake", helper_log) + ":" + env["PATH"]
    problems = {name: found for name, caller in callers(native, boxed).items()
                if (found := differences(caller, env, toolbox.root, helper_log))}
    assert problems == {}


@pytest.mark.parametrize("mode", rootfs_mode_params())
def test_a_closed_pipe_ends_the_tool_quietly(toolbox, busybox, mode):
    """`yes | head -1`: natively yes dies of SIGPIPE (141, nothing on stderr); under `trap ''
    PIPE` it gets EPIPE and says so. Through toolbox, the same."""
    env = dict(toolbox.env, TOOLBOX_ROOTFS=mode)
    for setup in ("", "trap '' PIPE; "):
        script = (f"{setup}{BUSYBOX} yes | head -1; echo status=${{PIPESTATUS[0]}}\n"
                  f"{setup}{toolbox_command(busybox)} busybox yes | head -1; "
                  "echo status=${PIPESTATUS[0]}\n")
        result = subprocess.run(["bash", "-c", script], env=env, cwd=toolbox.root, capture_output=True,
                                text=True, timeout=120)
        lines = result.stdout.splitlines()
        assert lines[:2] == ["y", "status=141" if not setup else "status=1"], (setup, result)
        assert lines[2:] == lines[:2], (setup, result.stdout, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line]
        # yes's own complaint, from each
        assert len(errors) == (0 if not setup else 2), (setup, result.stderr)


@pytest.fixture
def pinned_busybox(toolbox, registry, tmp_path):
    """A project pinning `jq` at a version whose image is busybox itself (its entrypoint), and
    the jq shim: `jq yes` is busybox's yes, run through the shim."""
    upstream = Upstream(toolbox, registry)
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1",
                     images.build_image(images.busybox_spec(entrypoint=("/bin/busybox",), cmd=None)))
    project = tmp_path / "project"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
    installed = subprocess.run([sys.executable, "-m", "toolbox", "shim", "install", "jq"], env=toolbox.env,
                               cwd=project, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    shim = os.path.join(toolbox.layout.shims_dir, "jq")
    # locks and pulls
    warm = subprocess.run([shim, "true"], env=toolbox.env, cwd=project, capture_output=True, timeout=120)
    assert warm.returncode == 0, warm.stderr
    return project, shim


def test_a_shimmed_tool_starts_with_its_callers_dispositions(toolbox, pinned_busybox):
    project, shim = pinned_busybox
    native, boxed = f"{BUSYBOX} cat /proc/self/status", f"{shim} cat /proc/self/status"
    names = ("interactive bash", "bash, trap '' PIPE", "bash, cmd &", "fish", "python subprocess, a mask")
    problems = {name: found for name in names if (found := differences(callers(native, boxed)[name],
                                                                       toolbox.env, project))}
    assert problems == {}
    piped = subprocess.run(["bash", "-c", f"{shim} yes | head -1; echo status=${{PIPESTATUS[0]}}"],
                           env=toolbox.env, cwd=project, capture_output=True, text=True, timeout=120)
    assert (piped.stdout, piped.stderr) == ("y\nstatus=141\n", "")


def test_a_shim_falling_through_starts_the_host_program_with_its_callers_dispositions(toolbox, tmp_path):
    """Outside any pin, the jq shim runs the next jq on PATH: here the host's cat under that
    name, run natively and through the shim by the same caller."""
    host_bin = tmp_path / "host-bin"
    host_bin.mkdir()
    (host_bin / "jq").symlink_to(shutil.which("cat"))
    installed = subprocess.run([sys.executable, "-m", "toolbox", "shim", "install", "jq"], env=toolbox.env,
                               cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    shim = os.path.join(toolbox.layout.shims_dir, "jq")
    env = dict(toolbox.env, PATH=f"{host_bin}:{toolbox.env['PATH']}")
    names = ("bash", "bash, trap '' PIPE", "bash, cmd &", "python subprocess, a mask")
    native, boxed = f"{host_bin / 'jq'} /proc/self/status", f"{shim} /proc/self/status"
    problems = {name: found for name in names if (found := differences(callers(native, boxed)[name], env,
                                                                       tmp_path))}
    assert problems == {}


def test_which_parents_pass_their_dispositions_on():
    from toolbox.runtime.signals import caller_ignores, parent_state, passes_on

    pipe, xfsz, sigint, quit_, chld = (bit(s) for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT,
                                                        signal.SIGQUIT, signal.SIGCHLD))
    assert passes_on("bash", 0, 0) and passes_on("dash", 0, 0) and passes_on("make", 0, 0)
    # Python, fish and libuv ignore SIGPIPE for themselves and start programs with the default.
    assert (not passes_on("python", pipe | xfsz, 0) and not passes_on("fish", pipe, 0)
            and not passes_on("node", pipe, 0))
    # ... except inside system(3), which passes them on: SIGINT and SIGQUIT ignored, SIGCHLD blocked.
    assert passes_on("python", pipe | xfsz | sigint | quit_, chld)
    assert caller_ignores(("bash", pipe | xfsz | sigint, 0)) == {signal.SIGPIPE, signal.SIGXFSZ}
    # SIGINT is not Python's to forget: it is kept as inherited
    assert caller_ignores(("bash", sigint, 0)) == set()
    assert caller_ignores(("python", pipe | xfsz, 0)) == set()
    assert caller_ignores(None) == set()  # a parent that cannot be read: the default
    # The parent's state, read from /proc: a shell ignoring SIGPIPE, by its executable's name.
    shell = subprocess.Popen(["bash", "-c", "trap '' PIPE; sleep 30; :"])
    try:
        deadline = time.monotonic() + 10
        while (state := parent_state(shell.pid)) and not state[1] & pipe and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state[0] == "bash" and state[1] & pipe, state
    finally:
        shell.kill()
        shell.wait()
    assert parent_state(2**22 + 1) is None  # no such process


def test_ctrl_c_on_the_way_to_the_tool_stops_the_calling_script(toolbox, registry, tmp_path):
    """Ctrl-C while `toolbox run` pulls the image on first use: toolbox cleans up and dies of
    SIGINT, as the tool would have, so a bash loop around it stops (bash goes on after a child
    that exits 130: it takes the interrupt as handled)."""
    import random

    from tests.support.faults import FaultProxy
    from tests.support.push import push_raw

    data = images.Layer((images.file("data.bin", random.Random(12).randbytes(3 * 1024 * 1024)),))
    built = images.build_image(images.busybox_spec(layers=(images.busybox_layer(), data),
                                                   labels={"org.example.scenario": "ctrl-c-run"}))
    push_raw(registry, "ctrl-c/run", "1", built)
    with FaultProxy(registry.url) as proxy:
        toolbox.trust(registry, proxy)
        stall = proxy.add(rf"/blobs/{built.layers[1]['digest']}$", "stall_after", after=1024 * 1024,
                          seconds=10, times=100)
        script = (f"for i in 1 2; do {toolbox_command(f'{proxy.host}/ctrl-c/run:1')} true; echo after $i; "
                  "done; echo end")
        # SIGINT at its default, as a terminal's shell starts programs (see test_run.py).
        loop = subprocess.Popen(["env", "--default-signal=INT", "bash", "-c", script], env=toolbox.env,
                                cwd=toolbox.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while not stall.fired and time.monotonic() < deadline:
                time.sleep(0.01)
            assert stall.fired, "the pull never reached the stalled layer"
            time.sleep(0.2)
            os.killpg(loop.pid, signal.SIGINT)  # what Ctrl-C at a terminal does: the whole foreground group
            out, err = loop.communicate(timeout=60)
        finally:
            if loop.poll() is None:
                os.killpg(loop.pid, signal.SIGKILL)
                loop.wait()
    assert (loop.returncode, out) == (-signal.SIGINT, ""), err
    assert "Traceback" not in err and toolbox.leftovers() == []
