"""The monitor of a background service, one per service, as conmon is to podman's containers:
the tool's parent, which writes down its pid, keeps its output in a log and records how it
ended. No daemon: it exits with the service.

services.start_monitor starts it in a session of its own, as a fresh interpreter (-IS, this
package's runtime and leaves only: ~10 MiB resident). It then
1. enters a new user namespace (the service's ids mapped, as `toolbox run` does) and a new
   pid namespace, in which it forks the tool: pid 1 there, so that every process of the service
   ends when the tool does. The tool unshares its mount namespace, assembles its root on the
   container's writable layer and execs (container.py), its stdin /dev/null, its stdout and
   stderr two pipes, every signal at its default;
2. learns from a close-on-exec pipe whether the exec happened (a failure's message comes through
   it instead), writes the state (services.py) and tells the caller, which then returns;
3. copies the tool's output into the log until the tool is gone: one line for each line of it,
   `TIME STREAM F|P TEXT` as podman's k8s-file logs (P: a partial line, continued by the next),
   the log rotated to log.1 past TOOLBOX_LOG_MAX_BYTES (10 MiB);
4. records the exit status (128 + N for a signal), removes the container if asked (--rm), and
   exits. The container's lock, which it and the tool hold, is then free: that, not a pid, is
   what tells `ps` the service is not running, however the monitor ended.
"""

import marshal
import os
import select
import time

from toolbox.errors import EXIT_TOOLBOX_FAILED, ToolboxError
from toolbox.runtime import containers
from toolbox.runtime import syscalls as sc
from toolbox.runtime.container import assemble_and_exec, enter_namespaces, run_step
from toolbox.runtime.services import EXITED, LOG, RUNNING, read_service, start_time, write_state
from toolbox.runtime.signals import default_signals
from toolbox.runtime.spec import spec_from_values

LOG_MAX_ENV = "TOOLBOX_LOG_MAX_BYTES"
LOG_MAX_BYTES = 10 * 1024 * 1024
PARTIAL_AFTER = 16 * 1024  # a line longer than this is logged in parts
UNSHARE_MOUNT = "unshare the mount namespace"


def main(argv: list[str]) -> int:
    path, ready_fd, lock_fd = argv[0], int(argv[1]), int(argv[2])
    for fd in (ready_fd, lock_fd):
        os.set_inheritable(fd, fd == lock_fd)  # the tool holds the lock; the caller waits on ready only
    try:
        settings = read_service(path)
        if settings is None:
            raise ToolboxError(f"{path} has no service settings")
    except ToolboxError as err:
        _tell(ready_fd, {"message": err.message, "hint": err.hint})
        return EXIT_TOOLBOX_FAILED
    return Monitor(path, settings, ready_fd, lock_fd).run()


def _tell(ready_fd: int, report: dict[str, object]) -> None:
    try:
        os.write(ready_fd, marshal.dumps(report))
    finally:
        os.close(ready_fd)


class Monitor:
    __slots__ = ("path", "settings", "ready_fd", "lock_fd", "name")

    def __init__(self, path: str, settings: dict, ready_fd: int, lock_fd: int) -> None:
        self.path = path
        self.settings = settings
        self.ready_fd = ready_fd
        self.lock_fd = lock_fd  # the container's lock, which the tool inherits
        self.name = os.path.basename(path)

    def run(self) -> int:
        spec = spec_from_values(self.settings["spec"])
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        sync_read, sync_write = os.pipe()
        forwarder = None
        try:
            if self.settings.get("ports"):
                forwarder = _forwarder(self.settings["ports"])  # bound here, in the host's network
            enter_namespaces(spec, sc.CLONE_NEWPID)
        except ToolboxError as err:
            return self._failed(_report_of(err), None)
        pid = os.fork()
        if pid == 0:
            _become_the_tool(spec, out_write, err_write, sync_write)
        for fd in (out_write, err_write, sync_write):
            os.close(fd)
        failure = _read_all(sync_read)
        if failure:
            return self._failed(marshal.loads(failure), pid)
        started = time.time()
        write_state(self.path, status=RUNNING, pid=pid, pid_start=start_time(pid), monitor=os.getpid(),
                    monitor_start=start_time(os.getpid()), started=f"{started:.3f}")
        _tell(self.ready_fd, {"pid": pid})
        log = os.path.join(self.path, LOG)
        code = _exit_code(pump_output(out_read, err_read, log, _log_max_bytes(), pid, forwarder))
        self._finished(started, code)
        return 0

    def _failed(self, report: dict[str, object], pid: int | None) -> int:
        """Record the failure and let go of the container before the caller hears of it, so
        that a `ps` right after shows it ended. Writing the state can fail here (in a user
        namespace whose ids could not be mapped, no file can be made): the caller still hears."""
        if pid is not None:
            os.waitpid(pid, 0)
        try:
            self._finished(None, report.get("exit_code", EXIT_TOOLBOX_FAILED))
        except OSError:
            pass  # `ps` shows it exited, without the status: its lock is free
        os.close(self.lock_fd)
        _tell(self.ready_fd, report)
        return 0

    def _finished(self, started: float | None, code: int) -> None:
        write_state(self.path, status=EXITED, exit_code=code, finished=f"{time.time():.3f}",
                    started=None if started is None else f"{started:.3f}")
        if self.settings.get("remove"):
            containers.remove_own(self.path)


def _forwarder(ports: list[tuple]):
    from toolbox.runtime.forward import Forwarder, Port

    return Forwarder([Port(*values) for values in ports])


