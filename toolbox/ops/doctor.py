"""`toolbox doctor`: what this host lets toolbox do, probed for real, with one fix per problem.

Each check asks the kernel rather than guessing from versions: a child process makes the same
user and mount namespaces `toolbox run` makes, writes the same id maps and assembles the same
tmpfs-over-overlayfs root (runtime.write_id_maps, runtime.assemble_root) in a temp directory of
the store; the store check writes a user xattr and a 0/0 character device where layer trees live.
The sysctls and files read alongside only explain a failure and choose its fix.

Where the checks read the host (/proc, /etc, /dev, the kernel release) is a Host value, so tests
can show a check a host they cannot have. The cgroup check reads /proc/self through
toolbox.runtime.cgroups, the code `run` itself uses for limits, so its verdict is run's.

The shell check reads the PATH doctor inherits, which is what the shell that started it exports.

Cold tier (standard library and toolbox modules, no typer): the CLI renders the checks, and the
launch path imports this module only after a failure, for hint_for_run_failure.
"""

import errno
import os
import pwd
import re
import select
import shutil
import signal
import stat
from contextlib import contextmanager
from dataclasses import dataclass

from toolbox.runtime import cgroups
from toolbox.errors import ToolboxError
from toolbox.runtime.subids import free_range, read_subids

OK, WARN, FAIL = "ok", "warn", "fail"

# Unprivileged overlayfs (the `userxattr` option) came with Linux 5.11; ordinary users may create
# the 0/0 character devices overlayfs reads as whiteouts since Linux 5.8.
OVERLAY_KERNEL = (5, 11)
WHITEOUT_KERNEL = (5, 8)
LOW_SPACE = 1 << 30
PROBE_TIMEOUT = 5.0

# The step names of runtime.exec_container, so a probe failure reads like a run failure.
UNSHARE = "unshare user and mount namespaces"
ID_MAPS = "write id maps"
PRIVATE = "make mounts private"
ASSEMBLE = "assemble the root filesystem"
NAMESPACE_STEPS = (UNSHARE, ID_MAPS, PRIVATE)

# (sysctl, the value that stops ordinary users, the value that lets them), in the order a fix
# is chosen: Debian's switch, Ubuntu 24.04's AppArmor restriction, the namespace count limit.
USERNS_SYSCTLS = (
    ("kernel.unprivileged_userns_clone", 0, 1),
    ("kernel.apparmor_restrict_unprivileged_userns", 1, 0),
    ("user.max_user_namespaces", 0, 15000),
)
KERNEL_FIX = "install Linux 5.11 or later (your distribution's current kernel, or its backports)"
STORE_FS_FIX = "put the store on ext4, xfs, btrfs or tmpfs: set TOOLBOX_CACHE_DIR to a directory there"
DOCTOR_HINT = "run `toolbox doctor` to see what this host lacks"
FUSE_REFUSED_HINT = "fuse-overlayfs's own message is above; TOOLBOX_ROOTFS=read-only runs without it"
LIMIT_OPTIONS = (("memory", "--memory"), ("cpus", "--cpus"), ("pids", "--pids-limit"))


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN or FAIL; a warn never makes doctor fail
    detail: str
    fix: str | None = None

    def to_json(self):
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Host:
    """Where the checks read the host. The defaults are this machine."""

    proc: str = "/proc"
    etc: str = "/etc"
    dev: str = "/dev"
    release: str | None = None  # the kernel release; os.uname()'s when None

    def kernel_release(self):
        return self.release if self.release is not None else os.uname().release


@dataclass(frozen=True)
class Probe:
    """How far the runtime's own steps got in a child process: failed_step is None when all
    of them worked."""

    failed_step: str | None = None
    errno: int | None = None
    message: str = ""

    @property
    def namespaces_work(self):
        return self.failed_step not in NAMESPACE_STEPS

    def describe(self):
        return f"{self.failed_step}: {self.message}"


class ChecksFailed(ToolboxError):
    """Some check failed. Exit status 1, as linters do: the host, not toolbox, needs a change."""

    exit_code = 1


