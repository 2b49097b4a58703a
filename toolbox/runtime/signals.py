"""The signal dispositions and mask a program toolbox starts begins with: the ones its caller gave
toolbox, as if the caller had started that program itself.

execve(2) keeps ignored signals ignored and the mask as it is, and resets caught signals to
SIG_DFL (signal(7)), so a program inherits what its starter ignores: `trap '' INT`, nohup's
SIGHUP, SIGINT and SIGQUIT in a non-interactive shell's `cmd &`. CPython changes three
dispositions at start, before any of our code runs (Modules/signalmodule.c,
signal_install_handlers): SIGPIPE and SIGXFSZ to SIG_IGN, unconditionally and without keeping
what they were, and SIGINT to its KeyboardInterrupt handler only where it was SIG_DFL (an
inherited SIG_IGN stays). It changes nothing else and not the mask; nor does toolbox. Left so,
every tool would run with SIGPIPE ignored: `seq 1 1000000 | head -1` would print "write error:
Broken pipe" and exit 1 instead of ending quietly (141 in the shell).

So before it starts a program (the tool, fuse-overlayfs, newuidmap and newgidmap, a host program
a shim falls through to), toolbox sets:
- SIGINT back to SIG_DFL where Python caught it (which it does only when it was SIG_DFL);
- SIGPIPE and SIGXFSZ, whose value Python lost, to what the parent process (the caller) has
  when the parent is a program that passes its own dispositions on to the programs it starts:
  a POSIX shell (`trap '' PIPE`, or one it inherited), make, xargs, find, timeout, flock, time,
  perl, or any program inside system(3); else to SIG_DFL. Programs that ignore SIGPIPE for
  themselves mostly start others with the default: Python's subprocess (restore_signals), fish,
  libuv (node, neovim, editors built on them), Rust's std::process. A parent that ignores it
  is evidence only when it is known to hand that on; otherwise the default, what nearly every
  program gets, is the better guess;
- every other signal, and the mask, as they came.
What it cannot see (README, "Signals"): a caller that exited before toolbox looked (a double
fork; `setsid` from an interactive shell), whose place init or a subreaper takes, and a caller
not on the list that hands an ignored SIGPIPE on (a Python os.fork and os.exec*, posix_spawn,
subprocess with restore_signals=False): their tools get SIG_DFL.

Standard library only, and `_signal` rather than `signal` (which imports enum, ~3 ms): the
launch path runs this.
"""

import _signal
import os

# Signals CPython ignores at start, forgetting their disposition: taken from the parent instead.
LOST = (_signal.SIGPIPE, _signal.SIGXFSZ)
# Programs (their executable's name, a version suffix dropped) that start others with their own
# SIGPIPE and SIGXFSZ dispositions. POSIX shells must (XCU 2.12: "traps ignored by the shell
# shall be set to be ignored by the utility"); bash, dash, zsh, busybox sh, make, xargs, find, timeout,
# flock, time, setsid and perl were seen to, under `trap '' PIPE` (tests/test_signals.py runs some).
PASSES_ON = frozenset({"sh", "dash", "bash", "rbash", "zsh", "ksh", "mksh", "pdksh", "oksh", "loksh", "yash",
                       "posh", "ash", "busybox", "make", "gmake", "xargs", "find", "timeout", "flock", "time",
                       "setsid", "perl",})


def _bit(signum):
    return 1 << (signum - 1)  # /proc/PID/status: signal N is bit N-1 of SigIgn, SigBlk


def parent_state(pid: int | None = None) -> tuple[str, int, int] | None:
    """(executable name, ignored mask, blocked mask) of the parent process, or None when it
    cannot be read (gone, another user's, in another pid namespace)."""
    pid = os.getppid() if pid is None else pid
    try:
        executable = os.readlink(f"/proc/{pid}/exe")
        fd = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
        try:
            status = b""
            while chunk := os.read(fd, 4096):
                status += chunk
        finally:
            os.close(fd)
    except OSError:
        return None
    masks = {}
    for line in status.split(b"\n"):
        key, _, value = line.partition(b":")
        if key in (b"SigIgn", b"SigBlk"):
            masks[key] = int(value, 16)
    name = os.path.basename(executable.removesuffix(" (deleted)")).rstrip("0123456789.-") or executable
    return name, masks.get(b"SigIgn", 0), masks.get(b"SigBlk", 0)


def passes_on(name: str, ignored: int, blocked: int) -> bool:
    """Whether a parent in this state starts programs with its own SIGPIPE and SIGXFSZ. A parent
    inside system(3) ignores SIGINT and SIGQUIT and blocks SIGCHLD while it waits (POSIX asks
    it; glibc's, musl's and perl's do), and the shell it started got its other dispositions:
    Python's os.system passes on the SIGPIPE Python ignores. That shell is the parent unless it
    exec'd the command in its own place (bash -c does; dash does not)."""
    in_system = (ignored & _bit(_signal.SIGINT) and ignored & _bit(_signal.SIGQUIT)
                 and blocked & _bit(_signal.SIGCHLD))
    return name in PASSES_ON or bool(in_system)


def caller_ignores(state: tuple[str, int, int] | None) -> frozenset[int]:
    """The signals of LOST the caller gave this process ignored, judged from the parent's
    state (parent_state())."""
    if state is None or not passes_on(*state):
        return frozenset()
    return frozenset(signum for signum in LOST if state[1] & _bit(signum))


def restore_caller_signals() -> None:
    """Give this process back the dispositions its caller gave it, as far as they can be known
    (see the module's doc), so that what it execs or forks starts with them. From here on, a
    SIGINT the caller left at its default ends this process, as it will end the tool."""
    if callable(_signal.getsignal(_signal.SIGINT)):  # Python's handler: only where it was SIG_DFL
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    ignored = caller_ignores(parent_state())
    for signum in LOST:
        _signal.signal(signum, _signal.SIG_IGN if signum in ignored else _signal.SIG_DFL)


def die_of_interrupt() -> int:
    """End this process as Ctrl-C ends a program that does not catch it: killed by SIGINT, not
    exiting 130. A shell tells the two apart: bash, interrupted while it waits for a program,
    stops its script only when the program died of SIGINT; one that exits takes the interrupt
    with it, and the script goes on (its "wait and cooperative exit"). For a KeyboardInterrupt
    on the way to the tool (a pull on first use, say), after its clean-up. Returns 130 where the
    signal is blocked."""
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    os.kill(os.getpid(), _signal.SIGINT)
    return 130


def default_signals() -> None:
    """Every disposition at its default and nothing blocked: what a service starts with, whoever
    started toolbox (a terminal's shell, nohup, an editor), as a program started by init does."""
    for signum in range(1, _signal.NSIG):
        if signum in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            _signal.signal(signum, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # the C library's own (glibc keeps 32 and 33)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
