"""What this host lets an ordinary user do, probed with the real kernel (util-linux `unshare`),
so tests that need a feature skip with the reason instead of failing. Tests name what they need
with the markers of tests/support/markers.py, which ask these probes.

Under CI=true a skip fails the run (tests/conftest.py), except one that says the host lacks a
feature a CI machine may lack (MACHINE.md: no delegated cgroup v2): `lacks_host_feature`, or the
`needs_cgroup2` and `host_feature` markers. Anything else a test needs (docker-registry, skopeo,
zsh, fish, user namespaces) is there on CI, so its absence is a broken setup and must not pass
as a skip."""

import os
import shutil
import subprocess
import tempfile

import pytest

CI = os.environ.get("CI", "").lower() in ("true", "1")  # as toolbox reads it (plans.frozen)


class HostFeatureMissing(pytest.skip.Exception):
    """The one kind of skip CI=true lets through: a host feature a CI machine may lack."""

    __module__ = "builtins"  # reported as "HostFeatureMissing: ...", as pytest's own is "Skipped: ..."

    def __init__(self, reason):
        super().__init__(f"a host feature CI may lack: {reason}")
        self._use_item_location = True  # reported at the test, as a skipif marker's skip is


def lacks_host_feature(reason):
    """Skip the running test: this host lacks a feature a CI machine may lack (say which)."""
    raise HostFeatureMissing(reason)


def host_feature(present, reason):
    """A marker: run the test only where `present`, else skip as lacks_host_feature does."""
    return pytest.mark.host_feature(present=bool(present), reason=reason)


def userns_available():
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode == 0


def userns_overlay_works():
    """overlayfs mounted by an unprivileged user in its own user namespace (`userxattr`)."""
    if not userns_available():
        return False
    with tempfile.TemporaryDirectory(prefix="toolbox-probe-") as tmp:
        names = ("l", "u", "w", "m")
        lower, upper, work, merged = (f"{tmp}/{name}" for name in names)
        probe = (f"mkdir {lower} {upper} {work} {merged} && mount -t overlay overlay "
                 f"-o userxattr,lowerdir={lower},upperdir={upper},workdir={work} {merged}")
        return subprocess.run(["unshare", "-Urm", "sh", "-c", probe], capture_output=True).returncode == 0


def fuse_usable():
    """fuse-overlayfs installed, and /dev/fuse opens read-write for this user (scripts/test, run
    as root, opens it as a desktop's fuse3 package does)."""
    return os.access("/dev/fuse", os.R_OK | os.W_OK) and shutil.which("fuse-overlayfs") is not None


def subids_usable():
    """Subordinate uids and gids for this user, and newuidmap and newgidmap to map them."""
    import pwd

    from toolbox.runtime.subids import find_program, subordinate_range

    uid = os.getuid()
    name = pwd.getpwuid(uid).pw_name
    return all((subordinate_range("/etc/subuid", name, uid), subordinate_range("/etc/subgid", name, uid),
                find_program("newuidmap"), find_program("newgidmap")))


def cgroup2_delegated(controllers):
    """A cgroup v2 of this user's own, with `controllers` ("pids", "memory", "cpus") delegated."""
    from toolbox.runtime.cgroups import delegation_problem

    return delegation_problem(controllers) is None


def run_on_a_small_store(toolbox, body, tmpfs_options="size=48m", timeout=180):
    """Run the shell script `body` in a user and mount namespace of the test's own, where the
    toolbox under test's cache directory (its store) is a fresh tmpfs mounted with
    `tmpfs_options`: a disk that fills, or runs out of inodes, without touching the host's."""
    cache = toolbox.layout.cache_dir
    os.makedirs(cache, exist_ok=True)
    script = f"mount -t tmpfs -o {tmpfs_options} toolbox-test-store {cache} || exit 99\n{body}"
    result = subprocess.run(["unshare", "-Urm", "sh", "-c", script], env=toolbox.env, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode == 99:  # the mount itself failed (the script's own commands never exit 99)
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {result.stderr.strip()}")
    return result