def run_checks(layout, environ=None, host=None):
    """Every check, in the order a user fixes things. Never raises: a check that breaks becomes
    a failed line."""
    environ = os.environ if environ is None else environ
    host = host or Host()
    checks = []
    if os.geteuid() == 0:
        checks.append(Check("user", WARN, "running as root: the results are root's, and an ordinary user may be refused what root is allowed",
                            "run `toolbox doctor` as the user who runs toolbox"))
    with workspace(layout) as (workdir, no_workdir):
        probe = _probe_safely(workdir and os.path.join(workdir, "overlay"), "overlay")
        fuse = fuse_state(host, environ)
        fuse_probe = None
        if fuse.usable and workdir and probe.namespaces_work:
            fuse_probe = _probe_safely(os.path.join(workdir, "fuse"), "fuse-overlayfs")
        release = host.kernel_release
        checks += [
            _guarded("kernel", lambda: kernel_check(release())),
            _guarded("user namespaces", lambda: userns_check(read_sysctls(host), probe, host)),
            _guarded("overlay", lambda: overlay_check(probe, fuse, workdir, no_workdir, release(), fuse_probe)),
            _guarded("fuse", lambda: fuse_check(fuse, fuse_probe)),
            _guarded("subordinate ids", lambda: subids_check(host, environ)),
            _guarded("cgroups", cgroups_check),
            _guarded("directories", lambda: directories_check(layout)),
            _guarded("store", lambda: store_check(layout, workdir, no_workdir, host)),
            _guarded("shell", lambda: shell_check(layout, environ)),
        ]
    return checks


def _probe_safely(workdir, mode):
    try:
        return probe_runtime(workdir, mode=mode)
    except Exception as err:
        return Probe(UNSHARE, None, f"the probe broke: {type(err).__name__}: {err}")


def _guarded(name, check):
    """The check's line, or a failed line naming what broke: never a traceback."""
    try:
        return check()
    except Exception as err:
        return Check(name, FAIL, f"the check broke: {type(err).__name__}: {err}", "report this as a toolbox bug, with this line")


@contextmanager
def workspace(layout):
    """(a locked temp directory in the store's tmp area, None), or (None, why there is none).
    Removed afterwards; if that fails, the next toolbox run removes it (its lock is free)."""
    try:
        from toolbox.store.store import Store

        staging = Store(layout).staging("doctor")
        path = staging.__enter__()
    except Exception as err:  # an unwritable store, or a path the OS refuses
        yield None, err
        return
    try:
        yield path, None
    finally:
        try:
            staging.__exit__(None, None, None)
        except Exception:
            pass


def failed(checks):
    return [c for c in checks if c.status == FAIL]


def report_json(checks):
    return {"ok": not failed(checks), "checks": [c.to_json() for c in checks]}


# -- kernel ------------------------------------------------------------------------------------
def kernel_version(release):
    """(major, minor) from a release such as 6.1.0-18-amd64, or None."""
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match[1]), int(match[2])) if match else None


def kernel_check(release):
    version = kernel_version(release)
    if version is None:
        return Check("kernel", WARN, f"cannot read a version in the release {release!r}", "none needed if the user namespaces and overlay lines are ok")
    if version >= OVERLAY_KERNEL:
        return Check("kernel", OK, f"Linux {release}: overlayfs in a user namespace (5.11+) and whiteouts by ordinary users (5.8+)")
    if version >= WHITEOUT_KERNEL:
        return Check("kernel", WARN, f"Linux {release}: older than 5.11, so overlayfs in a user namespace is missing unless the distribution added it", KERNEL_FIX)
    return Check("kernel", FAIL, f"Linux {release}: older than 5.8, so ordinary users cannot store layers that delete files (0/0 whiteouts)", KERNEL_FIX)


# -- user namespaces ---------------------------------------------------------------------------
def read_sysctls(host):
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
    return f"sudo sysctl -w {name}={value} (and add `{name} = {value}` to /etc/sysctl.d/toolbox.conf to keep it)"


def userns_fix(sysctls, err_no=None, host=None):
    """The one fix for user namespaces that do not work, from what the host says is in the way."""
    for name, blocking, wanted in USERNS_SYSCTLS:
        if sysctls.get(name) == blocking:
            return _sysctl_fix(name, wanted)
    if err_no == errno.ENOSPC:
        return _sysctl_fix("user.max_user_namespaces", max(15000, 2 * sysctls.get("user.max_user_namespaces", 0)))
    if not os.path.exists(os.path.join((host or Host()).proc, "self", "ns", "user")):
        return "this kernel is built without user namespaces (CONFIG_USER_NS): use your distribution's standard kernel"
    return ("no sysctl here forbids them, so a seccomp filter or a security module does: inside a container, "
            "start it with --security-opt seccomp=unconfined (or run toolbox on the host)")


