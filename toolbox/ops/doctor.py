"""`toolbox doctor`: what this host lets toolbox do, probed for real, with one fix per problem.

Each check asks the kernel rather than guessing from versions. The probes are the runtime's
(toolbox.runtime.host): a child process makes the same user and mount namespaces `toolbox run`
makes, writes the same id maps and assembles the same root in a temp directory of the store; the
store check here writes a user xattr and a 0/0 character device where layer trees live. The
sysctls and files read alongside only explain a failure and choose its fix.

Where the checks read the host (/proc, /etc, /dev, the kernel release) is a Host value, so tests
can show a check a host they cannot have. The cgroup check reads /proc/self through
toolbox.runtime.cgroups, the code `run` itself uses for limits, so its verdict is run's.

The shell check reads the PATH doctor inherits, which is what the shell that started it exports.

Cold tier (standard library and toolbox modules, no typer): the CLI renders the checks.
"""

import errno
import os
import shutil
import stat
from dataclasses import dataclass

from toolbox.runtime import cgroups
from toolbox.runtime.host import (
    KERNEL_FIX,
    OVERLAY_KERNEL,
    STORE_FS_FIX,
    USERNS_FIRST,
    USERNS_SYSCTLS,
    Host,
    Probe,
    fuse_problems,
    fuse_state,
    kernel_version,
    overlay_fix,
    probe_runtime,
    read_sysctls,
    user_name_of,
    userns_fix,
    workspace,
)
from toolbox.runtime.spec import UNSHARE
from toolbox.runtime.subids import free_range, read_subids

OK, WARN, FAIL = "ok", "warn", "fail"

