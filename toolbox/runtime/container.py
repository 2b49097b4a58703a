"""The rootless runtime: build a container around this very process, then become the tool.

The launch path: no daemon and no fork, but for two helpers that need one (newuidmap for
--subids, which exits; fuse-overlayfs in that fallback mode, which serves the root for as long
as the tool runs). The order follows bubblewrap and runc, after giving back the signal
dispositions the caller gave toolbox (signals.py), which the helpers and the tool start with:
unshare user + mount namespaces → write id maps (setgroups denied before gid_map) → make every
mount private → assemble the root (tmpfs scratch, overlayfs of the image's layer trees) → system
mounts (/proc, /sys, a minimal /dev) and the user's binds → pivot_root → chdir →
no_new_privs → a seccomp filter refusing TIOCSTI/TIOCLINUX → execve. The process keeps its
pid, its terminal, its stdin/stdout/stderr and its parent, so pipes, job control, signals and the
exit status are the tool's own.

It knows nothing of images or recipes: it receives a RunSpec (spec.py). Every failure names the
step and the path (RuntimeStepError); the caller turns it into exit status 125. The mounts inside
the root are tables walked in mounts.py.
"""

import os
from _collections_abc import Callable  # collections.abc's own, loaded with os (collections.abc costs ~1.5 ms)

from toolbox.errors import CommandNotExecutable, CommandNotFound, RuntimeStepError
from toolbox.runtime import rootfs
from toolbox.runtime import syscalls as sc
from toolbox.runtime.imagefs import ACCOUNTS_LIMIT, FileTooBig, NotRegularFile, read_regular
from toolbox.runtime.mounts import bind, mount_system, mountpoint, resolve_inside
from toolbox.runtime.signals import restore_caller_signals
from toolbox.runtime.spec import ASSEMBLE, ID_MAPS, PRIVATE, UNSHARE, RunSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def exec_container(spec: RunSpec) -> None:
    """Never returns: execs the tool, or raises."""
    restore_caller_signals()  # before the first fork: newuidmap and fuse-overlayfs start with them too
    enter_namespaces(spec, sc.CLONE_NEWNS)
    assemble_and_exec(spec)


def enter_namespaces(spec: RunSpec, namespaces: int) -> None:
    """Unshare a user namespace with `namespaces` (and a network one unless it uses the host's), and
    map the ids. A service's monitor enters the user and pid namespaces this way, and forks the
    tool, which unshares the mount namespace and goes on with assemble_and_exec."""
    uid, gid = os.getuid(), os.getgid()
    namespaces |= sc.CLONE_NEWUSER | (0 if spec.network == "host" else sc.CLONE_NEWNET)
    mapper = None
    if spec.subid_maps:
        from toolbox.runtime.subids import IdMapper

        mapper = IdMapper(*spec.subid_maps)  # forked now: it must stay outside the namespace
    wait_until_single_threaded()
    try:
        run_step(UNSHARE, sc.unshare, namespaces)
    except BaseException:
        if mapper:
            mapper.cancel()
        raise
    if mapper:
        run_step("map id ranges with newuidmap and newgidmap", mapper.map_now)
    else:
        run_step(ID_MAPS, write_id_maps, spec.uid, uid, spec.gid, gid)
    if spec.network != "host":
        run_step("bring up the loopback interface", bring_up_loopback)