def userns_check(sysctls, probe, host=None):
    settings = ", ".join(f"{name}={value}" for name, value in sysctls.items()) or "no user-namespace sysctls"
    blocking = [name for name, value, _wanted in USERNS_SYSCTLS if sysctls.get(name) == value]
    if probe.namespaces_work:
        if blocking:
            return Check("user namespaces", WARN, f"work for this process, but {blocking[0]}={sysctls[blocking[0]]} refuses ordinary users ({settings})", userns_fix(sysctls))
        return Check("user namespaces", OK, f"unshare, id maps and private mounts work ({settings})")
    return Check("user namespaces", FAIL, f"{probe.describe()} ({settings})", userns_fix(sysctls, probe.errno, host))


# -- the runtime probe -------------------------------------------------------------------------
def probe_runtime(workdir=None, timeout=PROBE_TIMEOUT, mode="overlay"):
    """Run the runtime's first steps in a child process: unshare, id maps, private mounts and,
    when `workdir` (an absent directory in the store's tmp area) is given, the root in `mode`
    (one of rootfs.MODES), written to. The child's namespaces and mounts die with it (and a
    fuse-overlayfs it started, with its parent-death signal)."""
    try:
        # Loaded before the fork, so a broken cffi module is a line here, not a crash in the child.
        from toolbox.runtime import rootfs, container as runtime, syscalls

        if workdir is not None:
            os.makedirs(os.path.join(workdir, "lower"))
            os.mkdir(os.path.join(workdir, "scratch"))
            with open(os.path.join(workdir, "lower", "probe"), "w"):
                pass
    except Exception as err:
        return Probe(UNSHARE if workdir is None else ASSEMBLE, getattr(err, "errno", None), f"cannot prepare the probe: {err}")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any of the parent's cleanup
        try:
            os.close(read_fd)
            os.write(write_fd, _probe_in_child(runtime, rootfs, syscalls, workdir, mode).encode("utf-8", "replace")[:4000])
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
            from toolbox.runtime.spec import RunSpec

            spec = RunSpec(layers_dir=workdir, layers=["lower"], scratch_dir=os.path.join(workdir, "scratch"), argv=[], env={}, cwd="/",
                           rootfs=(mode,))
            root = rootfs.assemble(spec).path
            if not os.path.exists(os.path.join(root, "probe")):
                raise OSError(errno.ENOENT, f"the lower layer's file is not visible through {mode}")
            with open(os.path.join(root, "written"), "w"):
                pass
    except BaseException as err:
        return f"{step}\t{getattr(err, 'errno', None) or ''}\t{getattr(err, 'strerror', None) or err}"
    return "ok"


# -- overlay and fuse --------------------------------------------------------------------------
@dataclass(frozen=True)
class Fuse:
    binary: str | None  # fuse-overlayfs on PATH
    device: str
    device_error: OSError | None  # why /dev/fuse cannot be opened read-write, or None

    @property
    def usable(self):
        return self.binary is not None and self.device_error is None


def fuse_state(host, environ):
    device = os.path.join(host.dev, "fuse")
    error = None
    try:
        os.close(os.open(device, os.O_RDWR | os.O_CLOEXEC))
    except OSError as err:
        error = err
    return Fuse(shutil.which("fuse-overlayfs", path=environ.get("PATH", os.defpath)), device, error)


def overlay_check(probe, fuse, workdir, no_workdir, release, fuse_probe=None):
    """Which root `run` gets: native overlayfs; else fuse-overlayfs where it works (a warning:
    file access through a helper process is slower); else a read-only root (no writable layer,
    no --name). `fuse_probe` is None when fuse-overlayfs was not probed."""
    if workdir is None:
        return Check("overlay", FAIL, f"not probed: no temp directory in the store ({_reason(no_workdir)})", "fix the store line first")
    if not probe.namespaces_work:
        return Check("overlay", FAIL, "not probed: user namespaces do not work", "fix the user namespaces line first")
    if probe.failed_step is None:
        return Check("overlay", OK, "native overlayfs (userxattr) in a user namespace: toolbox run uses it")
    if fuse.usable and (fuse_probe is None or fuse_probe.failed_step is None):
        fallback = "toolbox run falls back to fuse-overlayfs (a writable layer, --name works; file access is slower)"
    else:
        fallback = "toolbox run falls back to a read-only root (tmpfs on /tmp, /var/tmp, /run and home; --name refused)"
    version = kernel_version(release)
    if version is not None and version < OVERLAY_KERNEL:
        fix = KERNEL_FIX
    elif probe.errno in (errno.EINVAL, errno.EOPNOTSUPP):
        fix = STORE_FS_FIX  # the kernel has the option, so the store's filesystem refused to be a layer
    else:
        fix = KERNEL_FIX + " with overlayfs built in (CONFIG_OVERLAY_FS)"
    return Check("overlay", WARN, f"native overlayfs fails ({probe.describe()}); {fallback}", fix)


