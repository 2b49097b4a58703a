"""What this host lets the runtime do, asked of the kernel rather than guessed from versions: a
child process makes the same user and mount namespaces `toolbox run` makes, writes the same id
maps and assembles the same root (probe_runtime); the sysctls, the kernel release and /dev/fuse
read alongside only explain a failure and choose its fix.

`toolbox doctor` (ops/doctor.py) reports these; the launch path imports this module only after
a failed run, for hint_for_run_failure. So it may use what the launch path may not (dataclasses,
re, select, shutil): a failed launch ends right after. It must load without the generated cffi
module, to report it broken: the runtime's modules that need it are imported in probe_runtime.

Where the host is read (/proc, /etc, /dev, the kernel release) is a Host value, so tests can show
a check a host they cannot have.
"""

import errno
import os
import re
import select
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from toolbox.layout import Layout
from toolbox.runtime.spec import ASSEMBLE, ID_MAPS, NAMESPACE_STEPS, PRIVATE, UNSHARE, RunSpec

# Unprivileged overlayfs (the `userxattr` option) came with Linux 5.11.
OVERLAY_KERNEL = (5, 11)
PROBE_TIMEOUT = 5.0

# (sysctl, the value that stops ordinary users, the value that lets them), in the order a fix
# is chosen: Debian's switch, Ubuntu 24.04's AppArmor restriction, the namespace count limit.
USERNS_SYSCTLS = (
    ("kernel.unprivileged_userns_clone", 0, 1),
    ("kernel.apparmor_restrict_unprivileged_userns", 1, 0),
    ("user.max_user_namespaces", 0, 15000),
)
KERNEL_FIX = "install Linux 5.11 or later (your distribution's current kernel, or its backports)"
STORE_FS_FIX = "put the store on ext4, xfs, btrfs or tmpfs: set TOOLBOX_CACHE_DIR to a directory there"
USERNS_FIRST = "fix the user namespaces line first"
DOCTOR_HINT = "run `toolbox doctor` to see what this host lacks"
FUSE_REFUSED_HINT = "fuse-overlayfs's own message is above; TOOLBOX_ROOTFS=read-only runs without it"


@dataclass(frozen=True)
class Host:
    """Where the checks read the host. The defaults are this machine."""

    proc: str = "/proc"
    etc: str = "/etc"
    dev: str = "/dev"
    release: str | None = None  # the kernel release; os.uname()'s when None

    def kernel_release(self) -> str:
        return self.release if self.release is not None else os.uname().release


@dataclass(frozen=True)
class Probe:
    """How far the runtime's own steps got in a child process: failed_step is None when all
    of them worked."""

    failed_step: str | None = None
    errno: int | None = None
    message: str = ""

    @property
    def namespaces_work(self) -> bool:
        return self.failed_step not in NAMESPACE_STEPS

    def describe(self) -> str:
        return f"{self.failed_step}: {self.message}"


@dataclass(frozen=True)
class Fuse:
    binary: str | None  # fuse-overlayfs on PATH
    device: str
    device_error: OSError | None  # why /dev/fuse cannot be opened read-write, or None

    @property
    def usable(self) -> bool:
        return self.binary is not None and self.device_error is None


# -- the kernel --------------------------------------------------------------------------------
def kernel_version(release: str) -> tuple[int, int] | None:
    """(major, minor) from a release such as 6.1.0-18-amd64, or None."""
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match[1]), int(match[2])) if match else None


