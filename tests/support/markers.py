"""What a test needs of the host, as pytest markers (registered in pyproject.toml). Each need is
defined here once, and probed only when a test that carries its marker is about to run:

    @pytest.mark.needs_userns                unprivileged user and mount namespaces (`unshare -Urm`)
    @pytest.mark.needs_userns_overlay        those, and overlayfs mounted inside them (`userxattr`)
    @pytest.mark.needs_fuse                  fuse-overlayfs, and a /dev/fuse that opens read-write
    @pytest.mark.needs_subids                subordinate ids for this user, newuidmap and newgidmap
    @pytest.mark.needs_registry              Debian's docker-registry
    @pytest.mark.needs_program("git")        a program on PATH
    @pytest.mark.not_as_root                 an ordinary user (root reads and writes through any mode)
    @pytest.mark.needs_cgroup2("pids", ...)  a delegated cgroup v2 with these controllers
    @pytest.mark.host_feature(present=..., reason=...)  (tests/support/host.py: host_feature)

A test that lacks one skips, with the reason. Under CI=true (tests/conftest.py) that skip fails
the run, for CI has all of them and their absence is a broken setup; the exceptions are the host
features CI may lack, needs_cgroup2 and host_feature, which skip as host.lacks_host_feature does.

Fixtures need things too: `require("needs_program", "skopeo")` skips the tests that use one.
Load this plugin from tests/conftest.py (`pytest_plugins`)."""

import functools
import os
import shutil

import pytest

from .host import (
    cgroup2_delegated,
    fuse_usable,
    lacks_host_feature,
    subids_usable,
    userns_available,
    userns_overlay_works,
)
from .registry import find_registry_binary

# A need without arguments: its probe, and why a test skips without it.
PROBED = {
    "needs_userns": (userns_available, "unprivileged user namespaces are not available here"),
    "needs_userns_overlay": (userns_overlay_works,
                             "overlayfs in an unprivileged user namespace (userxattr) is not available here"),
    "needs_fuse": (fuse_usable, "fuse-overlayfs is missing or /dev/fuse does not open read-write for this "
                                "user (scripts/test, run as root, opens it as a desktop's fuse3 package "
                                "does)"),
    "needs_subids": (subids_usable, "this user has no subordinate ids or newuidmap/newgidmap is missing"),
    "needs_registry": (lambda: find_registry_binary() is not None,
                       "docker-registry is not installed (apt-get install docker-registry)"),
    "not_as_root": (lambda: os.geteuid() != 0,
                    "root writes through any mode: run the suite as an ordinary user (scripts/test does)"),
}
HOST_FEATURES = ("needs_cgroup2", "host_feature")  # what CI may lack (tests/support/host.py)
NEEDS = (*PROBED, "needs_program", *HOST_FEATURES)


@functools.cache
def _present(need):
    # Probed once a run (a probe starts `unshare`), at the first test that asks: a test that
    # later changes PATH or the environment cannot change the answer for the tests after it.
    probe, _reason = PROBED[need]
    return bool(probe())


def _skip(reason):
    # Reported at the test, as a skipif marker's skip is (not at this file).
    return pytest.skip.Exception(reason, _use_item_location=True)


def require(need, *args, **kwargs):
    """Skip the running test unless this host has `need` (a marker's name and arguments)."""
    if need in PROBED:
        if not _present(need):
            raise _skip(PROBED[need][1])
    elif need == "needs_program":
        (program,) = args
        if shutil.which(program) is None:
            raise _skip(f"{program} is not installed (scripts/test installs it)")
    elif need == "needs_cgroup2":
        if not cgroup2_delegated(list(args)):
            lacks_host_feature(f"no delegated cgroup v2 with the {' and '.join(args)} controllers on this "
                               "host")
    elif need == "host_feature":
        if not kwargs["present"]:
            lacks_host_feature(kwargs["reason"])
    else:
        raise ValueError(f"{need!r} is not a need of tests/support/markers.py: one of {', '.join(NEEDS)}")


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures start registries or pull images
def pytest_runtest_setup(item):
    marks = [mark for mark in item.iter_markers() if mark.name in NEEDS]
    # What CI must have is asked first: on a CI machine without cgroup v2 but also without user
    # namespaces, the test fails for the namespaces instead of passing as a host feature's skip.
    for mark in sorted(marks, key=lambda mark: mark.name in HOST_FEATURES):
        require(mark.name, *mark.args, **mark.kwargs)
