"""Containers and the services among them (cold tier): `toolbox ps`, `logs`, `stop`, `start`,
`restart`, `rm`. A container is kept by `toolbox run --name` (foreground) or `run -d` (a
service, under a monitor: runtime/monitor.py); runtime/services.py has their state on disk."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from toolbox.errors import ServiceError, ToolboxError
from toolbox.layout import Layout
from toolbox.runtime import containers, services
from toolbox.runtime.forward import Port


def container_path(layout: Layout, name: str) -> str:
    path = os.path.join(layout.containers_dir, containers.check_name(name))
    if containers.read_record(path) is None:
        raise ToolboxError(f"no container named {name!r}",
                           hint="`toolbox ps -a` lists them; `toolbox run -d IMAGE` starts a service")
    return path


def describe(layout: Layout, name: str) -> dict[str, object]:
    """What `toolbox ps` and `inspect` show of one container, as plain values."""
    from toolbox import fsutil

    path = container_path(layout, name)
    record = containers.read_record(path)
    settings = services.read_service(path)
    state = services.read_state(path)
    running = containers.is_running(path)
    if running:
        status = "running"
    elif state.get("status") == services.EXITED:
        status = f"exited ({state.get('exit_code', '?')})"
    elif state or settings is None:
        status = "exited"  # a monitor killed before it could say how; or a foreground run
    else:
        status = "created"
    started, finished = _float(state.get("started")), _float(state.get("finished"))
    pid = services.service_pid(state) if running and state.get("status") == services.RUNNING else None
    monitor = services.monitor_pid(state) if running else None
    spec = settings["spec"] if settings else {}
    return {
        "name": name,
        "kind": "service" if settings else "container",
        "image": settings["requested"] if settings else record["image"],
        "reference": record["reference"],
        "status": status,
        "running": running,
        "exit_code": int(state["exit_code"]) if status.startswith("exited (") and state["exit_code"].isdigit()
        else None,
        "pid": pid,
        # False: the service runs on without its monitor (killed): no log, no published ports
        "monitor": monitor is not None if pid is not None else None,
        "started": started,
        "finished": finished if not running else None,
        "created": int(record["created"]) if record["created"].isdigit() else 0,
        "command": list(spec.get("argv", [])),
        "ports": [str(Port(*values)) for values in settings.get("ports", [])] if settings else [],
        "volumes": _volumes(layout, spec.get("binds", [])),
        "size": fsutil.disk_usage(os.path.join(path, "upper")),
        "path": path,
    }


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _volumes(layout: Layout, binds: list[tuple]) -> list[str]:
    """`NAME:TARGET` for the named volumes among a spec's binds (runtime/spec.spec_to_values)."""
    found = []
    for bind in binds:
        host, inside = bind[0], bind[1]
        name = os.path.basename(os.path.dirname(host))
        if host == layout.volume_data(name):
            found.append(f"{name}:{inside}")
    return found


def exists(layout: Layout, name: str) -> bool:
    try:
        container_path(layout, name)
    except ToolboxError:
        return False
    return True


def inspect(layout: Layout, name: str) -> dict[str, object]:
    """describe() and how it runs: environment, working directory, ids and network inside, the
    stop signal, where its log and writable layer are."""
    info = describe(layout, name)
    path = info.pop("path")
    settings = services.read_service(path) or {}
    spec = settings.get("spec", {})
    info.update({
        "env": [f"{key}={value}" for key, value in spec.get("env", {}).items()],
        "working_dir": spec.get("cwd"),
        "user": f"{spec['uid']}:{spec['gid']}" if spec else None,
        "subordinate_ids": bool(spec.get("subid_maps")),
        "network": spec.get("network"),
        "stop_signal": settings.get("stop_signal") or ("SIGTERM" if settings else None),
        "remove_on_exit": bool(settings.get("remove")),
        "log": os.path.join(path, services.LOG) if settings else None,
        "writable_layer": os.path.join(path, "upper"),
    })
    return info


def listing(layout: Layout, everything: bool = False) -> list[dict[str, object]]:
    """The containers `toolbox ps` shows: the running ones, or all of them."""
    found = [describe(layout, name) for name in containers.names(layout)]
    return found if everything else [c for c in found if c["running"]]


