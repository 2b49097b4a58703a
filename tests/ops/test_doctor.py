"""`toolbox doctor` on this very host, as the ordinary test user. Each verdict is compared with a
fact found another way (util-linux `unshare`, os.access, the files themselves); failure paths
are shown fake /proc, /etc and /dev trees through a Host, never a mocked kernel."""

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

from toolbox.layout import Layout
from toolbox.ops import doctor
from toolbox.ops.doctor import FAIL, OK, WARN
from toolbox.runtime import cgroups, host
from toolbox.runtime.host import KERNEL_FIX, STORE_FS_FIX, Host, Probe
from toolbox.runtime.spec import ASSEMBLE, UNSHARE

from tests.support.host import fuse_usable, userns_available, userns_overlay_works
from tests.support.installation import REPO

NAMES = (["user"] if os.geteuid() == 0 else []) + ["kernel", "user namespaces", "overlay", "fuse",
                                                   "subordinate ids", "cgroups", "directories", "store",
                                                   "shell"]
MARKS = {OK: "ok  ", WARN: "warn", FAIL: "FAIL"}


def by_name(checks):
    return {check.name: check for check in checks}


def fake_tree(root, files):
    """Files below `root` ({relative path: text}), as a fake /proc, /etc or /dev."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


# -- the command, on this host -----------------------------------------------------------------
def test_json_report_has_one_entry_per_check_and_the_exit_status_follows_it(toolbox):
    result = toolbox.cli("doctor", "--json")
    report = json.loads(result.stdout)
    assert set(report) == {"ok", "checks"}
    assert [c["name"] for c in report["checks"]] == NAMES
    for check in report["checks"]:
        assert set(check) == {"name", "status", "detail", "fix"}
        assert check["status"] in (OK, WARN, FAIL) and check["detail"]
        if check["status"] != OK:
            assert check["fix"], check  # every problem comes with its fix
    failures = [c["name"] for c in report["checks"] if c["status"] == FAIL]
    assert report["ok"] == (not failures)
    assert result.returncode == (1 if failures else 0), result.stderr
    if failures:
        assert f"failed: {', '.join(failures)}" in result.stderr
    if userns_overlay_works():
        # Where toolbox run works, doctor must not call the host broken.
        assert result.returncode == 0 and report["ok"], report


def test_human_report_prints_a_line_per_check_and_the_fix_under_each_problem(toolbox):
    report = json.loads(toolbox.cli("doctor", "--json").stdout)
    result = toolbox.cli("doctor")
    lines = result.stdout.splitlines()
    width = max(len(name) for name in NAMES)
    for check in report["checks"]:
        head = f"{MARKS[check['status']]}  {check['name'].ljust(width)}  "
        index = next(i for i, line in enumerate(lines) if line.startswith(head))
        if check["status"] != OK:
            assert lines[index + 1] == " " * (width + 8) + f"fix: {check['fix']}"
    assert result.returncode == (0 if report["ok"] else 1)


def test_verdicts_match_what_the_host_lets_an_ordinary_user_do(tmp_path):
    layout = Layout.under(tmp_path)
    checks = by_name(doctor.run_checks(layout))
    assert (checks["user namespaces"].status != FAIL) == userns_available(), checks["user namespaces"]
    assert (checks["overlay"].status == OK) == userns_overlay_works(), checks["overlay"]
    assert (checks["fuse"].status == OK) == fuse_usable(), checks["fuse"]
    if fuse_usable():  # probed for real where the namespaces work, and said not to be where they fail
        assert (("mounts in a user namespace" if userns_available() else "(not probed)")
                in checks["fuse"].detail), checks["fuse"]
    if os.path.exists("/dev/fuse") and not os.access("/dev/fuse", os.R_OK | os.W_OK):
        assert checks["fuse"].status == WARN and "chmod 0666 /dev/fuse" in checks["fuse"].fix
    major, minor = (int(part) for part in os.uname().release.split("-")[0].split(".")[:2])
    assert (checks["kernel"].status == OK) == ((major, minor) >= (5, 11))
    store = checks["store"]
    assert store.status == OK and layout.store_dir in store.detail and "GiB free" in store.detail, store
    assert checks["directories"].status == OK
    assert os.listdir(layout.tmp_dir) == []  # the probes' temp directory and lock are gone


def test_cgroup_verdict_matches_the_hierarchy_this_process_is_in(tmp_path):
    check = by_name(doctor.run_checks(Layout.under(tmp_path)))["cgroups"]
    mounts = [line.split() for line in open("/proc/self/mountinfo")]
    mount = next((f[4] for f in mounts if f[f.index("-") + 1] == "cgroup2"), None)
    group = next((line[3:].strip() for line in open("/proc/self/cgroup") if line.startswith("0::")), None)
    if mount is None or group is None:
        assert check.status == WARN and check.fix == cgroups.ENABLE_HINT
        return
    directory = os.path.join(mount, group.lstrip("/"))
    controllers = open(os.path.join(directory, "cgroup.controllers")).read().split()
    delegated = ({"cpu", "memory", "pids"} <= set(controllers)
                 and os.access(os.path.join(directory, "cgroup.procs"), os.W_OK))
    assert check.status == (OK if delegated else WARN), check
    assert f"controllers: {' '.join(sorted(controllers)) or 'none'}" in check.detail
    if not delegated:
        assert check.fix == cgroups.ENABLE_HINT and "--memory" in check.detail


def test_subordinate_id_verdict_matches_etc_subuid_and_the_helpers(tmp_path):
    check = by_name(doctor.run_checks(Layout.under(tmp_path)))["subordinate ids"]
    user, uid = host.user_name_of(os.getuid()), str(os.getuid())

    def has_entry(path):
        try:
            return any(line.split(":")[0] in (user, uid) for line in open(path) if line.count(":") == 2)
        except FileNotFoundError:
            return False

    def privileged(name):
        path = shutil.which(name)
        return path is not None and os.stat(path).st_mode & stat.S_ISUID and os.stat(path).st_uid == 0

    # (a helper with file capabilities instead of setuid would be ok too; Debian's are setuid)
    expected = (has_entry("/etc/subuid") and has_entry("/etc/subgid")
                and privileged("newuidmap") and privileged("newgidmap"))
    assert check.status == (OK if expected else WARN), check
    assert check.detail.startswith(f"{user}: ")


# -- failure paths, shown fake host files --------------------------------------------------------
def test_missing_subordinate_ids_get_a_usermod_fix_with_a_free_range(tmp_path):
    etc = fake_tree(tmp_path / "etc",
                    {"subuid": "alice:100000:65536\nbob:165536:65536\n", "subgid": "alice:100000:65536\n"})
    check = doctor.subids_check(Host(etc=etc), {"PATH": os.environ["PATH"]})
    user = host.user_name_of(os.getuid())
    assert check.status == WARN
    assert (f"no uids for {user} in {etc}/subuid" in check.detail
            and f"no gids for {user} in {etc}/subgid" in check.detail)
    assert f"sudo usermod --add-subuids 231072-296607 --add-subgids 231072-296607 {user}" in check.fix


def test_subordinate_ids_by_uid_count_and_missing_helpers_get_the_package(tmp_path):
    uid = os.getuid()
    etc = fake_tree(tmp_path / "etc", {"subuid": f"{uid}:300000:1000\n", "subgid": f"{uid}:300000:1000\n"})
    (tmp_path / "empty").mkdir()
    check = doctor.subids_check(Host(etc=etc), {"PATH": str(tmp_path / "empty")})
    assert check.status == WARN and check.fix == "sudo apt install uidmap"
    assert "uids 300000-300999 (1000)" in check.detail and "newuidmap: missing" in check.detail


@pytest.mark.parametrize(
    "release, status",
    [("4.19.0-25-amd64", FAIL), ("5.4.0-150-generic", FAIL), ("5.10.0-28-amd64", WARN), ("5.11.0", OK),
     ("6.18.44-fc-v769", OK), ("weird", WARN)],
)
def test_kernel_release_verdicts(release, status):
    check = doctor.kernel_check(release)
    assert check.status == status and release in check.detail
    assert (check.fix == KERNEL_FIX) == (status != OK and release != "weird")


def test_an_old_kernel_fails_the_whole_doctor(tmp_path):
    checks = doctor.run_checks(Layout.under(tmp_path), host=Host(release="5.4.0-150-generic"))
    assert by_name(checks)["kernel"].status == FAIL and doctor.failed(checks)
    assert doctor.report_json(checks)["ok"] is False


@pytest.mark.parametrize(
    "sysctl, value, wanted",
    [
        ("sys/kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone=1"),
        ("sys/kernel/apparmor_restrict_unprivileged_userns", "1",
         "kernel.apparmor_restrict_unprivileged_userns=0"),
        ("sys/user/max_user_namespaces", "0", "user.max_user_namespaces=15000"),
    ],
)
def test_a_restricting_sysctl_chooses_the_fix(tmp_path, sysctl, value, wanted):
    proc = fake_tree(tmp_path / "proc", {"sys/user/max_user_namespaces": "63000\n", sysctl: value + "\n"})
    settings = host.read_sysctls(Host(proc=proc))
    refused = doctor.userns_check(settings, Probe(UNSHARE, errno.EPERM, "Operation not permitted"))
    assert refused.status == FAIL and f"sudo sysctl -w {wanted}" in refused.fix
    assert f"{sysctl.removeprefix('sys/').replace('/', '.')}={value}" in refused.detail
    # The namespaces worked for this process (root, say) yet the sysctl refuses ordinary users.
    allowed = doctor.userns_check(settings, Probe())
    assert allowed.status == WARN and allowed.fix == refused.fix
    assert host.hint_for_run_failure(UNSHARE, errno.EPERM, host=Host(proc=proc)) == refused.fix


def test_without_restricting_sysctls_the_fix_names_what_else_refuses(tmp_path):
    refused = Probe(UNSHARE, errno.EPERM, "Operation not permitted")
    no_userns = fake_tree(tmp_path / "bare", {"sys/user/max_user_namespaces": "63000\n"})
    assert "CONFIG_USER_NS" in doctor.userns_check(host.read_sysctls(Host(proc=no_userns)), refused,
                                                   Host(proc=no_userns)).fix
    with_userns = fake_tree(tmp_path / "proc", {"self/ns/user": ""})
    assert "seccomp" in host.userns_fix({}, errno.EPERM, Host(proc=with_userns))
    assert "user.max_user_namespaces=" in host.userns_fix({"user.max_user_namespaces": 10}, errno.ENOSPC,
                                                          Host(proc=with_userns))


def test_overlay_failure_names_the_fallback_fuse_would_give(tmp_path):
    dev = fake_tree(tmp_path / "dev", {"fuse": ""})  # a file that opens read-write, like a 0666 /dev/fuse
    binary = tmp_path / "bin" / "fuse-overlayfs"
    fake_tree(tmp_path / "bin", {"fuse-overlayfs": "#!/bin/sh\n"})
    binary.chmod(0o755)
    fuse = host.fuse_state(Host(dev=dev), {"PATH": str(binary.parent)})
    assert doctor.fuse_check(fuse).status == OK
    mount_refused = Probe(ASSEMBLE, errno.EPERM, "Operation not permitted")
    old = doctor.overlay_check(mount_refused, fuse, "workdir", None, "5.10.0-28-amd64")
    assert old.status == WARN and old.fix == KERNEL_FIX and "falls back to fuse-overlayfs" in old.detail
    # fuse-overlayfs is there but its probe failed: the read-only root is what run falls back to.
    fuse_failed = Probe(ASSEMBLE + " (fuse-overlayfs)", errno.EIO,
                        "fuse-overlayfs exited (status 1): fuse: device not found")
    assert "falls back to a read-only root" in doctor.overlay_check(mount_refused, fuse, "workdir", None,
                                                                    "6.1.0", fuse_failed).detail
    broken = doctor.fuse_check(fuse, fuse_failed)
    assert broken.status == WARN and "device not found" in broken.detail and "--version" in broken.fix
    assert "mounts in a user namespace" in doctor.fuse_check(fuse, Probe()).detail
    refused_by_fs = doctor.overlay_check(Probe(ASSEMBLE, errno.EINVAL, "Invalid argument"), fuse, "workdir",
                                         None, "6.1.0")
    assert refused_by_fs.fix == STORE_FS_FIX
    no_fuse = host.fuse_state(Host(dev=str(tmp_path / "nodev")), {"PATH": str(tmp_path / "nowhere")})
    without_fuse = doctor.overlay_check(mount_refused, no_fuse, "workdir", None, "6.1.0").detail
    assert "read-only root" in without_fuse and "fuse-overlayfs" not in without_fuse
    missing = doctor.fuse_check(no_fuse)
    assert missing.status == WARN and missing.fix == ("sudo apt install fuse-overlayfs && sudo modprobe fuse "
                                                      "(and install your distribution's fuse3 package)")


@pytest.mark.not_as_root
def test_a_fuse_device_only_root_may_open_gets_the_chmod_fix(tmp_path):
    dev = fake_tree(tmp_path / "dev", {"fuse": ""})
    os.chmod(os.path.join(dev, "fuse"), 0)  # like /dev/fuse at 0600 root, seen by anyone else
    check = doctor.fuse_check(host.fuse_state(Host(dev=dev), {"PATH": "/usr/bin:/bin"}))
    assert check.status == WARN and "Permission denied" in check.detail and "----------" in check.detail
    assert f"sudo chmod 0666 {dev}/fuse" in check.fix


def test_overlay_is_not_blamed_when_user_namespaces_fail():
    check = doctor.overlay_check(Probe(UNSHARE, errno.EPERM, "Operation not permitted"), None, "workdir",
                                 None, "6.1.0")
    assert check.status == FAIL and "not probed" in check.detail and "user namespaces" in check.fix


@pytest.mark.not_as_root
def test_a_store_that_is_not_writable_fails_clearly(toolbox):
    layout = toolbox.layout
    os.makedirs(layout.store_dir)
    os.chmod(layout.store_dir, 0o555)
    try:
        checks = by_name(doctor.run_checks(layout))
        store = checks["store"]
        assert store.status == FAIL
        assert f"cannot work in {layout.tmp_dir}" in store.detail and "Permission denied" in store.detail
        assert f"make {layout.store_dir} writable" in store.fix and "TOOLBOX_CACHE_DIR" in store.fix
        assert checks["overlay"].status == FAIL and "not probed" in checks["overlay"].detail
        result = toolbox.cli("doctor")
        assert result.returncode == 1
        assert any(line.startswith("FAIL  store") for line in result.stdout.splitlines())
        assert "toolbox: error: 2 checks failed: overlay, store" in result.stderr
    finally:
        os.chmod(layout.store_dir, 0o755)


def test_little_free_space_is_a_warning_with_its_fix(tmp_path):
    layout = Layout.under(tmp_path)
    with host.workspace(layout) as (workdir, problem):
        assert problem is None
        check = doctor.store_check(layout, workdir, None, Host(), low_space=1 << 62)
    assert check.status == WARN and "free" in check.detail and "toolbox prune" in check.fix


def test_a_check_that_breaks_becomes_a_line_not_a_traceback(tmp_path):
    layout = Layout.under(str(tmp_path) + "/nul\0byte")
    checks = by_name(doctor.run_checks(layout, host=Host(proc=str(tmp_path / "absent"))))
    assert checks["store"].status == FAIL and "null byte" in checks["store"].detail
    assert checks["overlay"].status == FAIL
    broken = doctor._guarded("example", lambda: 1 / 0)
    assert broken.status == FAIL and "ZeroDivisionError" in broken.detail and broken.fix


def test_doctor_loads_without_the_generated_syscall_module():
    """The probes import the cffi module only when they run, so a broken one is a failed line
    of the report (what doctor is for), not a traceback."""
    code = ("import sys; sys.modules['_cffi_backend'] = None\n"
            "import toolbox.ops.doctor\n"
            "from toolbox.runtime.host import probe_runtime\n"
            "probe = probe_runtime()\n"
            "print(probe.failed_step, probe.message, sep='|')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    step, message = done.stdout.strip().split("|")
    assert step == UNSHARE and message.startswith("cannot prepare the probe"), done.stdout


def test_doctor_imports_nothing_of_the_cli():
    code = "import sys, toolbox.ops.doctor; print(' '.join(sys.modules))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=REPO).stdout.split())
    assert "toolbox.ops.doctor" in loaded
    assert not loaded & {"typer", "click", "rich", "requests"}


def test_the_shell_check_warns_unless_the_shims_directory_is_first_on_path(toolbox, tmp_path):
    """doctor sees the PATH its shell exports: after shell-init the shims directory is first
    (ok); missing, or behind another directory, it is a warning (not a failure) whose fix is the
    line for $SHELL's rc file, naming toolbox by its absolute path."""
    shims = toolbox.layout.shims_dir
    launcher = shutil.which("toolbox", path=toolbox.env["PATH"])
    assert launcher, "the suite's venv has the toolbox command"

    def shell_check(script, shell="/bin/bash"):
        done = subprocess.run(["bash", "-c", script + "; toolbox doctor --json"],
                              env=dict(toolbox.env, SHELL=shell), capture_output=True, text=True, timeout=120)
        assert done.stdout, done.stderr
        return by_name(doctor.Check(**check) for check in json.loads(done.stdout)["checks"])["shell"]

    missing = shell_check("true", shell="/usr/bin/zsh")
    assert missing.status == WARN and f"{shims} is not on PATH" in missing.detail, missing
    assert missing.fix.startswith(f'add this line to ~/.zshrc: [ -x {launcher} ] && eval "$({launcher} '
                                  'shell-init zsh)"'), missing
    first = shell_check('eval "$(toolbox shell-init bash)"')
    assert first.status == OK and f"{shims} is first on PATH" in first.detail, first
    behind = shell_check('eval "$(toolbox shell-init bash)"; PATH=/usr/bin:$PATH', shell="/usr/bin/fish")
    assert behind.status == WARN and f"{shims} is on PATH after /usr/bin" in behind.detail, behind
    assert behind.fix.startswith(f"add this line to ~/.config/fish/config.fish: test -x {launcher}; and "
                                 f"{launcher} shell-init fish | source"), behind
    os.symlink(shims, tmp_path / "link")
    assert shell_check(f"PATH={tmp_path / 'link'}:$PATH").status == OK  # the same directory, by another name


def test_all_checks_take_well_under_a_second(tmp_path):
    layout = Layout.under(tmp_path)
    doctor.run_checks(layout)  # imports done
    start = time.monotonic()
    doctor.run_checks(layout)
    assert time.monotonic() - start < 1.0
