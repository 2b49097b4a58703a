"""What each pinned tool last ran by, per pins file, so that the first call of a tool after its
lock entry changed says so: a teammate's upgrade, pulled with git, should not be a surprise.

Cold tier only: a changed lock makes the tool plan stale (hot/plans.py), so the cold tier runs
for that first call anyway, and nothing here is read while a plan is current. One small file
per pins file and tool (no shared file two tools would rewrite at once), in the data
directory. Best effort: a record that cannot be read or written never stops the tool.
"""

import hashlib
import json
import os

from toolbox.errors import ToolboxError


def record_path(layout, pins_file, tool):
    key = f"{os.path.abspath(pins_file)}\0{tool}".encode("utf-8", "surrogateescape")
    return os.path.join(layout.last_runs_dir, hashlib.sha256(key).hexdigest()[:32] + ".json")


def swap(layout, pins_file, tool, version, digest):
    """Record that `tool`, pinned by `pins_file`, runs `version` by `digest` now; return the
    (version, digest) it ran by before, or None the first time (or when unknown)."""
    from toolbox.fsutil import atomic_write, read_input

    path = record_path(layout, pins_file, tool)
    before = None
    try:
        found = read_input(path, "record of the last run")
        if found is not None:
            doc = json.loads(found.data)
            if doc.get("pins") == os.path.abspath(pins_file) and doc.get("tool") == tool:
                before = (str(doc["version"]), str(doc["digest"]))
    except (ToolboxError, ValueError, TypeError, KeyError, AttributeError):
        before = None
    if before != (version, digest):
        doc = {"pins": os.path.abspath(pins_file), "tool": tool, "version": version, "digest": digest}
        try:
            atomic_write(path, json.dumps(doc, sort_keys=True).encode() + b"\n", 0o600)
        except OSError:
            pass
    return before
