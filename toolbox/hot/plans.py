"""The two plans the launch path reads, each a small marshal file written by the cold tier
(toolbox.ops.prepare), so a launch parses no TOML, reference, manifest or config.

Run plans: what `toolbox run IMAGE` needs of a stored image. A run plan stays valid while the
image record it was made from is unchanged (same format version, same inode and mtime: a new
pull of the tag replaces the record).

Tool plans: what `toolbox run TOOL` (and a shim) needs from the recipes, the pins and the
lock, precomputed by the cold tier (ops/prepare.py) so the launch path reads one small marshal file
instead of parsing TOML.

A plan is per pins file (the project's toolbox.toml, or the user's config.toml outside any
project) and per tool as typed. It lists every file it was made from with the stamp of the very
bytes that were read (device, inode, size, mtime, ctime, taken with fstat on the descriptor
that was read): toolbox.toml, toolbox.lock, config.toml, the user's and the built-in recipes,
the trust record, toolbox's own modules. It also records the environment variables that grant
trust or allow a file (TRUST_ENV, SAFE_ENV). The launch path re-stats the files and compares the
variables; any difference, a file appearing or going, makes the plan stale and the cold tier
reads everything again, so a plan can never outlive the files or the trust decision it came from.

Standard library only (os, marshal, zlib): this runs before every tool.
"""

import marshal
import os
import stat as stat_module
import zlib

from toolbox.stamps import stamp

PLAN_VERSION = 2  # 2: the image's stop signal, for services
TOOL_PLAN_VERSION = 2
PROJECT_FILE = "toolbox.toml"
# Project directories whose recipes are trusted as they are, for CI: a list like PATH.
TRUST_ENV = "TOOLBOX_TRUSTED_PROJECTS"
# Directories whose project files may belong to another user (as git's safe.directory).
SAFE_ENV = "TOOLBOX_SAFE_DIRECTORIES"
PLAN_ENV = (TRUST_ENV, SAFE_ENV)


def find_project_file(start):
    """The toolbox.toml that applies in `start`: the nearest at or above it. The walk up stops
    (no project, the user's global pins apply) before:
    - a directory on another filesystem than the one below it (as git does by default);
    - a directory owned by neither you, root, nor the owner of the directory the walk started
      in (someone else's tree above yours: /srv/shared above /srv/shared/you/project);
    - a world-writable sticky directory such as /tmp or /var/tmp, which is not looked in
      either: anyone can put a toolbox.toml there.
    Whether the file found may be used (its owner) is checked when it is read (project.py)."""
    directory = os.path.abspath(start)
    try:
        st = os.stat(directory)
    except OSError:
        return None
    allowed_owners = (os.getuid(), 0, st.st_uid)
    while True:
        if is_shared_scratch(st):
            return None
        candidate = os.path.join(directory, PROJECT_FILE)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        try:
            parent_st = os.stat(parent)
        except OSError:
            return None
        if parent_st.st_dev != st.st_dev or parent_st.st_uid not in allowed_owners:
            return None
        directory, st = parent, parent_st


def is_shared_scratch(st):
    """A directory anyone may create files in, the sticky bit keeping them apart (/tmp)."""
    return (st.st_mode & (stat_module.S_ISVTX | stat_module.S_IWOTH)
            == (stat_module.S_ISVTX | stat_module.S_IWOTH))


def pins_file(layout, cwd):
    """The file whose pins apply in `cwd`: the project's toolbox.toml, else the user's config."""
    return find_project_file(cwd) or layout.config_file


def plan_path(layout, pins, tool_text):
    # A checksum names the file (hashlib costs 3 ms to import); the plan holds its whole key.
    key = f"{pins}\0{tool_text}".encode("utf-8", "surrogateescape")
    return os.path.join(layout.tool_plans_dir, f"{zlib.crc32(key):08x}{zlib.adler32(key):08x}.plan")


def read_tool_plan(layout, pins, tool_text, environ=os.environ):
    """The plan's settings if every input is as it was, else None."""
    try:
        with open(plan_path(layout, pins, tool_text), "rb") as file:
            plan = marshal.load(file)
        if plan["v"] != TOOL_PLAN_VERSION or plan["pins"] != pins or plan["tool"] != tool_text:
            return None
        for name, value in plan["environ"]:
            if environ.get(name) != value:
                return None
        for path, recorded in plan["inputs"]:
            if stamp(path) != recorded:
                return None
        return plan["settings"]
    except (OSError, EOFError, ValueError, TypeError, KeyError):
        return None


def plan_bytes(pins, tool_text, settings, stamps, environ=os.environ):
    """For the cold tier: the plan file's content. `stamps` maps every path the plan was made
    from to the stamp of what was read (None for a file that was absent: one appearing makes
    the plan stale)."""
    return marshal.dumps({"v": TOOL_PLAN_VERSION, "pins": pins, "tool": tool_text, "settings": settings,
                          "environ": [(name, environ.get(name)) for name in PLAN_ENV],
                          "inputs": sorted(stamps.items())})


def read_current_plan(path):
    """The plan at `path` if it is still valid: same format version, and the image record it was
    made from unchanged (a new pull of the tag replaces the record: new inode and mtime).
    None otherwise."""
    try:
        with open(path, "rb") as file:
            plan = marshal.load(file)
        st = os.stat(plan["record"])
        if plan.get("v") == PLAN_VERSION and plan.get("record_id") == [st.st_ino, st.st_mtime_ns]:
            return plan
    except (OSError, EOFError, ValueError, TypeError, KeyError):
        pass
    return None
