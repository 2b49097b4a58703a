"""Tool plans: what `toolbox run TOOL` (and a shim) needs from the recipes, the pins and the
lock, precomputed by the cold tier (tools.py) so the launch path reads one small marshal file
instead of parsing TOML.

A plan is per pins file (the project's toolbox.toml, or the user's config.toml outside any
project) and per tool as typed. It lists every file it was made from with its stamp (inode,
size, mtime): toolbox.toml, toolbox.lock, config.toml, the user's and the built-in recipes, the
trust record, toolbox's own version file. The launch path re-stats them; any change, a file
appearing or going, makes the plan stale and the cold tier makes it again.

Standard library only (os, marshal, zlib): this runs before every tool.
"""

import marshal
import os
import zlib

TOOL_PLAN_VERSION = 1
PROJECT_FILE = "toolbox.toml"


def find_project_file(start):
    """The nearest toolbox.toml at or above `start`, or None."""
    directory = os.path.abspath(start)
    while True:
        candidate = os.path.join(directory, PROJECT_FILE)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def frozen_requested(environ=os.environ, flag=False):
    """--frozen, or CI=true as CI systems set it: a lock that disagrees with the pins is an
    error instead of being resolved anew."""
    return flag or environ.get("CI", "").lower() in ("true", "1")


def pins_file(layout, cwd):
    """The file whose pins apply in `cwd`: the project's toolbox.toml, else the user's config."""
    return find_project_file(cwd) or layout.config_file


def plan_path(layout, pins, tool_text):
    # A checksum names the file (hashlib costs 3 ms to import); the plan holds its whole key.
    key = f"{pins}\0{tool_text}".encode("utf-8", "surrogateescape")
    return os.path.join(layout.tool_plans_dir, f"{zlib.crc32(key):08x}{zlib.adler32(key):08x}.plan")


def stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_tool_plan(layout, pins, tool_text):
    """The plan's settings if every input is as it was, else None."""
    try:
        with open(plan_path(layout, pins, tool_text), "rb") as file:
            plan = marshal.load(file)
        if plan["v"] != TOOL_PLAN_VERSION or plan["pins"] != pins or plan["tool"] != tool_text:
            return None
        for path, recorded in plan["inputs"]:
            if stamp(path) != recorded:
                return None
        return plan["settings"]
    except (OSError, EOFError, ValueError, TypeError, KeyError):
        return None


def plan_bytes(pins, tool_text, settings, inputs):
    """For the cold tier: the plan file's content. `inputs` are the paths it was made from
    (missing ones too: one appearing makes the plan stale)."""
    return marshal.dumps({"v": TOOL_PLAN_VERSION, "pins": pins, "tool": tool_text, "settings": settings,
                          "inputs": [(path, stamp(path)) for path in inputs]})
