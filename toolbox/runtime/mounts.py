"""The mounts the runtime makes inside the assembled root, before pivot_root: the system ones
(/proc, /sys, a minimal /dev, the host's resolv.conf and hosts) and a read-only root's scratch
space, each a table of Mount entries walked in order (as Charliecloud's BINDS_DEFAULT or
bubblewrap's setup ops); and the user's binds (spec.Bind), with the protected places below them
covered.

Every mount point is made inside the root as the tool will see it after pivot_root: the image's
symlinks are resolved with the root as `/` (resolve_inside), never as the host sees them.
Standard library and the generated syscall module only: the launch path.
"""

import errno
import os
import stat as stat_module
from _collections_abc import Callable  # collections.abc's own, loaded with os (collections.abc costs ~1.5 ms)

from toolbox.runtime import syscalls as sc
from toolbox.runtime.spec import Bind

# Kinds of Mount entries.
BIND_DIR = "bind a host directory"
BIND_FILE = "bind a host file"
DEVICE = "bind a host device"  # over an empty file; left out where the host has no such device
TMPFS = "mount a tmpfs"
PROC = "mount a procfs"  # of the pid namespace the mounting process lives in
SYMLINK = "make a symlink"

# Targets below dev/ lie in the tmpfs mounted on the root's /dev just before them: our own, empty,
# so they are made directly; every other target is made by mountpoint(), inside the image.
OWN_DEV = "dev/"


class Mount:
    """One entry of a mount table. `target` is relative to the root; `source` is the host path
    (a filesystem's name for TMPFS, the link's text for SYMLINK); `restrict`: flags to remount
    a bind with afterwards, where the kernel allows it (it refuses to clear flags the host
    locked: the mount then stays as the host has it); `when`: (test, host path), the entry is
    skipped unless test(path)."""

    __slots__ = ("kind", "source", "target", "flags", "data", "restrict", "when")

    def __init__(self, kind: str, source: str, target: str, flags: int = 0, data: str | None = None,
                 restrict: int = 0, when: tuple[Callable[[str], bool], str] | None = None) -> None:
        self.kind = kind
        self.source = source
        self.target = target
        self.flags = flags
        self.data = data
        self.restrict = restrict
        self.when = when


DEVICE_NODES = ("null", "zero", "full", "random", "urandom", "tty")
# POSIX shared memory (postgres keeps its own there): the kernel's default size, half the RAM,
# unless a size is asked for (--shm-size; a service's default is Docker's 64 MiB).
SHM = Mount(TMPFS, "toolbox-shm", "dev/shm", sc.MS_NOSUID | sc.MS_NODEV, "mode=1777")

SYSTEM_MOUNTS = (
    # /proc: a new procfs needs a new pid namespace, which would need a resident parent; the
    # host's /proc is bound instead, as Charliecloud does (a service has both: OWN_PROC).
    Mount(BIND_DIR, "/proc", "proc", sc.MS_REC),
    Mount(BIND_DIR, "/sys", "sys", sc.MS_REC,
          restrict=sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC),
    Mount(TMPFS, "toolbox-dev", "dev", sc.MS_NOSUID | sc.MS_NOEXEC, "mode=0755"),
    *(Mount(DEVICE, f"/dev/{name}", f"dev/{name}") for name in DEVICE_NODES),
    Mount(BIND_DIR, "/dev/pts", "dev/pts", sc.MS_REC, when=(os.path.isdir, "/dev/pts")),
    Mount(SYMLINK, "pts/ptmx", "dev/ptmx", when=(os.path.isdir, "/dev/pts")),
    SHM,
    Mount(SYMLINK, "/proc/self/fd", "dev/fd"),
    Mount(SYMLINK, "/proc/self/fd/0", "dev/stdin"),
    Mount(SYMLINK, "/proc/self/fd/1", "dev/stdout"),
    Mount(SYMLINK, "/proc/self/fd/2", "dev/stderr"),
    Mount(BIND_FILE, "/etc/resolv.conf", "etc/resolv.conf", when=(os.path.exists, "/etc/resolv.conf")),
    Mount(BIND_FILE, "/etc/hosts", "etc/hosts", when=(os.path.exists, "/etc/hosts")),
)


# With a pid namespace of its own, the tool gets a procfs of it; nosuid, nodev and noexec, as the
# host's /proc has them: the kernel refuses a procfs less restricted than the one visible.
OWN_PROC = Mount(PROC, "proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
SYSTEM_MOUNTS_OWN_PROC = (OWN_PROC,) + SYSTEM_MOUNTS[1:]


def mount_system(root: str, own_proc: bool = False, shm_size: int | None = None) -> None:
    table = SYSTEM_MOUNTS_OWN_PROC if own_proc else SYSTEM_MOUNTS
    if shm_size is not None:
        sized = Mount(SHM.kind, SHM.source, SHM.target, SHM.flags, f"{SHM.data},size={shm_size}")
        table = tuple(sized if entry is SHM else entry for entry in table)
    mount_table(root, table)


def mount_table(root: str, table: tuple[Mount, ...]) -> None:
    for entry in table:
        if entry.when is None or entry.when[0](entry.when[1]):
            _MAKERS[entry.kind](root, entry)


def _bind(root: str, entry: Mount) -> None:
    target = _target(root, entry.target, directory=entry.kind == BIND_DIR)
    sc.mount(entry.source, target, None, sc.MS_BIND | entry.flags)
    if entry.restrict:
        try:
            sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | entry.restrict)
        except OSError:
            pass  # locked flags on the host's mount: it stays as the host has it


