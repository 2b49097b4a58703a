"""Finding the host programs the runtime starts (newuidmap, fuse-overlayfs). Standard library
only: this runs on the launch path."""

import os


def find_program(name: str, fallback_dirs: tuple[str, ...] = ()) -> str | None:
    """The first executable `name` on PATH, then in `fallback_dirs`; None when there is none."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep) + list(fallback_dirs):
        path = os.path.join(directory or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None
