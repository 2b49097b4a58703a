"""Runs in progress keep their layers from garbage collection: `toolbox rmi` then `prune` while
a tool runs must not delete the layer trees under its root.

Before the exec, the launch path writes runs/PID in the store listing the layer trees, and holds
an flock on it that the tool inherits (so it lasts exactly as long as the tool, with no process
left behind to clean up). Garbage collection keeps the layers of every locked record and removes
the records whose lock is free. The record is written under the store's shared lock, which GC
takes exclusively, so GC never sees half of one. Standard library only.
"""

import os

from toolbox import locks
from toolbox.errors import ImageNotStored
from toolbox.layout import Layout


def claim(layout: Layout, layers: list[str]) -> int:
    """Record `layers` (paths relative to the layers directory) as in use by this process and
    the tool it becomes. Returns the fd, to keep open across exec."""
    directory = layout.runs_dir
    os.makedirs(directory, exist_ok=True)
    store_fd = locks.acquire(layout.store_lock, shared=True)
    try:
        missing = [layer for layer in layers if not os.path.isdir(os.path.join(layout.layers_dir, layer))]
        if missing:
            raise ImageNotStored(f"{len(missing)} of the image's layers were removed from the store",
                                 hint="pull the image again")
        fd = locks.acquire(os.path.join(directory, str(os.getpid())), inheritable=True)
        os.ftruncate(fd, 0)
        os.write(fd, ("\n".join(layers) + "\n").encode())
        return fd
    finally:
        os.close(store_fd)


def layers_in_use(layout: Layout) -> set[str]:
    """Layer tree paths that running tools stand on; records of finished runs are removed. The
    caller holds the store's exclusive lock."""
    used = set()
    try:
        names = os.listdir(layout.runs_dir)
    except FileNotFoundError:
        return used
    for name in names:
        path = os.path.join(layout.runs_dir, name)
        try:
            fd = locks.acquire(path, blocking=False)
        except locks.Busy:
            try:
                with open(path) as file:
                    used.update(file.read().split())
            except OSError:
                pass
            continue
        try:
            os.unlink(path)  # the run ended: its lock is free
        finally:
            os.close(fd)
    return used