def _become_the_tool(spec, out_fd: int, err_fd: int, sync_fd: int) -> None:
    """pid 1 of the new pid namespace. Never returns: execs the tool, or tells the monitor why
    not through `sync_fd` (closed on exec: nothing read there means the exec happened)."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        default_signals()
        run_step(UNSHARE_MOUNT, sc.unshare, sc.CLONE_NEWNS)
        assemble_and_exec(spec)
    except ToolboxError as err:
        report = _report_of(err)
    except BaseException as err:  # noqa: BLE001 - whatever it is, the caller hears of it
        report = {"message": f"the service did not start: {err!r}", "exit_code": EXIT_TOOLBOX_FAILED}
    try:
        os.write(sync_fd, marshal.dumps(report))
    finally:
        os._exit(report.get("exit_code", EXIT_TOOLBOX_FAILED))


def _report_of(err: ToolboxError) -> dict[str, object]:
    return {"message": err.message, "hint": err.hint, "exit_code": err.exit_code,
            "step": getattr(err, "step", None), "errno": getattr(err, "errno", None)}


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    return data


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _log_max_bytes() -> int:
    text = os.environ.get(LOG_MAX_ENV, "")
    return int(text) if text.isdigit() and int(text) > 0 else LOG_MAX_BYTES


def pump_output(out_fd: int, err_fd: int, log_path: str, max_bytes: int, pid: int,
                forwarder: object | None = None) -> int:
    """Copy the tool's stdout and stderr into the log, and forward its published ports
    (`forwarder`: a forward.Forwarder), until the tool `pid` has exited and its output is read
    (everything it started ends with it, in its pid namespace, so the pipes close then). A tool
    that closes its stdout and stderr early (logging to files, as servers may) keeps its ports.
    Returns its wait status."""
    log = Log(log_path, max_bytes)
    pending = {out_fd: b"", err_fd: b""}
    streams = {out_fd: "stdout", err_fd: "stderr"}
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN)
    exited = os.pidfd_open(pid)
    poller.register(exited, select.POLLIN)
    if forwarder is not None:
        forwarder.attach(poller)
    status, drain_until = None, None
    while pending and (drain_until is None or time.monotonic() < drain_until) or status is None:
        for fd, events in poller.poll(None if drain_until is None else 100):
            if fd == exited:
                status = os.waitpid(pid, 0)[1]
                poller.unregister(exited)
                os.close(exited)
                drain_until = time.monotonic() + 2.0  # what is left in the pipes, then no longer
            elif fd in pending:
                _copy(fd, pending, streams[fd], log, poller)
            elif forwarder is not None:
                forwarder.handle(fd, events)
    for fd, rest in pending.items():
        if rest:
            log.write(streams[fd], "P", rest)
        os.close(fd)
    log.close()
    if forwarder is not None:
        forwarder.close()
    return status


def _copy(fd: int, pending: dict[int, bytes], stream: str, log: "Log", poller: "select.poll") -> None:
    """One read of the tool's `stream`, its whole lines logged; a line longer than PARTIAL_AFTER
    in parts, the rest kept in `pending` for the next read. At EOF the stream is done."""
    data = os.read(fd, 65536)
    if not data:
        if pending[fd]:
            log.write(stream, "P", pending[fd])
        poller.unregister(fd)
        os.close(fd)
        del pending[fd]
        return
    lines = (pending[fd] + data).split(b"\n")
    for line in lines[:-1]:
        log.write(stream, "F", line)
    rest = lines[-1]
    while len(rest) > PARTIAL_AFTER:
        log.write(stream, "P", rest[:PARTIAL_AFTER])
        rest = rest[PARTIAL_AFTER:]
    pending[fd] = rest


class Log:
    """The service's log file, rotated to LOG.1 when it would grow past `max_bytes`. A write the
    disk refuses (full, or the file gone) drops that line, never the monitor: the service goes
    on, and the next line that can be written is preceded by one saying what was lost."""

    __slots__ = ("path", "max_bytes", "fd", "size", "dropped", "reason")

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fd = None
        self.size = 0
        self.dropped = 0  # lines lost since the last one written
        self.reason = ""
        self._open()

    def _open(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            self.size = os.fstat(self.fd).st_size
        except OSError as err:
            self.fd, self.reason = None, err.strerror

    def write(self, stream: str, flag: str, text: bytes) -> None:
        if self.dropped and not self._append(b"stderr", f"toolbox: {self.dropped} lines of output lost: "
                                                        f"{self.reason}".encode()):
            self.dropped += 1
            return
        self.dropped = 0
        if not self._append(stream.encode(), text, flag.encode()):
            self.dropped = 1

    def _append(self, stream: bytes, text: bytes, flag: bytes = b"F") -> bool:
        line = f"{timestamp()} ".encode() + stream + b" " + flag + b" " + text + b"\n"
        try:
            if self.fd is not None and self.size and self.size + len(line) > self.max_bytes:
                os.close(self.fd)
                self.fd = None
                os.replace(self.path, self.path + ".1")
            if self.fd is None:
                self._open()
            if self.fd is None:
                return False
            view = memoryview(line)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as err:
            self.reason = err.strerror
            return False
        self.size += len(line)
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def timestamp(ns: int | None = None) -> str:
    """RFC 3339 in UTC with nanoseconds, as podman's and Kubernetes' logs have it."""
    ns = time.time_ns() if ns is None else ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"
