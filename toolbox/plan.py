"""The run plan's format, shared by the cold tier that writes it (toolbox.runplan) and the launch
path that reads it (toolbox.launch). Standard library only."""

import marshal
import os

PLAN_VERSION = 1


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
