"""`toolbox run --subids`: map a full range of ids inside, for tools that switch users or chown
(package managers: apt drops to `_apt`, postgres runs as `postgres`).

The id the tool runs as inside still maps to the user; every other id from 0 up maps to the
user's subordinate ids (/etc/subuid, /etc/subgid). Only the setuid helpers newuidmap and
newgidmap (package uidmap) may write such maps, and only from outside the new namespace, so a
child forked before unshare writes them and exits: no resident helper remains.

Standard library only: this runs on the launch path when --subids is given.
"""

import os

from . import programs
from .errors import ToolboxError

SETUP_HINT = ("give yourself subordinate ids and install the helpers: "
              "sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER; sudo apt install uidmap")


def read_subids(path):
    """(owner, start, count) per entry of /etc/subuid or /etc/subgid; owner is a name or a uid."""
    entries = []
    with open(path) as file:
        for line in file:
            fields = line.strip().split(":")
            if len(fields) == 3 and not fields[0].startswith("#") and fields[1].isdigit() and fields[2].isdigit():
                entries.append((fields[0], int(fields[1]), int(fields[2])))
    return entries


def subordinate_range(path, user_name, user_id):
    """(first id, count) of the first entry for the user, or None."""
    try:
        entries = read_subids(path)
    except OSError:
        return None
    for owner, start, count in entries:
        if owner in (user_name, str(user_id)) and count > 0:
            return start, count
    return None


def id_map(inside, outside, sub_first, sub_count):
    """newuidmap's triples (inside, outside, count): `inside` is the user; ids 0.. around it
    come from the subordinate range, as many as it holds."""
    triples = [(inside, outside, 1)]
    below = min(inside, sub_count)
    if below:
        triples.append((0, sub_first, below))
    above = sub_count - below
    if above:
        triples.append((inside + 1, sub_first + below, above))
    return triples


def find_program(name):
    # newuidmap lives in /usr/bin, but an ordinary user's PATH may be a narrow one.
    return programs.find_program(name, ("/usr/bin", "/bin", "/usr/sbin"))


def plan_maps(user_name, inner_uid, inner_gid):
    """(newuidmap argv tail, newgidmap argv tail, programs) or a ToolboxError saying what is
    missing and how to set it up."""
    uid_range = subordinate_range("/etc/subuid", user_name, os.getuid())
    gid_range = subordinate_range("/etc/subgid", user_name, os.getuid())
    programs = (find_program("newuidmap"), find_program("newgidmap"))
    missing = [what for what, found in (("an /etc/subuid entry", uid_range), ("an /etc/subgid entry", gid_range),
                                        ("newuidmap", programs[0]), ("newgidmap", programs[1])) if not found]
    if missing:
        raise ToolboxError(f"--subids needs {', '.join(missing)} for {user_name}", hint=SETUP_HINT)
    uid_map = id_map(inner_uid, os.getuid(), *uid_range)
    gid_map = id_map(inner_gid, os.getgid(), *gid_range)
    return programs, uid_map, gid_map


class IdMapper:
    """A child forked before unshare that runs newuidmap/newgidmap on us once told to."""

    __slots__ = ("pid", "go_fd")

    def __init__(self, programs, uid_map, gid_map):
        read_fd, self.go_fd = os.pipe()
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            status = 1
            try:
                os.close(self.go_fd)
                if os.read(read_fd, 1) == b"g":
                    status = 0
                    for program, triples in zip(programs, (uid_map, gid_map)):
                        argv = [program, str(parent)] + [str(n) for triple in triples for n in triple]
                        status = status or _run(argv)
            finally:
                os._exit(status)
        os.close(read_fd)

    def map_now(self):
        """Called after unshare: have the child write our maps, and wait for it."""
        os.write(self.go_fd, b"g")
        os.close(self.go_fd)
        _, status = os.waitpid(self.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise OSError(1, "newuidmap/newgidmap refused the id ranges (their message is above)")

    def cancel(self):
        os.close(self.go_fd)  # the child reads EOF and exits
        os.waitpid(self.pid, 0)


def _run(argv):
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