def _device(root: str, entry: Mount) -> None:
    target = os.path.join(root, entry.target)  # in our own /dev (OWN_DEV)
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        sc.mount(entry.source, target, None, sc.MS_BIND | entry.flags)
    except FileNotFoundError:
        os.unlink(target)  # the host has no such device


def _filesystem(root: str, entry: Mount) -> None:
    fstype = "tmpfs" if entry.kind == TMPFS else "proc"
    sc.mount(entry.source, _target(root, entry.target, directory=True), fstype, entry.flags, entry.data)


def _symlink(root: str, entry: Mount) -> None:
    os.symlink(entry.source, os.path.join(root, entry.target))


_MAKERS = {BIND_DIR: _bind, BIND_FILE: _bind, DEVICE: _device, TMPFS: _filesystem, PROC: _filesystem,
           SYMLINK: _symlink}


def _target(root: str, relative: str, directory: bool) -> str:
    if relative.startswith(OWN_DEV):
        path = os.path.join(root, relative)
        if directory:
            os.mkdir(path)
        return path
    return mountpoint(root, relative, directory)


def resolve_inside(root: str, relative: str, max_links: int = 40) -> str:
    """The path `relative` names inside `root`, resolving symlinks as they will resolve after
    pivot_root: an absolute target restarts at `root`, `..` stops at it. The root is set up
    before the pivot, so following the image's symlinks as the host sees them could reach host
    files (an image whose /etc is a symlink to /home/you would get your files written)."""
    pending = [part for part in relative.split("/") if part not in ("", ".")]
    resolved = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if not os.path.islink(candidate):
            resolved.append(part)
            continue
        links += 1
        if links > max_links:
            raise OSError(40, f"too many symbolic links in {relative}")  # ELOOP
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending = [p for p in target.split("/") if p not in ("", ".")] + pending
    return os.path.join(root, *resolved)


def mountpoint(root: str, relative: str, directory: bool) -> str:
    """Create what a mount needs to sit on, inside the scratch layer. Parents are resolved
    inside the root; a symlink in the last place is replaced (the image's /etc/resolv.conf or
    /dev entries may be symlinks), so the mount lands where the tool will look. A last name of
    `..` (a home directory from the image's /etc/passwd may end so) is resolved too, so that the
    mount cannot land above the root. A file is created with O_NONBLOCK: were a FIFO there, an
    open for writing would wait for a reader."""
    relative = relative.strip("/")
    if os.path.basename(relative) in ("", ".", ".."):
        path = resolve_inside(root, relative)
        parent = os.path.dirname(path)
    else:
        parent = resolve_inside(root, os.path.dirname(relative))
        path = os.path.join(parent, os.path.basename(relative))
    if os.path.islink(path):
        os.unlink(path)
    if directory:
        os.makedirs(path, exist_ok=True)
    elif not os.path.exists(path):
        os.makedirs(parent, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         0o644))
    return path


def bind(root: str, mount: Bind) -> None:
    """Bind `mount.host` at `mount.inside`. With an identity (device, inode), only that very
    object: the host path is opened here and mounted through the fd, and refused if it is
    another by now. Its masks cover protected places below it (argpaths.protection)."""
    host = mount.host
    fd = None
    if mount.identity is not None:
        fd = os.open(host, os.O_PATH | os.O_CLOEXEC)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != tuple(mount.identity):
            os.close(fd)
            raise OSError(errno.EPERM, f"{host} changed since it was checked (a symlink swapped?)")
        host = f"/proc/self/fd/{fd}"
    try:
        target = mountpoint(root, mount.inside.lstrip("/"), directory=os.path.isdir(host))
        sc.mount(host, target, None, sc.MS_BIND | sc.MS_REC)
        if mount.read_only:
            sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)
    finally:
        if fd is not None:
            os.close(fd)
    for relative, kind in mount.masks:
        cover(os.path.join(target, relative), kind)


def cover(path: str, kind: str) -> None:
    """Make a protected place below a bind read-only ("read-only": bound read-only over itself)
    or invisible ("hidden": an empty read-only tmpfs, or /dev/null for a file). The place was
    a real path when judged; if it is a symlink now, the mount would land elsewhere: refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return  # gone since it was judged: nothing to cover
    if stat_module.S_ISLNK(st.st_mode):
        raise OSError(errno.EPERM, f"{path} became a symlink since it was checked")
    if kind == "hidden":
        if stat_module.S_ISDIR(st.st_mode):
            sc.mount("toolbox-hidden", path, "tmpfs",
                     sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=0755,size=4k")
            return
        sc.mount("/dev/null", path, None, sc.MS_BIND)
    else:
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    sc.mount(None, path, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)

