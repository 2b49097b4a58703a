"""The rootless runtime: build a container around this very process, then become the tool.

The launch path: no daemon and no fork, but for two helpers that need one (newuidmap for
--subids, which exits; fuse-overlayfs in that fallback mode, which serves the root for as long
as the tool runs). The order follows bubblewrap and runc, after giving back the signal
dispositions the caller gave toolbox (signals.py), which the helpers and the tool start with:
unshare user + mount namespaces → write id maps (setgroups denied before gid_map) → make every
mount private → assemble the root (tmpfs scratch, overlayfs of the image's layer trees) → system
mounts (/proc, /sys, a minimal /dev) and the user's binds → pivot_root → chdir →
no_new_privs → a seccomp filter refusing TIOCSTI/TIOCLINUX → execve. The process keeps its pid, its terminal, its stdin/stdout/stderr and
its parent, so pipes, job control, signals and the exit status are the tool's own.

It knows nothing of images or recipes: it receives a RunSpec. Every failure names the step and
the path (RuntimeStepError); the caller turns it into exit status 125.
"""

import errno
import os
import stat as stat_module

from toolbox.runtime import rootfs
from toolbox.runtime import syscalls as sc
from toolbox.runtime.imagefs import ACCOUNTS_LIMIT, FileTooBig, NotRegularFile, read_regular
from toolbox.runtime.signals import restore_caller_signals

DEVICE_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RunSpec:
    """What to run and how: the one contract between planning and the runtime."""

    __slots__ = ("layers_dir", "layers", "scratch_dir", "argv", "env", "cwd", "binds", "tmpfs", "network", "user_name", "home", "read_only",
                 "uid", "gid", "upper", "work", "rootfs", "flat_root", "subid_maps")

    def __init__(self, layers_dir, layers, scratch_dir, argv, env, cwd, binds=(), tmpfs=(), network="host", user_name="user", home="/home/user",
                 read_only=False, uid=None, gid=None, upper=None, work=None, rootfs=rootfs.MODES, flat_root=None, subid_maps=None):
        self.layers_dir = layers_dir  # the directory that holds the layer trees
        self.layers = layers  # layer tree names relative to layers_dir, topmost first
        self.scratch_dir = scratch_dir  # an empty directory to mount the scratch tmpfs on
        self.argv = argv
        self.env = env  # dict
        self.cwd = cwd  # working directory inside
        self.binds = binds  # (host path, container path, read_only)
        self.tmpfs = tmpfs  # container paths that get a fresh tmpfs
        self.network = network  # "host": the host's network; "none": a namespace with only lo
        self.user_name = user_name
        self.home = home
        self.read_only = read_only
        # The ids the tool has inside, mapped to the invoking user's (default: the same ids).
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        # A kept writable layer (--name): overlayfs upper and work directories; None for a
        # scratch layer in a tmpfs that vanishes with the run.
        self.upper = upper
        self.work = work
        self.rootfs = rootfs  # the modes to try, in order (rootfs.parse_modes)
        self.flat_root = flat_root  # where read-only mode keeps flattened images
        self.subid_maps = subid_maps  # subids.plan_maps(): full id ranges through newuidmap, or None


class RuntimeStepError(Exception):
    def __init__(self, step, err):
        super().__init__(f"{step}: {err.strerror if isinstance(err, OSError) and err.strerror else err}")
        self.step = step
        self.errno = getattr(err, "errno", None)


class CommandNotFound(Exception):
    pass


class CommandNotExecutable(Exception):
    pass