def fuse_check(fuse, probe=None):
    found = f"fuse-overlayfs at {fuse.binary}" if fuse.binary else "no fuse-overlayfs on PATH"
    if fuse.usable and probe is not None and probe.failed_step is not None:
        return Check("fuse", WARN, f"{found}, but it does not work in a user namespace ({probe.describe()})",
                     f"check that `{fuse.binary} --version` runs (fuse-overlayfs 1.0 or later)")
    if fuse.usable:
        probed = "mounts in a user namespace" if probe is not None else "not probed"
        return Check("fuse", OK, f"{fuse.device} opens read-write; {found} ({probed})")
    fixes = []
    if fuse.binary is None:
        fixes.append("sudo apt install fuse-overlayfs")
    if isinstance(fuse.device_error, FileNotFoundError):
        device, fix = f"{fuse.device} is missing", "sudo modprobe fuse (and install your distribution's fuse3 package)"
    elif fuse.device_error is not None:
        device = f"{fuse.device} does not open read-write ({_mode_and_owner(fuse.device)}: {fuse.device_error.strerror})"
        fix = f"sudo chmod 0666 {fuse.device} (what your distribution's fuse3 package sets)"
    else:
        device, fix = f"{fuse.device} opens read-write", None
    fixes += [fix] if fix else []
    return Check("fuse", WARN, f"{device}; {found} (a fallback for hosts without native overlayfs)", " && ".join(fixes))


def _mode_and_owner(path):
    try:
        st = os.stat(path)
        return f"{stat.filemode(st.st_mode)} {_user_name(st.st_uid)}"
    except OSError as err:
        return err.strerror


# -- subordinate ids ---------------------------------------------------------------------------
def _id_helper(name, environ):
    """(path, how it is privileged) or (path or None, what is wrong): newuidmap and newgidmap
    write ranges beyond your own id, so they are setuid root or have file capabilities."""
    path = shutil.which(name, path=environ.get("PATH", os.defpath))
    if path is None:
        return None, None, "missing"
    st = os.stat(path)
    if st.st_uid == 0 and st.st_mode & stat.S_ISUID:
        return path, "setuid root", None
    try:
        os.getxattr(path, "security.capability")
        return path, "file capabilities", None
    except OSError:
        return path, None, "neither setuid root nor given file capabilities"


def subids_check(host, environ):
    uid = os.getuid()
    user = _user_name(uid)
    found, missing, fixes, listed = [], [], [], []
    for kind, file_name in (("uids", "subuid"), ("gids", "subgid")):
        path = os.path.join(host.etc, file_name)
        try:
            entries = read_subids(path)
        except OSError as err:
            entries = []
            missing.append(f"{path}: {err.strerror}")
        listed.append(entries)
        mine = [(start, count) for owner, start, count in entries if owner in (user, str(uid))]
        if mine:
            ranges = ", ".join(f"{start}-{start + count - 1}" for start, count in mine)
            found.append(f"{kind} {ranges} ({sum(count for _start, count in mine)})")
        else:
            missing.append(f"no {kind} for {user} in {path}")
    if missing:
        start = free_range(listed)  # overlapping no range handed out
        fixes.append(f"sudo usermod --add-subuids {start}-{start + 65535} --add-subgids {start}-{start + 65535} {user}")
    for name in ("newuidmap", "newgidmap"):
        path, privilege, problem = _id_helper(name, environ)
        if problem:
            missing.append(f"{name}: {problem}")
            fix = "sudo apt install uidmap" if path is None else f"sudo chmod u+s {path}"
            fixes += [fix] if fix not in fixes else []
        else:
            found.append(f"{name} {privilege}")
    why = "only needed for full id ranges: toolbox run maps your own id"
    detail = f"{user}: {'; '.join(missing + found)} ({why})"
    return Check("subordinate ids", WARN, detail, " && ".join(fixes)) if fixes else Check("subordinate ids", OK, detail)


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# -- cgroups -----------------------------------------------------------------------------------
def cgroups_check():
    found, reason = cgroups.own_cgroup_v2()
    options = ", ".join(option for _key, option in LIMIT_OPTIONS)
    if found is None:
        return Check("cgroups", WARN, f"limits ({options}) cannot work: {reason}", cgroups.ENABLE_HINT)
    mount, path = found
    try:
        with open(os.path.join(mount, path.lstrip("/"), "cgroup.controllers")) as file:
            controllers = " ".join(sorted(file.read().split())) or "none"
    except OSError as err:
        controllers = f"unreadable ({err.strerror})"
    where = f"group {path} of {mount}, controllers: {controllers}"
    problem = cgroups.delegation_problem([key for key, _option in LIMIT_OPTIONS])
    if problem is None:
        return Check("cgroups", OK, f"limits ({options}) work: {where}")
    usable = [option for key, option in LIMIT_OPTIONS if cgroups.delegation_problem([key]) is None]
    some = f"; only {', '.join(usable)} would work" if usable else ""
    return Check("cgroups", WARN, f"limits ({options}) are refused: {problem}{some}; {where}", cgroups.ENABLE_HINT)


