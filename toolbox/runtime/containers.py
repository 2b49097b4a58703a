"""Named containers: `toolbox run --name NAME IMAGE` keeps the writable layer between runs.

On disk, in the data directory (user state, not cache):
    containers/NAME/container     what it was made from: image, reference, layers, created
    containers/NAME/upper, work   overlayfs's (or fuse-overlayfs's) upper and work directories
    containers/NAME/rootfs        the mode that wrote them, kept for later runs (rootfs.py)
    containers/NAME/lock          flocked by the running tool (inherited across exec)

A writable layer only makes sense over the layers it was made on, so a container stays bound
to them: a newer pull of the tag does not change what `--name NAME` runs on, and naming it with
another image is refused. The store's garbage collection keeps the layers containers use.
One run at a time: overlayfs must not mount one upper directory twice.

Standard library only, no json or dataclasses: claim() runs on the launch path. For the same
reason the type hints are evaluated ones (no `from __future__ import annotations`, no typing).
"""

import os
import time

from toolbox import locks
from toolbox.errors import ToolboxError
from toolbox.layout import Layout

RECORD = "container"
_FIELDS = ("image", "reference", "layers", "created")


def check_name(name: str, what: str = "container") -> str:
    """Names that are safe as one path component and readable in listings (docker's rule)."""
    if (not name or not name[0].isalnum() or not all(c.isalnum() or c in "_.-" for c in name)
        or len(name) > 128):
        raise ToolboxError(f"invalid {what} name {name!r}",
                           hint="use letters, digits, '_', '.' and '-', starting with a letter or digit")
    return name


class Container:
    __slots__ = ("name", "path", "upper", "work", "lock_fd", "record")

    def __init__(self, name: str, path: str, lock_fd: int, record: dict[str, str]) -> None:
        self.name = name
        self.path = path
        self.upper = os.path.join(path, "upper")
        self.work = os.path.join(path, "work")
        self.lock_fd = lock_fd
        self.record = record


def claim(layout: Layout, name: str, image_text: str, plan: dict) -> Container:
    """The container NAME, created on first use from `plan`, locked for this run: the lock fd
    survives exec, so it is held until the tool and everything it started have exited."""
    path = os.path.join(layout.containers_dir, check_name(name))
    os.makedirs(path, exist_ok=True)
    try:
        lock_fd = locks.acquire(os.path.join(path, "lock"), blocking=False, inheritable=True)
    except locks.Busy:
        raise ToolboxError(f"container {name!r} is running",
                           hint="wait for it to exit, or use another --name") from None
    record = read_record(path)
    if record is None:
        record = {"image": image_text, "reference": plan["reference"], "layers": ":".join(plan["layers"]),
                  "created": str(int(time.time()))}
        for directory in ("upper", "work"):
            os.makedirs(os.path.join(path, directory), exist_ok=True)
        _write_record(path, record)
    elif record["reference"] != plan["reference"]:
        os.close(lock_fd)
        raise ToolboxError(
            f"container {name!r} was made from {record['reference']}, not {plan['reference']}",
            hint=f"run it with that image, or remove it first: toolbox rm {name}",
        )
    return Container(name, path, lock_fd, record)


def layers_of(record: dict[str, str]) -> list[str]:
    return record["layers"].split(":") if record.get("layers") else []


def read_record(path: str) -> dict[str, str] | None:
    try:
        with open(os.path.join(path, RECORD), encoding="utf-8", errors="surrogateescape") as file:
            text = file.read()
    except FileNotFoundError:
        return None
    record = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        record[key] = value
    if any(field not in record for field in _FIELDS):
        return None  # written by a run killed half-way: made again
    return record


def _write_record(path, record):
    # Written last and renamed into place: a record that exists is complete.
    temp = os.path.join(path, RECORD + ".new")
    with open(temp, "w", encoding="utf-8", errors="surrogateescape") as file:
        file.write("".join(f"{key}={record[key]}\n" for key in _FIELDS))
    os.replace(temp, os.path.join(path, RECORD))


