"""Background services (`toolbox run -d`, `toolbox start`): a named container (containers.py)
whose tool runs under a monitor (monitor.py) instead of in the caller's place. Here: what a
service runs with and what it is doing, on disk, starting its monitor and stopping it;
ops/services.py builds the commands on these.

Beside the container's record, in its directory:
    service      how it runs: the RunSpec as plain values, the stop signal, --rm, what `ps` calls
                 it (marshal, written once by `run -d`)
    state        what it does: status, the tool's pid and that pid's start time, the monitor's
                 pid, when it started and finished, the exit code (KEY=VALUE lines, replaced whole)
    log, log.1   its output (monitor.py), the older half rotated out
    monitor.err  what the monitor itself could not do (normally empty)

Running means the container's lock is held (containers.is_running): the monitor and the tool
hold it, so it is free the moment both are gone, however they ended. A pid alone is never
believed: one from the state is used only while the process has the start time recorded with
it (pids are reused). Standard library only: `run -d` starts services from the launch path.
"""

import marshal
import os
import time

from toolbox.errors import ServiceError
from toolbox.runtime import containers

SERVICE = "service"
STATE = "state"
LOG = "log"
MONITOR_ERRORS = "monitor.err"
RUNNING, EXITED = "running", "exited"
DEFAULT_STOP_TIMEOUT = 10.0


def write_service(path: str, settings: dict[str, object]) -> None:
    _replace(os.path.join(path, SERVICE), marshal.dumps(settings))


def read_service(path: str) -> dict[str, object] | None:
    """The settings `run -d` wrote; None for a container that never ran in the background."""
    try:
        with open(os.path.join(path, SERVICE), "rb") as file:
            return marshal.load(file)
    except FileNotFoundError:
        return None
    except (EOFError, ValueError, TypeError):
        raise ServiceError(f"{path}/{SERVICE} is damaged",
                           hint=f"remove the container: toolbox rm {os.path.basename(path)}") from None


def write_state(path: str, **fields: object) -> None:
    text = "".join(f"{key}={value}\n" for key, value in fields.items() if value is not None)
    _replace(os.path.join(path, STATE), text.encode())


def read_state(path: str) -> dict[str, str]:
    try:
        with open(os.path.join(path, STATE), encoding="utf-8") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return {}
    return dict(line.partition("=")[::2] for line in lines if "=" in line)


def _replace(path: str, data: bytes) -> None:
    temp = f"{path}.{os.getpid()}.new"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(temp, path)


def start_time(pid: int) -> str | None:
    """When the process `pid` started (clock ticks since boot, /proc/PID/stat's 22nd field): with
    the pid, it names one process, not whichever reuses the number later. None when it is gone
    (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()  # the command name may hold spaces and parentheses
    if len(fields) <= 19 or fields[0] == b"Z":
        return None  # a zombie has ended: only its parent has yet to hear of it
    return fields[19].decode()


def service_pid(state: dict[str, str]) -> int | None:
    """The tool's pid from `state`, while that very process is alive."""
    pid = state.get("pid", "")
    if not pid.isdigit() or not state.get("pid_start"):
        return None
    return int(pid) if start_time(int(pid)) == state["pid_start"] else None


def monitor_pid(state: dict[str, str]) -> int | None:
    """The monitor's pid from `state`, while that very process is alive."""
    pid = state.get("monitor", "")
    if not pid.isdigit() or not state.get("monitor_start"):
        return None
    return int(pid) if start_time(int(pid)) == state["monitor_start"] else None