# -- directories and the store -----------------------------------------------------------------
def _writable_problem(path):
    """Why toolbox could not write in `path` (creating it if missing), or None."""
    if os.path.isdir(path):
        return None if os.access(path, os.W_OK | os.X_OK) else f"{path} is not writable"
    if os.path.lexists(path):
        return f"{path} is not a directory"
    parent = os.path.dirname(path)
    while parent != os.path.dirname(parent) and not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK):
        return None
    return f"{path} cannot be created ({parent} is not writable)"


def directories_check(layout):
    listed = f"data {layout.data_dir}, config {layout.config_file}"
    problems = [p for p in (_writable_problem(layout.data_dir), _writable_problem(layout.config_dir)) if p]
    if problems:
        return Check("directories", WARN, f"{'; '.join(problems)} (named volumes, login and recipes need it): {listed}",
                     "make it writable for you, or set TOOLBOX_DATA_DIR / TOOLBOX_CONFIG_DIR (or TOOLBOX_HOME) to a directory that is")
    return Check("directories", OK, listed)


def store_check(layout, workdir, no_workdir, host, low_space=LOW_SPACE):
    store = layout.store_dir
    if workdir is None:
        return Check("store", FAIL, f"cannot work in {layout.tmp_dir}: {_reason(no_workdir)}",
                     f"make {_nearest_existing(layout.tmp_dir)} writable for you, or set TOOLBOX_CACHE_DIR to a directory that is")
    problems = []  # (status, text, fix)
    for path in (store, layout.blobs_dir, layout.layers_dir, layout.images_dir, layout.locks_dir):
        if os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
            problems.append((FAIL, f"{path} is not writable", f"chmod u+rwx {path}, or set TOOLBOX_CACHE_DIR to a directory you can write"))
    statvfs = None
    try:
        statvfs = os.statvfs(store)
    except OSError as err:
        problems.append((WARN, f"cannot tell the free space: {err.strerror}", f"check that {store} is on a mounted, readable filesystem"))
    try:
        fs = _filesystem_of(store, host)
    except OSError:
        fs = None  # only a detail of the line
    free = statvfs.f_bavail * statvfs.f_frsize if statvfs else None
    if free is not None and free < low_space:
        problems.append((WARN, f"only {_gib(free)} free", "free space there, `toolbox prune`, or set TOOLBOX_CACHE_DIR to a larger filesystem"))
    probe_file = os.path.join(workdir, "xattr")
    try:
        with open(probe_file, "w"):
            pass
        os.setxattr(probe_file, "user.toolbox.ops.doctor", b"1")
    except OSError as err:
        problems.append((FAIL, f"user xattrs are refused ({err.strerror}), and layer trees need them for opaque directories", STORE_FS_FIX))
    try:
        os.mknod(os.path.join(workdir, "whiteout"), stat.S_IFCHR | 0o600, os.makedev(0, 0))
    except OSError as err:
        fix = KERNEL_FIX if err.errno == errno.EPERM else STORE_FS_FIX
        problems.append((FAIL, f"0/0 character devices (overlayfs whiteouts) are refused ({err.strerror})", fix))
    where = store + (f" on {fs}" if fs else "") + (f", {_gib(free)} free" if free is not None else "")
    if not problems:
        return Check("store", OK, f"{where}; user xattrs and 0/0 character devices work")
    worst = FAIL if any(s == FAIL for s, _t, _f in problems) else WARN
    fix = next((f for s, _t, f in problems if s == worst and f), None)
    return Check("store", worst, f"{where}; " + "; ".join(text for _s, text, _f in problems), fix)