def assemble_and_exec(spec: RunSpec) -> None:
    """In the namespaces: the root, its mounts, pivot_root, and the exec. Never returns."""
    run_step(PRIVATE, sc.mount, None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    try:
        root = rootfs.assemble(spec)
    except rootfs.AssembleError as err:
        raise RuntimeStepError(f"{ASSEMBLE} ({err.mode})", err) from None
    except OSError as err:
        raise RuntimeStepError(ASSEMBLE, err) from None
    if not root.writable:
        run_step("mount tmpfs for /tmp, /run and the home directory", rootfs.mount_scratch_space, root,
                 spec.home)
    run_step("mount /proc, /sys and /dev", mount_system, root.path, spec.pid_namespace, spec.shm_size)
    run_step("add the user to /etc/passwd", add_user, root, spec)
    for mount in spec.binds:
        run_step(f"bind {mount.host} to {mount.inside}", bind, root.path, mount)
    for inside in spec.tmpfs:
        target = mountpoint(root.path, inside, directory=True)
        run_step(f"mount a tmpfs on {inside}", sc.mount, "tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV,
                 "mode=1777")
    run_step(f"create the working directory {spec.cwd}", make_working_directory, root, spec.cwd)
    if spec.read_only or not root.writable:
        run_step("make the root read-only", sc.mount, None, root.path, None,
                 sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)
    run_step("pivot_root", pivot_into, root.path)
    run_step(f"chdir {spec.cwd}", os.chdir, spec.cwd)
    run_step("set no_new_privs", sc.set_no_new_privs)
    run_step("refuse terminal injection (seccomp)", sc.block_terminal_injection)
    execute(spec.argv, spec.env)


def wait_until_single_threaded(timeout: float = 5.0) -> None:
    """unshare(CLONE_NEWUSER) fails with EINVAL while the process has other threads
    (unshare(2)). The launch path starts none, but the cold tier may have pulled an image with
    a thread pool just before: its threads are joined, yet each may still be leaving the
    kernel's thread group for a moment, longer on a loaded machine. Only then is it checked."""
    import sys

    if "threading" not in sys.modules:
        return
    import time

    deadline = time.monotonic() + timeout
    while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < deadline:
        time.sleep(0.001)


def run_step(name: str, function: Callable[..., object], *args: object) -> object:
    """function(*args), an OSError of it a RuntimeStepError naming the step `name`."""
    try:
        return function(*args)
    except OSError as err:
        raise RuntimeStepError(name, err) from None


def write_id_maps(inner_uid: int, outer_uid: int, inner_gid: int, outer_gid: int) -> None:
    """Map one id inside to our own outside: files the tool creates are ours outside, whoever
    it is inside. setgroups must be denied before an unprivileged process may write gid_map
    (user_namespaces(7))."""
    _write_file("/proc/self/setgroups", b"deny", 0)
    _write_file("/proc/self/uid_map", f"{inner_uid} {outer_uid} 1".encode(), 0)
    _write_file("/proc/self/gid_map", f"{inner_gid} {outer_gid} 1".encode(), 0)


def _write_file(path: str, data: bytes, flags: int = os.O_CREAT | os.O_TRUNC) -> None:
    """One write(2), without Python's buffered text layer (the launch path counts its 0.1 ms)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def bring_up_loopback() -> None:
    """A new network namespace has only `lo`, and it is down (netdevice(7): SIOCSIFFLAGS)."""
    import fcntl
    import socket
    import struct

    SIOCSIFFLAGS = 0x8914
    IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))


def add_user(root: rootfs.Root, spec: RunSpec) -> None:
    """So that `whoami`, `id` and `~` work: an entry for the user, and a writable home. On a
    read-only root the files are never written in place (in a flattened image they are hard
    links into the layer trees): a copy with the entry is bound over them. The image's files
    are read as the host sees the root, before pivot_root, so only as _read_accounts allows; one
    it will not read is left as the image has it, and the tool runs without the entry (a home
    that is no directory, /dev/null for some daemons' users, is left so too)."""
    try:
        os.makedirs(resolve_inside(root.path, spec.home), exist_ok=True)
    except FileExistsError:
        pass
    etc = resolve_inside(root.path, "etc")
    uid, gid = spec.uid, spec.gid
    entries = (("passwd", f"{spec.user_name}:x:{uid}:{gid}:{spec.user_name}:{spec.home}:/bin/sh\n", uid),
               ("group", f"{spec.user_name}:x:{gid}:\n", gid))
    for name, line, id_ in entries:
        path = os.path.join(etc, name)
        content = _read_accounts(path)
        if content is None or _has_id(content, id_):
            continue
        if content and not content.endswith("\n"):
            line = "\n" + line
        if root.writable:
            os.makedirs(etc, exist_ok=True)
            _write_file(path, line.encode("utf-8", "surrogateescape"),
                        os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK)
        else:
            copy = os.path.join(os.path.dirname(root.path), name)
            _write_file(copy, (content + line).encode("utf-8", "surrogateescape"))
            sc.mount(copy, mountpoint(root.path, f"etc/{name}", directory=False), None, sc.MS_BIND)


def _read_accounts(path: str) -> str | None:
    """The image's /etc/passwd or /etc/group: "" when there is none, None when it is to be left
    as it is: anything but a regular file (a symlink, which would be followed on the host; a
    FIFO, which would block the open forever; a directory), one past ACCOUNTS_LIMIT (a sparse
    file of terabytes would be read into memory), or an /etc that is no directory."""
    try:
        data = read_regular(path, ACCOUNTS_LIMIT)
    except (NotRegularFile, FileTooBig, NotADirectoryError):
        return None
    return "" if data is None else data.decode("utf-8", "surrogateescape")


def _has_id(content: str, id_: int) -> bool:
    for line in content.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2] == str(id_):
            return True
    return False


def make_working_directory(root: rootfs.Root, cwd: str) -> None:
    """As docker does, a working directory the image lacks is created (in the writable layer;
    a read-only root gets the chdir error instead). Resolved inside the root, like mounts."""
    path = resolve_inside(root.path, cwd)
    if root.writable and not os.path.isdir(path) and not os.path.lexists(path):
        os.makedirs(path, 0o755)


def pivot_into(root: str) -> None:
    """pivot_root(".", "."), then detach the old root that now sits on top (the trick runc uses:
    no directory for the old root is needed)."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def execute(argv: list[str], env: dict[str, str]) -> None:
    """execvp with the container's PATH. Not os.execvpe: it imports `warnings` on the way, and
    after pivot_root the host's Python library is out of reach. As execvp(3) does, a command
    found but not executable wins over the ones not found."""
    command = argv[0]
    if "/" in command:
        candidates = [command]
    else:
        candidates = [os.path.join(directory or ".", command)
                      for directory in env.get("PATH", DEFAULT_PATH).split(":")]
    refused = None
    for path in candidates:
        try:
            os.execve(path, argv, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as err:  # EACCES, ENOEXEC, EISDIR...: found, but it will not run
            refused = refused or err
    if refused is not None:
        raise CommandNotExecutable(f"{command}: {refused.strerror}")
    raise CommandNotFound(command)