def exec_container(spec):
    """Never returns: execs the tool, or raises."""
    restore_caller_signals()  # before the first fork: newuidmap and fuse-overlayfs start with them too
    uid, gid = os.getuid(), os.getgid()
    namespaces = sc.CLONE_NEWUSER | sc.CLONE_NEWNS | (sc.CLONE_NEWNET if spec.network == "none" else 0)
    mapper = None
    if spec.subid_maps:
        from toolbox.runtime.subids import IdMapper

        mapper = IdMapper(*spec.subid_maps)  # forked now: it must stay outside the namespace
    wait_until_single_threaded()
    try:
        _step("unshare user and mount namespaces", sc.unshare, namespaces)
    except BaseException:
        if mapper:
            mapper.cancel()
        raise
    if mapper:
        _step("map id ranges with newuidmap and newgidmap", mapper.map_now)
    else:
        _step("write id maps", write_id_maps, spec.uid, uid, spec.gid, gid)
    if spec.network == "none":
        _step("bring up the loopback interface", bring_up_loopback)
    _step("make mounts private", sc.mount, None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    try:
        root = rootfs.assemble(spec)
    except rootfs.AssembleError as err:
        raise RuntimeStepError(f"assemble the root filesystem ({err.mode})", err) from None
    except OSError as err:
        raise RuntimeStepError("assemble the root filesystem", err) from None
    if not root.writable:
        _step("mount tmpfs for /tmp, /run and the home directory", rootfs.mount_scratch_space, root, _mountpoint, spec.home)
    _step("mount /proc, /sys and /dev", mount_system, root.path)
    _step("add the user to /etc/passwd", add_user, root, spec)
    for host, inside, read_only, *identity_and_masks in spec.binds:
        _step(f"bind {host} to {inside}", bind, root.path, host, inside, read_only, *identity_and_masks)
    for inside in spec.tmpfs:
        _step(f"mount a tmpfs on {inside}", sc.mount, "tmpfs", _mountpoint(root.path, inside, directory=True), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=1777")
    _step(f"create the working directory {spec.cwd}", make_working_directory, root, spec.cwd)
    if spec.read_only or not root.writable:
        _step("make the root read-only", sc.mount, None, root.path, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)
    _step("pivot_root", pivot_into, root.path)
    _step(f"chdir {spec.cwd}", os.chdir, spec.cwd)
    _step("set no_new_privs", sc.set_no_new_privs)
    _step("refuse terminal injection (seccomp)", sc.block_terminal_injection)
    execute(spec.argv, spec.env)


def wait_until_single_threaded(timeout=5.0):
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


def _step(name, function, *args):
    try:
        return function(*args)
    except OSError as err:
        raise RuntimeStepError(name, err) from None


def write_id_maps(inner_uid, outer_uid, inner_gid, outer_gid):
    """Map one id inside to our own outside: files the tool creates are ours outside, whoever
    it is inside. setgroups must be denied before an unprivileged process may write gid_map
    (user_namespaces(7))."""
    _write_file("/proc/self/setgroups", b"deny", 0)
    _write_file("/proc/self/uid_map", f"{inner_uid} {outer_uid} 1".encode(), 0)
    _write_file("/proc/self/gid_map", f"{inner_gid} {outer_gid} 1".encode(), 0)


def _write_file(path, data, flags=os.O_CREAT | os.O_TRUNC):
    """One write(2), without Python's buffered text layer (the launch path counts its 0.1 ms)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def bring_up_loopback():
    """A new network namespace has only `lo`, and it is down (netdevice(7): SIOCSIFFLAGS)."""
    import fcntl
    import socket
    import struct

    SIOCSIFFLAGS = 0x8914
    IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))


def mount_system(root):
    # /proc: a new procfs needs a new pid namespace, which would need a resident parent; the
    # host's /proc is bound instead, as Charliecloud does.
    proc = _mountpoint(root, "proc", directory=True)
    sc.mount("/proc", proc, None, sc.MS_BIND | sc.MS_REC)
    sys_dir = _mountpoint(root, "sys", directory=True)
    sc.mount("/sys", sys_dir, None, sc.MS_BIND | sc.MS_REC)
    try:
        sc.mount(None, sys_dir, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    except OSError:
        pass  # locked flags on the host's /sys: it stays as the host has it
    dev = _mountpoint(root, "dev", directory=True)
    sc.mount("toolbox-dev", dev, "tmpfs", sc.MS_NOSUID | sc.MS_NOEXEC, "mode=0755")
    # Our own empty tmpfs from here: no image symlink to resolve, so mount points are made directly.
    for name in DEVICE_NODES:
        target = os.path.join(dev, name)
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
            sc.mount(f"/dev/{name}", target, None, sc.MS_BIND)
        except FileNotFoundError:
            os.unlink(target)  # the host has no such device
    if os.path.isdir("/dev/pts"):
        os.mkdir(os.path.join(dev, "pts"))
        sc.mount("/dev/pts", os.path.join(dev, "pts"), None, sc.MS_BIND | sc.MS_REC)
        os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    os.mkdir(os.path.join(dev, "shm"))
    sc.mount("toolbox-shm", os.path.join(dev, "shm"), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=1777")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))
    for name in ("resolv.conf", "hosts"):
        if os.path.exists(f"/etc/{name}"):
            sc.mount(f"/etc/{name}", _mountpoint(root, f"etc/{name}", directory=False), None, sc.MS_BIND)


def resolve_inside(root, relative, max_links=40):
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


def _mountpoint(root, relative, directory):
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
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644))
    return path


def add_user(root, spec):
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
            _write_file(path, line.encode("utf-8", "surrogateescape"), os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK)
        else:
            copy = os.path.join(os.path.dirname(root.path), name)
            _write_file(copy, (content + line).encode("utf-8", "surrogateescape"))
            sc.mount(copy, _mountpoint(root.path, f"etc/{name}", directory=False), None, sc.MS_BIND)


def _read_accounts(path):
    """The image's /etc/passwd or /etc/group: "" when there is none, None when it is to be left
    as it is: anything but a regular file (a symlink, which would be followed on the host; a
    FIFO, which would block the open forever; a directory), one past ACCOUNTS_LIMIT (a sparse
    file of terabytes would be read into memory), or an /etc that is no directory."""
    try:
        data = read_regular(path, ACCOUNTS_LIMIT)
    except (NotRegularFile, FileTooBig, NotADirectoryError):
        return None
    return "" if data is None else data.decode("utf-8", "surrogateescape")


def _has_id(content, id_):
    for line in content.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2] == str(id_):
            return True
    return False


def bind(root, host, inside, read_only, identity=None, masks=()):
    """Bind `host` at `inside`. With `identity` (device, inode), only that very object: the
    host path is opened here and mounted through the fd, and refused if it is another by now.
    `masks` cover protected places below it (argpaths.protection): (relative path, kind)."""
    fd = None
    if identity is not None:
        fd = os.open(host, os.O_PATH | os.O_CLOEXEC)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != tuple(identity):
            os.close(fd)
            raise OSError(errno.EPERM, f"{host} changed since it was checked (a symlink swapped?)")
        host = f"/proc/self/fd/{fd}"
    try:
        target = _mountpoint(root, inside.lstrip("/"), directory=os.path.isdir(host))
        sc.mount(host, target, None, sc.MS_BIND | sc.MS_REC)
        if read_only:
            sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)
    finally:
        if fd is not None:
            os.close(fd)
    for relative, kind in masks:
        cover(os.path.join(target, relative), kind)


def cover(path, kind):
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
            sc.mount("toolbox-hidden", path, "tmpfs", sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=0755,size=4k")
            return
        sc.mount("/dev/null", path, None, sc.MS_BIND)
    else:
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    sc.mount(None, path, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)


def make_working_directory(root, cwd):
    """As docker does, a working directory the image lacks is created (in the writable layer;
    a read-only root gets the chdir error instead). Resolved inside the root, like mounts."""
    path = resolve_inside(root.path, cwd)
    if root.writable and not os.path.isdir(path) and not os.path.lexists(path):
        os.makedirs(path, 0o755)


def pivot_into(root):
    """pivot_root(".", "."), then detach the old root that now sits on top (the trick runc uses:
    no directory for the old root is needed)."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def execute(argv, env):
    """execvp with the container's PATH. Not os.execvpe: it imports `warnings` on the way, and
    after pivot_root the host's Python library is out of reach. As execvp(3) does, a command
    found but not executable wins over the ones not found."""
    command = argv[0]
    if "/" in command:
        candidates = [command]
    else:
        candidates = [os.path.join(directory or ".", command) for directory in env.get("PATH", DEFAULT_PATH).split(":")]
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