# Ordinary users may create the 0/0 character devices overlayfs reads as whiteouts since Linux
# 5.8 (and use overlayfs in a user namespace since OVERLAY_KERNEL, 5.11).
WHITEOUT_KERNEL = (5, 8)
LOW_SPACE = 1 << 30
LIMIT_OPTIONS = (("memory", "--memory"), ("cpus", "--cpus"), ("pids", "--pids-limit"))


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN or FAIL; a warn never makes doctor fail
    detail: str
    fix: str | None = None

    def to_json(self):
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def run_checks(layout, environ=None, host=None):
    """Every check, in the order a user fixes things. Never raises: a check that breaks becomes
    a failed line."""
    environ = os.environ if environ is None else environ
    host = host or Host()
    checks = []
    if os.geteuid() == 0:
        checks.append(Check("user", WARN, "running as root: the results are root's, and an ordinary user may "
                                          "be refused what root is allowed",
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
            _guarded("overlay",
                     lambda: overlay_check(probe, fuse, workdir, no_workdir, release(), fuse_probe)),
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
        return Check(name, FAIL, f"the check broke: {type(err).__name__}: {err}",
                     "report this as a toolbox bug, with this line")


def failed(checks):
    return [c for c in checks if c.status == FAIL]


def report_json(checks):
    return {"ok": not failed(checks), "checks": [c.to_json() for c in checks]}


# -- kernel ------------------------------------------------------------------------------------
def kernel_check(release):
    version = kernel_version(release)
    if version is None:
        return Check("kernel", WARN, f"cannot read a version in the release {release!r}",
                     "none needed if the user namespaces and overlay lines are ok")
    if version >= OVERLAY_KERNEL:
        return Check("kernel", OK, f"Linux {release}: overlayfs in a user namespace (5.11+) and whiteouts by "
                                   "ordinary users (5.8+)")
    if version >= WHITEOUT_KERNEL:
        return Check("kernel", WARN, f"Linux {release}: older than 5.11, so overlayfs in a user namespace is "
                                     "missing unless the distribution added it", KERNEL_FIX)
    return Check("kernel", FAIL, f"Linux {release}: older than 5.8, so ordinary users cannot store layers "
                                 "that delete files (0/0 whiteouts)", KERNEL_FIX)


# -- user namespaces ---------------------------------------------------------------------------
def userns_check(sysctls, probe, host=None):
    settings = ", ".join(f"{name}={value}" for name, value in sysctls.items()) or "no user-namespace sysctls"
    blocking = [name for name, value, _wanted in USERNS_SYSCTLS if sysctls.get(name) == value]
    if probe.namespaces_work:
        if blocking:
            return Check("user namespaces", WARN,
                         f"work for this process, but {blocking[0]}={sysctls[blocking[0]]} "
                         f"refuses ordinary users ({settings})", userns_fix(sysctls))
        return Check("user namespaces", OK, f"unshare, id maps and private mounts work ({settings})")
    return Check("user namespaces", FAIL, f"{probe.describe()} ({settings})",
                 userns_fix(sysctls, probe.errno, host))


# -- overlay and fuse --------------------------------------------------------------------------
def overlay_check(probe, fuse, workdir, no_workdir, release, fuse_probe=None):
    """Which root `run` gets: native overlayfs; else fuse-overlayfs where it works (a warning:
    file access through a helper process is slower); else a read-only root (no writable layer,
    no --name). `fuse_probe` is None when fuse-overlayfs was not probed."""
    if workdir is None:
        return Check("overlay", FAIL, f"not probed: no temp directory in the store ({_reason(no_workdir)})",
                     "fix the store line first")
    if not probe.namespaces_work:
        return Check("overlay", FAIL, "not probed: user namespaces do not work", USERNS_FIRST)
    if probe.failed_step is None:
        return Check("overlay", OK, "native overlayfs (userxattr) in a user namespace: toolbox run uses it")
    if fuse.usable and (fuse_probe is None or fuse_probe.failed_step is None):
        fallback = ("toolbox run falls back to fuse-overlayfs (a writable layer, --name works; "
                    "file access is slower)")
    else:
        fallback = ("toolbox run falls back to a read-only root (tmpfs on /tmp, /var/tmp, /run and home; "
                    "--name refused)")
    return Check("overlay", WARN, f"native overlayfs fails ({probe.describe()}); {fallback}",
                 overlay_fix(probe, release))


def fuse_check(fuse, probe=None):
    found = f"fuse-overlayfs at {fuse.binary}" if fuse.binary else "no fuse-overlayfs on PATH"
    if fuse.usable and probe is not None and probe.failed_step is not None:
        return Check("fuse", WARN, f"{found}, but it does not work in a user namespace ({probe.describe()})",
                     f"check that `{fuse.binary} --version` runs (fuse-overlayfs 1.0 or later)")
    if fuse.usable:
        probed = "mounts in a user namespace" if probe is not None else "not probed"
        return Check("fuse", OK, f"{fuse.device} opens read-write; {found} ({probed})")
    device, fixes = fuse_problems(fuse)
    return Check("fuse", WARN, f"{device}; {found} (a fallback for hosts without native overlayfs)",
                 " && ".join(fixes))


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
    user = user_name_of(uid)
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
        fixes.append(f"sudo usermod --add-subuids {start}-{start + 65535} --add-subgids "
                     f"{start}-{start + 65535} {user}")
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
    if fixes:
        return Check("subordinate ids", WARN, detail, " && ".join(fixes))
    return Check("subordinate ids", OK, detail)


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
    return Check("cgroups", WARN, f"limits ({options}) are refused: {problem}{some}; {where}",
                 cgroups.ENABLE_HINT)


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
        return Check("directories", WARN,
                     f"{'; '.join(problems)} (named volumes, login and recipes need it): {listed}",
                     "make it writable for you, or set TOOLBOX_DATA_DIR / TOOLBOX_CONFIG_DIR (or "
                     "TOOLBOX_HOME) to a directory that is")
    return Check("directories", OK, listed)


def store_check(layout, workdir, no_workdir, host, low_space=LOW_SPACE):
    store = layout.store_dir
    if workdir is None:
        return Check("store", FAIL, f"cannot work in {layout.tmp_dir}: {_reason(no_workdir)}",
                     f"make {_nearest_existing(layout.tmp_dir)} writable for you, or set TOOLBOX_CACHE_DIR "
                     "to a directory that is")
    problems = []  # (status, text, fix)
    for path in (store, layout.blobs_dir, layout.layers_dir, layout.images_dir, layout.locks_dir):
        if os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
            problems.append((FAIL, f"{path} is not writable",
                             f"chmod u+rwx {path}, or set TOOLBOX_CACHE_DIR to a directory you can write"))
    statvfs = None
    try:
        statvfs = os.statvfs(store)
    except OSError as err:
        problems.append((WARN, f"cannot tell the free space: {err.strerror}",
                         f"check that {store} is on a mounted, readable filesystem"))
    try:
        fs = _filesystem_of(store, host)
    except OSError:
        fs = None  # only a detail of the line
    free = statvfs.f_bavail * statvfs.f_frsize if statvfs else None
    if free is not None and free < low_space:
        problems.append((WARN, f"only {_gib(free)} free", "free space there, `toolbox prune`, or set "
                                                          "TOOLBOX_CACHE_DIR to a larger filesystem"))
    probe_file = os.path.join(workdir, "xattr")
    try:
        with open(probe_file, "w"):
            pass
        os.setxattr(probe_file, "user.toolbox.ops.doctor", b"1")
    except OSError as err:
        problems.append((FAIL, f"user xattrs are refused ({err.strerror}), and layer trees need them for "
                               "opaque directories", STORE_FS_FIX))
    try:
        os.mknod(os.path.join(workdir, "whiteout"), stat.S_IFCHR | 0o600, os.makedev(0, 0))
    except OSError as err:
        fix = KERNEL_FIX if err.errno == errno.EPERM else STORE_FS_FIX
        problems.append((FAIL, f"0/0 character devices (overlayfs whiteouts) are refused ({err.strerror})",
                         fix))
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
    what = (f"{len(names)} shim{'' if len(names) == 1 else 's'} "
            f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
            if names else "no shims yet")
    entries = environ.get("PATH", "").split(os.pathsep)
    own = os.path.realpath(shims)
    where = [i for i, entry in enumerate(entries) if entry and os.path.realpath(entry) == own]
    if not where:
        return Check("shell", WARN, f"{shims} is not on PATH in this shell ({what}): pinned tools run as the "
                                    "host's programs, or are not found", fix)
    if where[0] > 0:
        before = entries[0] or "the current directory (an empty PATH entry)"
        return Check("shell", WARN, f"{shims} is on PATH after {before} ({what}): programs there run instead "
                                    "of the pinned tools of the same name, from scripts and commands "
                                    "this shell starts", fix)
    return Check("shell", OK, f"{shims} is first on PATH ({what})")