def stop(layout: Layout, name: str, timeout: float = services.DEFAULT_STOP_TIMEOUT) -> bool:
    """Stop the service NAME with its image's stop signal, SIGKILL after `timeout` seconds;
    returns once it is gone. False when it was not running."""
    path = container_path(layout, name)
    settings = services.read_service(path)
    if settings is None:
        if containers.is_running(path):
            raise ServiceError(f"container {name!r} runs in the foreground (toolbox run --name)",
                               hint="stop it where it runs: Ctrl-C in its terminal, or kill its process")
        return False
    return services.stop(path, services.signal_number(settings.get("stop_signal")), timeout)


def start(layout: Layout, name: str) -> int:
    """Start the service NAME again, with the settings and the writable layer it had. Returns
    the tool's pid."""
    from toolbox import locks

    path = container_path(layout, name)
    settings = services.read_service(path)
    if settings is None:
        raise ServiceError(f"{name!r} is not a service: `toolbox run --name {name}` made it",
                           hint=f"run it with that command again; `toolbox run -d --name {name} IMAGE` makes "
                                "it a service")
    missing = [layer for layer in settings["spec"]["layers"]
               if not os.path.isdir(os.path.join(settings["spec"]["layers_dir"], layer))]
    if missing:
        raise ServiceError(f"the layers {name!r} was made on are no longer stored",
                           hint=f"pull {settings['reference']} again, or remove it: toolbox rm {name}")
    try:
        lock_fd = locks.acquire(os.path.join(path, "lock"), blocking=False, inheritable=True)
    except locks.Busy:
        raise ServiceError(f"{name!r} is already running",
                           hint=f"toolbox restart {name} starts it afresh") from None
    try:
        return services.start_monitor(path, lock_fd)
    finally:
        os.close(lock_fd)


def remove(layout: Layout, name: str, force: bool = False) -> None:
    """Remove the container NAME and its writable layer (never a named volume): a running one
    only with `force`, which kills it first."""
    import _signal

    path = container_path(layout, name)
    if containers.is_running(path):
        state = services.read_state(path)
        finishing = state.get("status") == services.EXITED and services.monitor_pid(state) is not None
        if state.get("status") != services.RUNNING and not finishing:
            raise ServiceError(f"container {name!r} is running in the foreground (toolbox run --name)",
                               hint="stop it where it runs (Ctrl-C in its terminal), then remove it")
        if not force and not finishing:
            raise ServiceError(f"container {name!r} is running",
                               hint=f"stop it first (toolbox stop {name}), or remove it anyway: "
                                    f"toolbox rm -f {name}")
        services.stop(path, _signal.SIGKILL, 0)
    containers.remove(layout, name)


# -- logs -------------------------------------------------------------------------------------------
class LogLine:
    """One line of a service's output: when it began, on which stream, its bytes (no newline;
    `complete` False for a last line the service had not ended)."""

    __slots__ = ("time", "stream", "text", "complete")

    def __init__(self, time: str, stream: str, text: bytes, complete: bool) -> None:
        self.time = time
        self.stream = stream
        self.text = text
        self.complete = complete


def read_log(layout: Layout, name: str, since: str | None = None, tail: int | None = None) -> list[LogLine]:
    """The service's output kept in its log (the rotated part first): lines from `since` (a
    log timestamp) on, the last `tail` of them."""
    path = os.path.join(_service_path(layout, name), services.LOG)
    lines = _log_lines(_read(path + ".1") + _read(path))
    if since is not None:
        lines = [line for line in lines if line.time >= since]
    return lines[-tail:] if tail is not None and tail >= 0 else lines


def _service_path(layout: Layout, name: str) -> str:
    path = container_path(layout, name)
    if services.read_service(path) is None:
        raise ServiceError(f"{name!r} runs in the foreground (toolbox run --name): its output goes to its "
                           "terminal, not to a log",
                           hint="toolbox keeps the logs of services: toolbox run -d")
    return path