# -- the cold side: listing and removal (CLI) ------------------------------------------------------


def names(layout: Layout) -> list[str]:
    try:
        entries = sorted(os.listdir(layout.containers_dir))
    except FileNotFoundError:
        return []
    # A directory without a record is a first run killed half-way: `toolbox rm` still takes it.
    return [entry for entry in entries if not entry.startswith(".")
            and os.path.isfile(os.path.join(layout.containers_dir, entry, RECORD))]


def is_running(path: str) -> bool:
    try:
        fd = locks.acquire(os.path.join(path, "lock"), shared=True, blocking=False)
    except locks.Busy:
        return True
    except FileNotFoundError:
        return False
    os.close(fd)
    return False


def describe(layout: Layout, name: str) -> dict[str, object]:
    """What `toolbox ps` shows of one container, as plain values."""
    from toolbox import fsutil

    path = os.path.join(layout.containers_dir, check_name(name))
    record = read_record(path)
    if record is None:
        raise ToolboxError(f"no container named {name!r}",
                           hint="`toolbox ps` lists them; `toolbox run --name NAME IMAGE` makes one")
    return {
        "name": name,
        "image": record["image"],
        "reference": record["reference"],
        "created": int(record["created"]) if record["created"].isdigit() else 0,
        "running": is_running(path),
        "size": fsutil.disk_usage(os.path.join(path, "upper")),
        "path": path,
    }


def remove(layout: Layout, name: str) -> None:
    """Remove a container that is not running, writable layer and all."""
    from toolbox.runtime.subids import remove_tree_any_owner

    path = os.path.join(layout.containers_dir, check_name(name))
    if not os.path.isdir(path):
        raise ToolboxError(f"no container named {name!r}", hint="`toolbox ps` lists them")
    try:
        lock_fd = locks.acquire(os.path.join(path, "lock"), blocking=False)
    except locks.Busy:
        raise ToolboxError(f"container {name!r} is running",
                           hint="stop the tool first, then remove it") from None
    try:
        # Renamed while locked, so a run starting now makes a fresh container instead of
        # finding a half-removed one.
        doomed = os.path.join(layout.containers_dir, f".removing-{name}-{os.getpid()}")
        os.rename(path, doomed)
    finally:
        os.close(lock_fd)
    # remove_tree copes with overlayfs's work/work (mode 000) and read-only directories; files a
    # service gave to subordinate ids are removed in a user namespace that maps them.
    remove_tree_any_owner(doomed)


def remove_own(path: str) -> None:
    """Remove the container at `path` whose lock this process holds: a service's monitor, for
    --rm, once the tool has exited."""
    from toolbox import fsutil

    doomed = os.path.join(os.path.dirname(path), f".removing-{os.path.basename(path)}-{os.getpid()}")
    os.rename(path, doomed)
    fsutil.remove_tree(doomed)  # the monitor is root of the service's user namespace: all is its own


def sweep_removals(layout: Layout) -> int:
    """Remove what a `toolbox rm` killed half-way left (.removing-NAME-PID whose PID is gone).
    Called by the store's garbage collection; returns how many."""
    from toolbox import fsutil
    from toolbox.runtime.subids import remove_tree_any_owner

    try:
        entries = os.listdir(layout.containers_dir)
    except FileNotFoundError:
        return 0
    swept = 0
    for entry in entries:
        if entry.startswith(".removing-") and not fsutil.process_is_alive(entry.rpartition("-")[2]):
            remove_tree_any_owner(os.path.join(layout.containers_dir, entry))
            swept += 1
    return swept


def used_layers(layout: Layout) -> set[str]:
    """Layer tree paths (relative to the layers directory) that containers stand on, for the
    store's garbage collection."""
    used = set()
    for name in names(layout):
        record = read_record(os.path.join(layout.containers_dir, name))
        if record is not None:
            used.update(layers_of(record))
    return used
