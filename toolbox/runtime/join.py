"""Joining a running service (`toolbox exec`): its user, mount, network and pid namespaces, as
`nsenter` or `podman exec` do, then a command run as the service's user, in its root, with the
service's environment.

The process is named by an fd of its /proc/PID directory, opened while its start time was the
one recorded: the namespaces are opened through that fd, so a pid reused by another process in
between is never joined. setns() for a pid namespace places only the children that follow in
it: this process forks the command and waits for it (its exit status is the command's), the one
resident process `toolbox exec` adds, as `nsenter --pid` does.
"""

import _signal
import errno
import os
from _collections_abc import Callable  # collections.abc's own, loaded with os

from toolbox.errors import ToolboxError, report
from toolbox.runtime import syscalls as sc
from toolbox.runtime.container import execute, run_step, wait_until_single_threaded
from toolbox.runtime.signals import restore_caller_signals

# In the order they are joined: the user namespace first, which gives the capabilities the
# others need; the pid namespace last, for the command forked after it.
NAMESPACES = (("user", sc.CLONE_NEWUSER), ("mnt", sc.CLONE_NEWNS), ("net", sc.CLONE_NEWNET),
              ("pid", sc.CLONE_NEWPID))
JOIN = "join the service's namespaces"


def open_process(pid: int, start: str) -> int | None:
    """An fd of /proc/PID while that process is the one that started at `start` (services.start_time);
    None when it is gone."""
    try:
        fd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        with open(os.open("stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd), "rb") as file:
            stat = file.read()
    except ProcessLookupError:
        os.close(fd)
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if len(fields) <= 19 or fields[19].decode() != start:
        os.close(fd)
        return None
    return fd


def join_and_run(process_fd: int, argv: list[str], env: dict[str, str], cwd: str,
                 who: Callable[[], tuple[int, int] | None]) -> int:
    """Join the namespaces of the process `process_fd` names, run `argv` there as who() says
    once joined (uid, gid inside, looked up in the container's files; None: as the ids this user
    maps to there, the service's own), and return its exit status."""
    joined = []
    for name, kind in NAMESPACES:
        fd = run_step(JOIN, _open_namespace, process_fd, name)
        if os.fstat(fd)[1:3] == os.stat(f"/proc/self/ns/{name}")[1:3]:
            os.close(fd)  # already ours (the host's network, say): joining it again is refused
        else:
            joined.append((fd, kind))
    wait_until_single_threaded()
    for fd, kind in joined:
        run_step(JOIN, sc.setns, fd, kind)
        os.close(fd)
    ids = who()
    restore_caller_signals()  # the command starts with the dispositions the caller gave toolbox
    child = os.fork()
    if child == 0:
        _run_command(argv, env, cwd, ids)
    return _wait(child)


def _open_namespace(process_fd: int, name: str) -> int:
    return os.open(f"ns/{name}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=process_fd)


def _run_command(argv: list[str], env: dict[str, str], cwd: str, ids: tuple[int, int] | None) -> None:
    """In the child: never returns."""
    try:
        if ids is not None:
            _switch_ids(*ids)
        steps = ((f"chdir {cwd}", os.chdir, (cwd,)), ("set no_new_privs", sc.set_no_new_privs, ()),
                 ("refuse terminal injection (seccomp)", sc.block_terminal_injection, ()))
        for step, function, args in steps:
            try:
                function(*args)
            except OSError as err:
                raise ToolboxError(f"cannot run {argv[0]} in the service: {step}: {err.strerror}") from None
        execute(argv, env)
    except ToolboxError as err:
        os._exit(report(err))
    except BaseException as err:  # noqa: BLE001 - one line, and toolbox's status
        os._exit(report(err))


def _switch_ids(uid: int, gid: int) -> None:
    try:
        try:
            os.setgroups([gid])  # the service's supplementary groups are not the new user's
        except PermissionError:
            pass  # setgroups denied (one id mapped): there are no others to drop
        if os.getgid() != gid:
            os.setresgid(gid, gid, gid)
        if os.getuid() != uid:
            os.setresuid(uid, uid, uid)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        raise ToolboxError(f"-u: uid {uid} and gid {gid} are not mapped in this service, which maps only "
                           f"the ids it runs as (uid {os.getuid()}, gid {os.getgid()})",
                           hint="start the service as that user (toolbox run -d --user ...)") from None


def _wait(child: int) -> int:
    """Wait for the command as system(3) does: a Ctrl-C or Ctrl-\\ at the terminal reaches the
    command (it shares the foreground process group), not this waiting parent. Its status is
    passed on; killed by a signal, this process ends by the same signal, so that a shell sees
    what it would have seen of the command."""
    ignore = (_signal.SIGINT, _signal.SIGQUIT)
    for signum in ignore:
        _signal.signal(signum, _signal.SIG_IGN)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        _signal.signal(signum, _signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum
    return os.WEXITSTATUS(status)
