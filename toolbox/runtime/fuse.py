"""fuse-overlayfs as the container's root where the kernel refuses overlayfs in a user namespace.

Runs inside the new namespaces, before pivot_root. fuse-overlayfs must serve the filesystem for
as long as the tool runs, so it is the one resident process toolbox starts; it is kept tied to
the tool and out of its way:
- a child of this process, which then execs the tool: it gets SIGKILL when the tool exits
  (PR_SET_PDEATHSIG), and its mount namespace goes with it. SIGKILL, not SIGTERM: the server
  starts with its caller's signal dispositions and mask, and a caller that ignores or blocks
  SIGTERM (`trap '' TERM`, a blocked mask) would otherwise leave it serving a mount nobody
  uses, for ever. It loses nothing SIGTERM would have saved: the tool's files were closed when
  it exited, and closing a file on FUSE flushes its writes to the server first;
- in a session of its own: Ctrl-C and Ctrl-Z at the terminal go to the tool's process group,
  and a REPL that survives Ctrl-C keeps its filesystem;
- stdin and stdout on /dev/null and stderr in a log on the scratch tmpfs: it holds none of the
  tool's pipes open (`toolbox run ... | head` ends when the tool does), and what it says when
  it fails to start becomes the error;
- with the namespace's capabilities kept across its exec (ambient set): its uid is the user's,
  not 0, and without CAP_SYS_ADMIN it could not mount.
Standard library and the generated syscall module only.
"""

import _signal  # not `signal`, which imports enum (~3 ms)
import errno
import os
import time

from toolbox.runtime import syscalls as sc
from toolbox.runtime.programs import find_program

PROGRAM = "fuse-overlayfs"
DEVICE = "/dev/fuse"


def mount_overlay(lowerdirs: str, upper: str, work: str, target: str, log_path: str, timeout: float) -> None:
    """Mount fuse-overlayfs on `target` and return once the mount is there; OSError with what
    fuse-overlayfs said if it cannot. Lower directories may be relative to the cwd; all three
    are written as the option wants them (rootfs.escape)."""
    program = find_program(PROGRAM)
    if program is None:
        raise OSError(errno.ENOENT, f"{PROGRAM} is not installed (not on PATH)")
    _check_device()
    # allow_other: fuse-overlayfs adds it only when its uid is 0, and with --subids the tool may
    # switch to other ids of the namespace (no one outside the namespace can reach the mount).
    options = f"lowerdir={lowerdirs},upperdir={upper},workdir={work},allow_other"
    argv = [PROGRAM, "-f", "-o", options, target]
    device_before = os.stat(target).st_dev
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _become_server(program, argv, log_path, parent)
    _wait_for_mount(target, device_before, pid, log_path, timeout)


def _check_device():
    """Fail before the fork, with the reason, where /dev/fuse is closed to the user (0600)."""
    try:
        os.close(os.open(DEVICE, os.O_RDWR | os.O_CLOEXEC))
    except OSError as err:
        raise OSError(err.errno, f"{DEVICE} does not open read-write: {err.strerror}") from None


def _become_server(program, argv, log_path, parent):
    """In the child: never returns."""
    try:
        os.setsid()
        sc.set_parent_death_signal(_signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)  # the tool's side died before the signal was armed
        sc.keep_capabilities_across_exec()
        null = os.open(os.devnull, os.O_RDWR)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(log, 2)
        os.closerange(3, 1 << 16)  # an inherited container lock among them: it is the tool's
        os.execv(program, argv)
    except BaseException as err:
        try:
            os.write(2, f"cannot start {PROGRAM}: {err}\n".encode(errors="replace"))
        finally:
            os._exit(127)


def _wait_for_mount(target, device_before, pid, log_path, timeout):
    """The mount is there when the target's device changes; the child exiting first is a
    failure, with its log as the reason."""
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            raise OSError(errno.EIO, f"{PROGRAM} exited ({_describe(status)}): {_log_tail(log_path)}")
        if os.stat(target).st_dev != device_before:
            return
        if time.monotonic() > deadline:
            os.kill(pid, _signal.SIGKILL)
            os.waitpid(pid, 0)
            raise OSError(errno.ETIMEDOUT,
                          f"{PROGRAM} did not mount within {timeout:g} s: {_log_tail(log_path)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def _describe(status):
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"status {os.waitstatus_to_exitcode(status)}"


def _log_tail(log_path, limit=600):
    try:
        with open(log_path, "rb") as file:
            text = file.read().decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    lines = [line for line in text.splitlines() if not line.startswith("unknown argument ignored")]
    return " / ".join(lines)[-limit:] or "no message"