# -- user namespaces ---------------------------------------------------------------------------
def read_sysctls(host: Host) -> dict[str, int]:
    """The user-namespace sysctls this kernel has, as {name: int}. A missing file means the
    kernel has no such switch (only Debian's kernels have unprivileged_userns_clone)."""
    values = {}
    for name, _blocking, _wanted in USERNS_SYSCTLS:
        try:
            with open(os.path.join(host.proc, "sys", *name.split("."))) as file:
                values[name] = int(file.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return values


def _sysctl_fix(name, value):
    return (f"sudo sysctl -w {name}={value} (and add `{name} = {value}` to /etc/sysctl.d/toolbox.conf "
            "to keep it)")


def userns_fix(sysctls: dict[str, int], err_no: int | None = None, host: Host | None = None) -> str:
    """The one fix for user namespaces that do not work, from what the host says is in the way."""
    for name, blocking, wanted in USERNS_SYSCTLS:
        if sysctls.get(name) == blocking:
            return _sysctl_fix(name, wanted)
    if err_no == errno.ENOSPC:
        return _sysctl_fix("user.max_user_namespaces",
                           max(15000, 2 * sysctls.get("user.max_user_namespaces", 0)))
    if not os.path.exists(os.path.join((host or Host()).proc, "self", "ns", "user")):
        return ("this kernel is built without user namespaces (CONFIG_USER_NS): "
                "use your distribution's standard kernel")
    return ("no sysctl here forbids them, so a seccomp filter or a security module does: inside a container, "
            "start it with --security-opt seccomp=unconfined (or run toolbox on the host)")


# -- the runtime probe -------------------------------------------------------------------------
def probe_runtime(workdir: str | None = None, timeout: float = PROBE_TIMEOUT, mode: str = "overlay") -> Probe:
    """Run the runtime's first steps in a child process: unshare, id maps, private mounts and,
    when `workdir` (an absent directory in the store's tmp area) is given, the root in `mode`
    (one of rootfs.MODES), written to. The child's namespaces and mounts die with it (and a
    fuse-overlayfs it started, with its parent-death signal)."""
    try:
        # Loaded before the fork, so a broken cffi module is a line here, not a crash in the child.
        from toolbox.runtime import container as runtime
        from toolbox.runtime import rootfs, syscalls

        if workdir is not None:
            os.makedirs(os.path.join(workdir, "lower"))
            os.mkdir(os.path.join(workdir, "scratch"))
            with open(os.path.join(workdir, "lower", "probe"), "w"):
                pass
    except Exception as err:
        return Probe(UNSHARE if workdir is None else ASSEMBLE, getattr(err, "errno", None),
                     f"cannot prepare the probe: {err}")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any of the parent's cleanup
        try:
            os.close(read_fd)
            os.write(write_fd, _probe_in_child(runtime, rootfs, syscalls, workdir, mode)
                               .encode("utf-8", "replace")[:4000])
        finally:
            os._exit(0)
    os.close(write_fd)
    ready = []
    try:
        ready, _, _ = select.select([read_fd], [], [], timeout)
        report = os.read(read_fd, 4096).decode("utf-8", "replace") if ready else None
    finally:
        os.close(read_fd)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if report is None:
        return Probe(UNSHARE, None, f"the probe did not answer within {timeout:g} s")
    if report == "ok":
        return Probe()
    step, _, rest = report.partition("\t")
    number, _, message = rest.partition("\t")
    if not step:
        return Probe(UNSHARE, None, "the probe process died without a report")
    return Probe(step, int(number) if number else None, message)


def _probe_in_child(runtime, rootfs, sc, workdir, mode):
    """Tab-separated step, errno and message of the first failure, or "ok"."""
    uid, gid = os.getuid(), os.getgid()  # before unshare: afterwards they read as the overflow id
    step = UNSHARE
    try:
        sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWNS)
        step = ID_MAPS
        runtime.write_id_maps(uid, uid, gid, gid)
        step = PRIVATE
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        if workdir is not None:
            step = f"{ASSEMBLE} ({mode})"
            spec = RunSpec(layers_dir=workdir, layers=["lower"], scratch_dir=os.path.join(workdir, "scratch"),
                           argv=[], env={}, cwd="/", rootfs=(mode,))
            root = rootfs.assemble(spec).path
            if not os.path.exists(os.path.join(root, "probe")):
                raise OSError(errno.ENOENT, f"the lower layer's file is not visible through {mode}")
            with open(os.path.join(root, "written"), "w"):
                pass
    except BaseException as err:
        return f"{step}\t{getattr(err, 'errno', None) or ''}\t{getattr(err, 'strerror', None) or err}"
    return "ok"


@contextmanager
def workspace(layout: Layout) -> Iterator[tuple[str, None] | tuple[None, Exception]]:
    """(a locked temp directory in the store's tmp area, None), or (None, why there is none):
    where probe_runtime assembles its root, on the filesystem the layers are on. Made as the
    store makes its staging directories (Store.staging: KIND-PID-RANDOM, locked before it
    exists), so that `toolbox prune` removes one a killed probe left (its lock is free)."""
    try:
        path, lock_fd = _make_workspace(layout.tmp_dir)
    except Exception as err:  # an unwritable store, or a path the OS refuses
        yield None, err
        return
    try:
        yield path, None
    finally:
        _remove_workspace(path, lock_fd)