def _log_lines(data: bytes) -> list[LogLine]:
    """The lines of the log format (monitor.py): a line logged in parts (P entries) joined, one
    still in parts at the end given as incomplete."""
    lines, open_lines = [], {}
    for piece in _log_pieces(data):
        previous = open_lines.pop(piece.stream, None)
        if previous is not None:
            piece = LogLine(previous.time, piece.stream, previous.text + piece.text, piece.complete)
        if piece.complete:
            lines.append(piece)
        else:
            open_lines[piece.stream] = piece
    return lines + list(open_lines.values())


def _log_pieces(data: bytes) -> Iterator[LogLine]:
    """Each entry of the log as it is: F entries end a line, P entries do not."""
    for entry in data.split(b"\n"):
        fields = entry.split(b" ", 3)
        if len(fields) == 4 and fields[2] in (b"F", b"P"):
            stamp, stream = (field.decode("ascii", "replace") for field in fields[:2])
            yield LogLine(stamp, stream, fields[3], fields[2] == b"F")


def follow_log(layout: Layout, name: str, since: str | None = None, tail: int | None = None,
               poll: float = 0.1) -> Iterator[LogLine]:
    """The log as read_log gives it, then what the service writes, as it comes (a line in parts
    part by part), until the service is no longer running and its last lines are read."""
    container = _service_path(layout, name)
    path = os.path.join(container, services.LOG)
    file = _open(path)
    data, carry = _whole_entries(_read(path + ".1") + (file.read() if file else b""))
    lines = [line for line in _log_lines(data) if since is None or line.time >= since]
    yield from lines[-tail:] if tail is not None and tail >= 0 else lines
    try:
        while True:
            running = containers.is_running(container)
            data = file.read() if file else b""
            if file is None or _rotated(path, file):
                if file:
                    data += file.read()
                    file.close()
                file = _open(path)
                data += file.read() if file else b""
            data, carry = _whole_entries(carry + data)
            yield from _log_pieces(data)
            if not running and not data:
                return
            if not data:
                time.sleep(poll)
    finally:
        if file:
            file.close()


def _whole_entries(data: bytes) -> tuple[bytes, bytes]:
    """(the entries `data` holds whole, the start of one still being written)."""
    end = data.rfind(b"\n") + 1
    return data[:end], data[end:]


def _open(path: str):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return b""


def _rotated(path: str, file) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return True


def since_timestamp(text: str, now: float | None = None) -> str:
    """`--since`: a duration back from now (10m, 1h30m, 45s, 500ms), a Unix time, or an RFC
    3339 time; as a log timestamp, which compares as text."""
    import datetime

    from toolbox.runtime.monitor import timestamp

    now = time.time() if now is None else now
    seconds = _duration(text)
    if seconds is not None:
        return timestamp(int((now - seconds) * 1e9))
    try:
        return timestamp(int(float(text) * 1e9))
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ServiceError(f"--since {text!r}: not a duration or a time",
                           hint="use 10m, 1h30m, a Unix time, or 2026-11-29T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a time without zone is local, as docker reads it
    return timestamp(int(moment.timestamp() * 1e9))


_UNITS = (("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0))


def _duration(text: str) -> float | None:
    """Go's duration syntax as docker takes it: 1h30m, 10m, 45s, 1.5h, 500ms."""
    rest, total = text.strip(), 0.0
    if not rest or rest[0].isalpha():
        return None
    while rest:
        number = ""
        while rest and (rest[0].isdigit() or rest[0] == "."):
            number, rest = number + rest[0], rest[1:]
        unit = next(((name, factor) for name, factor in _UNITS if rest.startswith(name)), None)
        if not number or unit is None or number.count(".") > 1:
            return None
        total += float(number) * unit[1]
        rest = rest[len(unit[0]):]
    return total


def write_lines(lines: Iterator[LogLine] | list[LogLine], out: Callable[[bytes], object],
                err: Callable[[bytes], object], timestamps: bool = False) -> None:
    """Each line to the stream it came from, as the service wrote it (with its time first, for -t)."""
    for line in lines:
        prefix = line.time.encode() + b" " if timestamps else b""
        text = prefix + line.text + (b"\n" if line.complete else b"")
        (err if line.stream == "stderr" else out)(text)