def _gib(count):
    return f"{count / (1 << 30):.1f} GiB"


def _nearest_existing(path):
    while not os.path.lexists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return path


def _filesystem_of(path, host):
    """'ext4 (mounted at /)' for the mount that holds `path`, found by device number in
    mountinfo (proc(5)); the longest mount point above `path` wins among bind mounts."""
    device = os.stat(path).st_dev
    key = f"{os.major(device)}:{os.minor(device)}"
    real = os.path.realpath(path)
    best = None
    with open(os.path.join(host.proc, "self", "mountinfo")) as file:
        for line in file:
            fields = line.split()
            if len(fields) < 10 or fields[2] != key:
                continue
            point = fields[4].replace("\\040", " ")
            fstype = fields[fields.index("-") + 1]
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if best is None or (inside and len(point) > len(best[0])):
                best = (point, fstype)
    return f"{best[1]} (mounted at {best[0]})" if best else None


def _reason(err):
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return str(err)


# -- the shell ---------------------------------------------------------------------------------
def shell_check(layout, environ, launcher=None):
    """Whether the shell that started doctor (its exported PATH, which doctor inherits) puts the
    shims directory first, so pinned tools run wherever a command is looked up: a warning only,
    `toolbox run` works without. The fix is the rc line for $SHELL."""
    from toolbox.ops.shimgen import installed, rc_advice

    shims = layout.shims_dir
    fix = f"{rc_advice(environ, launcher)} (and run it in shells already open)"
    names = installed(layout)
    what = f"{len(names)} shim{'' if len(names) == 1 else 's'} ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})" if names else "no shims yet"
    entries = environ.get("PATH", "").split(os.pathsep)
    own = os.path.realpath(shims)
    where = [i for i, entry in enumerate(entries) if entry and os.path.realpath(entry) == own]
    if not where:
        return Check("shell", WARN, f"{shims} is not on PATH in this shell ({what}): pinned tools run as the host's programs, "
                                    "or are not found", fix)
    if where[0] > 0:
        before = entries[0] or "the current directory (an empty PATH entry)"
        return Check("shell", WARN, f"{shims} is on PATH after {before} ({what}): programs there run instead of the pinned "
                                    "tools of the same name, from scripts and commands this shell starts", fix)
    return Check("shell", OK, f"{shims} is first on PATH ({what})")


# -- hints for `toolbox run` -------------------------------------------------------------------
def hint_for_run_failure(step, err_no, layout=None, host=None):
    """The one fix for a failed runtime step (RuntimeStepError's step and errno). A failure
    path, so it may probe: for the overlay mount it runs the overlay check."""
    host = host or Host()
    try:
        if step.startswith(NAMESPACE_STEPS):
            return userns_fix(read_sysctls(host), err_no, host)
        if step == f"{ASSEMBLE} (fuse-overlayfs)":
            return fuse_check(fuse_state(host, os.environ)).fix or FUSE_REFUSED_HINT
        if step == f"{ASSEMBLE} (read-only)":
            return DOCTOR_HINT
        if step.startswith(ASSEMBLE):
            version = kernel_version(host.kernel_release())
            if version is not None and version < OVERLAY_KERNEL:
                return KERNEL_FIX
            from toolbox.layout import Layout

            with workspace(layout or Layout.from_env()) as (workdir, _no_workdir):
                if workdir is None:
                    return DOCTOR_HINT
                probe = probe_runtime(os.path.join(workdir, "overlay"))
                check = overlay_check(probe, fuse_state(host, os.environ), workdir, None, host.kernel_release())
            if check.status != OK:
                return check.fix
            return ("overlayfs works here in a probe, so this image's layers are the cause: too many for one mount, "
                    "or a damaged layer tree (`toolbox rmi IMAGE`, then pull it again)")
    except Exception:
        pass  # the hint is a courtesy on a failure path: the general one will do
    return DOCTOR_HINT