def _make_workspace(tmp_dir):
    from toolbox import locks

    os.makedirs(tmp_dir, 0o755, exist_ok=True)
    path = os.path.join(tmp_dir, f"doctor-{os.getpid()}-{os.urandom(6).hex()}")
    lock_fd = locks.acquire(path + ".lock")
    try:
        os.mkdir(path, 0o700)
    except BaseException:
        _remove_workspace(path, lock_fd)
        raise
    return path, lock_fd


def _remove_workspace(path, lock_fd):
    """Removed quietly: if it fails, the next toolbox run removes it (its lock is free)."""
    from toolbox import fsutil

    try:
        fsutil.remove_tree(path)
        fsutil.unlink_quietly(path + ".lock")
    except Exception:
        pass
    finally:
        os.close(lock_fd)


# -- overlay and fuse --------------------------------------------------------------------------
def overlay_fix(probe: Probe, release: str) -> str | None:
    """The fix when the probe's root did not assemble (None when it did): the namespaces first,
    then a kernel with overlayfs in user namespaces, or a store on a filesystem overlayfs takes."""
    if probe.failed_step is None:
        return None
    if not probe.namespaces_work:
        return USERNS_FIRST
    version = kernel_version(release)
    if version is not None and version < OVERLAY_KERNEL:
        return KERNEL_FIX
    if probe.errno in (errno.EINVAL, errno.EOPNOTSUPP):
        return STORE_FS_FIX  # the kernel has the option, so the store's filesystem refused to be a layer
    return KERNEL_FIX + " with overlayfs built in (CONFIG_OVERLAY_FS)"


def fuse_state(host: Host, environ: dict[str, str]) -> Fuse:
    import shutil

    device = os.path.join(host.dev, "fuse")
    error = None
    try:
        os.close(os.open(device, os.O_RDWR | os.O_CLOEXEC))
    except OSError as err:
        error = err
    return Fuse(shutil.which("fuse-overlayfs", path=environ.get("PATH", os.defpath)), device, error)


def fuse_problems(fuse: Fuse) -> tuple[str, list[str]]:
    """(how /dev/fuse stands, the fixes that make fuse-overlayfs usable: none when it is)."""
    fixes = []
    if fuse.binary is None:
        fixes.append("sudo apt install fuse-overlayfs")
    if isinstance(fuse.device_error, FileNotFoundError):
        device, fix = (f"{fuse.device} is missing",
                       "sudo modprobe fuse (and install your distribution's fuse3 package)")
    elif fuse.device_error is not None:
        device = (f"{fuse.device} does not open read-write "
                  f"({_mode_and_owner(fuse.device)}: {fuse.device_error.strerror})")
        fix = f"sudo chmod 0666 {fuse.device} (what your distribution's fuse3 package sets)"
    else:
        device, fix = f"{fuse.device} opens read-write", None
    return device, fixes + ([fix] if fix else [])


def _mode_and_owner(path):
    try:
        st = os.stat(path)
        return f"{stat.filemode(st.st_mode)} {user_name_of(st.st_uid)}"
    except OSError as err:
        return err.strerror


def user_name_of(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# -- hints for `toolbox run` -------------------------------------------------------------------
def hint_for_run_failure(step: str, err_no: int | None, layout: Layout | None = None,
                         host: Host | None = None) -> str:
    """The one fix for a failed runtime step (RuntimeStepError's step and errno). A failure
    path, so it may probe: for the overlay mount it runs the runtime probe."""
    host = host or Host()
    try:
        if step.startswith(NAMESPACE_STEPS):
            return userns_fix(read_sysctls(host), err_no, host)
        if step == f"{ASSEMBLE} (fuse-overlayfs)":
            return " && ".join(fuse_problems(fuse_state(host, os.environ))[1]) or FUSE_REFUSED_HINT
        if step == f"{ASSEMBLE} (read-only)":
            return DOCTOR_HINT
        if step.startswith(ASSEMBLE):
            version = kernel_version(host.kernel_release())
            if version is not None and version < OVERLAY_KERNEL:
                return KERNEL_FIX
            with workspace(layout or Layout.from_env()) as (workdir, _no_workdir):
                if workdir is None:
                    return DOCTOR_HINT
                probe = probe_runtime(os.path.join(workdir, "overlay"))
            return overlay_fix(probe, host.kernel_release()) or (
                "overlayfs works here in a probe, so this image's layers are the cause: too many for one "
                "mount, or a damaged layer tree (`toolbox rmi IMAGE`, then pull it again)")
    except Exception:
        pass  # the hint is a courtesy on a failure path: the general one will do
    return DOCTOR_HINT