def start_monitor(path: str, lock_fd: int) -> int:
    """Start the service of the container at `path` under a new monitor (monitor.py), in its
    own session, and wait until the tool has been exec'd. `lock_fd` is the container's lock,
    which the monitor and the tool hold from then on (the caller closes its own copy). Returns
    the tool's pid; raises the error that stopped it from starting."""
    import sys

    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - replaced by exec
        try:
            os.close(ready_read)
            os.setsid()  # no controlling terminal: a hangup of the caller's does not reach it
            if os.fork() != 0:
                os._exit(0)  # the monitor is an orphan at once: no caller waits for it
            _exec_monitor(path, ready_write, lock_fd, sys.executable)
        finally:
            os._exit(127)
    os.close(ready_write)
    os.waitpid(child, 0)
    with os.fdopen(ready_read, "rb") as ready:
        data = ready.read()
    try:
        report = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        raise ServiceError(f"the monitor of {os.path.basename(path)} ended before the service started",
                           hint=f"see {os.path.join(path, MONITOR_ERRORS)}") from None
    if "pid" in report:
        return report["pid"]
    error = ServiceError(report["message"], hint=report.get("hint"))
    error.exit_code = report.get("exit_code", error.exit_code)
    error.step, error.errno = report.get("step"), report.get("errno")
    if error.step is not None and not error.hint:
        from toolbox.runtime.host import hint_for_run_failure  # probes the host, as a failed run does

        error.hint = hint_for_run_failure(error.step, error.errno)
    raise error


def _exec_monitor(path: str, ready_fd: int, lock_fd: int, python: str) -> None:
    """Become the monitor: a new interpreter (whatever the caller had imported, typer say, is
    not carried along), with -IS and the directories toolbox and cffi import from."""
    import _cffi_backend

    import toolbox

    paths = [os.path.dirname(os.path.dirname(os.path.abspath(toolbox.__file__))),
             os.path.dirname(os.path.abspath(_cffi_backend.__file__))]
    null = os.open(os.devnull, os.O_RDWR)
    errors = os.open(os.path.join(path, MONITOR_ERRORS), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(errors, 1)
    os.dup2(errors, 2)
    for fd in (ready_fd, lock_fd):
        os.set_inheritable(fd, True)
    boot = (f"import sys; sys.path[:0] = {paths!r}\n"
            "from toolbox.runtime.monitor import main\nsys.exit(main(sys.argv[1:]))")
    os.execv(python, [python, "-IS", "-c", boot, path, str(ready_fd), str(lock_fd)])


def stop(path: str, signum: int, timeout: float = DEFAULT_STOP_TIMEOUT) -> bool:
    """Send `signum` to the service at `path`, SIGKILL after `timeout` seconds, and wait until
    it and its monitor are gone. False when it was not running."""
    import _signal

    if not containers.is_running(path):
        return False
    state = read_state(path)
    if state.get("status") == EXITED and monitor_pid(state) is not None:
        _wait_until_stopped(path, 30.0)  # ended: its monitor is writing that down (another stop's)
        return True
    if state.get("status") != RUNNING:
        raise ServiceError(f"container {os.path.basename(path)!r} runs in the foreground "
                           "(toolbox run --name)",
                           hint="stop it where it runs: Ctrl-C in its terminal, or kill its process")
    _signal_service(state, signum)
    if not _wait_until_stopped(path, timeout):
        _signal_service(state, _signal.SIGKILL)
        if not _wait_until_stopped(path, 30.0):
            raise ServiceError(f"{os.path.basename(path)} is still running 30 s after SIGKILL",
                               hint=f"see {os.path.join(path, MONITOR_ERRORS)}")
    return True


def _signal_service(state: dict[str, str], signum: int) -> None:
    import _signal

    pid = service_pid(state)
    if pid is not None:
        try:
            os.kill(pid, signum)
            return
        except ProcessLookupError:
            return
    # The tool is gone and its monitor still writing down how it ended: wait for that; a
    # monitor that hangs (it never should) goes with SIGKILL.
    monitor = monitor_pid(state)
    if signum == _signal.SIGKILL and monitor is not None:
        os.kill(monitor, signum)


def _wait_until_stopped(path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pause = 0.005
    while containers.is_running(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
    return True


def signal_number(name: str | None) -> int:
    """An image's StopSignal ("SIGINT", "INT", "2") as a number; SIGTERM when it names none."""
    import _signal

    if not name:
        return _signal.SIGTERM
    text = name.strip().upper()
    if text.isdigit():
        return int(text)
    number = getattr(_signal, text if text.startswith("SIG") else "SIG" + text, None)
    if not isinstance(number, int) or text.startswith("SIG_"):
        raise ServiceError(f"unknown stop signal {name!r}", hint="use a name such as SIGINT, or a number")
    return number
