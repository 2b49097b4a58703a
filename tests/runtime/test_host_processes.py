"""What a tool can do to the user's other processes (README, threat model).

toolbox starts no pid namespace, and the tool's /proc is the host's: it sees every process, and
it may signal the user's own (kill(2) compares uids). It cannot reach into them: root, cwd, exe,
fd/N, environ, maps and mem need ptrace read access, which the kernel gives across user
namespaces only to a holder of CAP_SYS_PTRACE in the target's namespace (commoncap's
cap_ptrace_access_check); the tool's namespace is a child of the host's, so even root inside has
none there, and the answer is EACCES."""

import os
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.needs_userns

# What the tool tries on the host process: each is refused with EACCES (busybox says "Permission
# denied"). $1 is the pid, $2 the directory the process works in (not mounted in the tool), $3 a
# descriptor it holds open on the file there.
REFUSED = {
    "its root": "ls /proc/$1/root/",
    "a file through its root": "cat /proc/$1/root$2/secret.txt",
    "a file through its cwd": "cat /proc/$1/cwd/secret.txt",
    "where its cwd is": "readlink -v /proc/$1/cwd",
    "its executable": "readlink -v /proc/$1/exe",
    "its environment": "cat /proc/$1/environ",
    "what its descriptors are": "readlink -v /proc/$1/fd/0",
    "a file it holds open": "cat /proc/$1/fd/$3",
    "its memory map": "cat /proc/$1/maps",
    "its memory": "head -c 1 /proc/$1/mem",
}


@pytest.fixture
def host_process(tmp_path):
    """A long-running process of the user's, on the host, with a file in its working directory
    and a variable in its environment that the tool must not reach."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_text("host secret\n")
    with open(elsewhere / "secret.txt") as held:
        process = subprocess.Popen(["sleep", "300"], cwd=elsewhere,
                                   env={"SECRET_VAR": "host-secret", "PATH": "/usr/bin:/bin"},
                                   pass_fds=(held.fileno(),), stdin=subprocess.DEVNULL)
        fd = held.fileno()
    try:
        yield process, elsewhere, fd
    finally:
        process.kill()
        process.wait()


def test_a_tool_sees_and_signals_the_users_processes_but_cannot_reach_into_them(toolbox, registry,
                                                                                pushed_images, tmp_path,
                                                                                host_process):
    process, elsewhere, fd = host_process
    pid = str(process.pid)
    toolbox.trust(registry)
    image = pushed_images["busybox"].reference
    toolbox.pull(image)
    project = tmp_path / "project"
    project.mkdir()

    def inside(script, *options):
        return subprocess.run([sys.executable, "-m", "toolbox", "run", *options, image, "sh", "-c", script,
                               "sh", pid, str(elsewhere), str(fd)],
                              env=toolbox.env, cwd=project, capture_output=True, timeout=60)

    # From the host, as the same user in the same namespace, all of it is there to read.
    assert os.readlink(f"/proc/{pid}/cwd") == str(elsewhere)
    assert b"SECRET_VAR=host-secret" in open(f"/proc/{pid}/environ", "rb").read()
    assert (open(f"/proc/{pid}/root{elsewhere}/secret.txt").read() == open(f"/proc/{pid}/fd/{fd}").read()
            == "host secret\n")
    # From the tool, none of it, as the user or as root inside.
    for what, script in REFUSED.items():
        for options in ((), ("--user", "root")):
            result = inside(script, *options)
            assert result.returncode != 0 and b"Permission denied" in result.stderr, (what, options, result)
            assert b"secret" not in result.stdout and str(elsewhere).encode() not in result.stdout, (what,
                                                                                                     options,
                                                                                                     result)
    # What any process of the user's may see: the command line, the status, the mount table.
    assert inside("cat /proc/$1/cmdline").stdout == b"sleep\x00300\x00"
    status = inside("cat /proc/$1/status").stdout
    assert b"Name:\tsleep\n" in status and b"State:" in status
    mounts = inside("cat /proc/$1/mountinfo")
    assert mounts.returncode == 0 and b" / / " in mounts.stdout, mounts
    # And signals: kill(2) compares uids, which are the same on both sides of the id map.
    assert inside("kill -0 $1 && echo may-signal").stdout == b"may-signal\n"
    assert inside("kill -TERM $1").returncode == 0
    assert process.wait(timeout=10) == -signal.SIGTERM
