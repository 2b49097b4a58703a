"""`toolbox run --subids`: map a full range of ids inside, for tools that switch users or chown
(package managers: apt drops to `_apt`, postgres runs as `postgres`).

The id the tool runs as inside still maps to the user; every other id from 0 up maps to the
user's subordinate ids (/etc/subuid, /etc/subgid). Only the setuid helpers newuidmap and
newgidmap (package uidmap) may write such maps, and only from outside the new namespace, so a
child forked before unshare writes them and exits: no resident helper remains.

Standard library only: this runs on the launch path when --subids is given.
"""

import os

from toolbox.errors import ToolboxError
from toolbox.runtime import programs
from toolbox.runtime.spec import IdRanges

SUBID_FILES = ("/etc/subuid", "/etc/subgid")
RANGE_SIZE = 65536  # what useradd gives a new user (SUB_UID_COUNT in login.defs)
RANGE_FLOOR = 100000  # where useradd starts handing ranges out (SUB_UID_MIN)


def read_subids(path: str) -> list[tuple[str, int, int]]:
    """(owner, start, count) per entry of /etc/subuid or /etc/subgid; owner is a name or a uid."""
    entries = []
    with open(path) as file:
        for line in file:
            fields = line.strip().split(":")
            if (len(fields) == 3 and not fields[0].startswith("#") and fields[1].isdigit()
                and fields[2].isdigit()):
                entries.append((fields[0], int(fields[1]), int(fields[2])))
    return entries


def subordinate_range(path: str, user_name: str, user_id: int) -> tuple[int, int] | None:
    """(first id, count) of the first entry for the user, or None."""
    try:
        entries = read_subids(path)
    except OSError:
        return None
    for owner, start, count in entries:
        if owner in (user_name, str(user_id)) and count > 0:
            return start, count
    return None


def free_range(entry_lists: list[list[tuple[str, int, int]]], size: int = RANGE_SIZE,
               floor: int = RANGE_FLOOR) -> int:
    """The first id of the lowest `size` ids from `floor` up that no entry of any list holds
    (read_subids of /etc/subuid and /etc/subgid): a range usermod can hand out to you without
    overlapping another user's."""
    start = floor
    for first, end in sorted((first, first + count) for entries in entry_lists for _owner, first,
                             count in entries):
        if end <= start:
            continue
        if first >= start + size:
            break
        start = end
    return start


def setup_hint(user_name: str, need_uids: bool, need_gids: bool, need_helpers: bool,
               files: tuple[str, str] = SUBID_FILES) -> str:
    """The commands that give `user_name` what is missing: a range free in both files as they
    are now (another user's range is never proposed), and the helpers' package."""
    entries = []
    for path in files:
        try:
            entries.append(read_subids(path))
        except OSError:
            continue
    start = free_range(entries)
    ids = f"{start}-{start + RANGE_SIZE - 1}"
    wanted = ((f"--add-subuids {ids}", need_uids), (f"--add-subgids {ids}", need_gids))
    options = [option for option, needed in wanted if needed]
    commands = [f"sudo usermod {' '.join(options)} {user_name}"] if options else []
    commands += ["sudo apt install uidmap"] if need_helpers else []
    return "give yourself subordinate ids and the helpers that map them: " + "; ".join(commands)


def id_map(inside: int, outside: int, sub_first: int, sub_count: int) -> list[tuple[int, int, int]]:
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


def find_program(name: str) -> str | None:
    # newuidmap lives in /usr/bin, but an ordinary user's PATH may be a narrow one.
    return programs.find_program(name, ("/usr/bin", "/bin", "/usr/sbin"))


def plan_maps(user_name: str, inner_uid: int, inner_gid: int,
              files: tuple[str, str] = SUBID_FILES) -> IdRanges:
    """(newuidmap argv tail, newgidmap argv tail, programs) or a ToolboxError saying what is
    missing and how to set it up."""
    uid_range = subordinate_range(files[0], user_name, os.getuid())
    gid_range = subordinate_range(files[1], user_name, os.getuid())
    programs = (find_program("newuidmap"), find_program("newgidmap"))
    missing = [what for what, found in ((f"an {files[0]} entry", uid_range),
                                        (f"an {files[1]} entry", gid_range), ("newuidmap", programs[0]),
                                        ("newgidmap", programs[1])) if not found]
    if missing:
        hint = setup_hint(user_name, uid_range is None, gid_range is None, None in programs, files)
        raise ToolboxError(f"--subids needs {', '.join(missing)} for {user_name}", hint=hint)
    uid_map = id_map(inner_uid, os.getuid(), *uid_range)
    gid_map = id_map(inner_gid, os.getgid(), *gid_range)
    return programs, uid_map, gid_map


class IdMapper:
    """A child forked before unshare that runs newuidmap/newgidmap on us once told to."""

    __slots__ = ("pid", "go_fd")

    def __init__(self, programs: tuple[str, str], uid_map: list[tuple[int, int, int]],
                 gid_map: list[tuple[int, int, int]]) -> None:
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

    def map_now(self) -> None:
        """Called after unshare: have the child write our maps, and wait for it."""
        os.write(self.go_fd, b"g")
        os.close(self.go_fd)
        _, status = os.waitpid(self.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise OSError(1, "newuidmap/newgidmap refused the id ranges (their message is above)")

    def cancel(self) -> None:
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


def remove_tree_any_owner(path: str) -> None:
    """fsutil.remove_tree, and where it meets files it may not remove, owned by the user's
    subordinate ids (a service chowned them: postgres's data directory), the same again as root
    of a user namespace that maps those ids, where they are ours to remove (a forked child
    does it, so this process stays outside)."""
    from toolbox import fsutil
    from toolbox.runtime.spec import user_name

    try:
        fsutil.remove_tree(path)
        return
    except PermissionError as err:
        refused = err
    try:
        maps = plan_maps(user_name(), 0, 0)
    except ToolboxError:
        raise refused from None  # no subordinate ids: the files are someone else's
    child = os.fork()
    if child == 0:
        status = 1
        try:
            from toolbox.runtime import syscalls as sc

            mapper = IdMapper(*maps)
            sc.unshare(sc.CLONE_NEWUSER)
            mapper.map_now()
            fsutil.remove_tree(path)
            status = 0
        except BaseException as err:  # noqa: BLE001 - said here, the parent raises
            os.write(2, f"toolbox: removing {path} as your subordinate ids: {err}\n".encode())
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise refused
