"""The three root filesystem modes `toolbox run` can use (TOOLBOX_ROOTFS selects one), as pytest
parameters that skip with the reason where this host cannot give a mode, and only there.
scripts/test, run as root, installs fuse-overlayfs and opens /dev/fuse as a desktop's fuse3
package does, so all three run in the suite."""

import functools
import os
import shutil

import pytest

from .host import userns_available, userns_overlay_works


@functools.cache
def fuse_overlayfs_usable():
    return userns_available() and os.access("/dev/fuse", os.R_OK | os.W_OK) and shutil.which("fuse-overlayfs") is not None


def _reason(mode):
    if mode == "overlay" and not userns_overlay_works():
        return "overlayfs in an unprivileged user namespace (userxattr) is not available here"
    if mode == "fuse-overlayfs" and not fuse_overlayfs_usable():
        return ("fuse-overlayfs is missing or /dev/fuse does not open read-write for this user "
                "(scripts/test, run as root, opens it as a desktop's fuse3 package does)")
    if mode == "read-only" and not userns_available():
        return "unprivileged user namespaces are not available here"
    return None


def rootfs_mode_params():
    """pytest.param per mode, with a skip mark (and its reason) where the host lacks it."""
    params = []
    for mode in ("overlay", "fuse-overlayfs", "read-only"):
        reason = _reason(mode)
        params.append(pytest.param(mode, id=mode, marks=pytest.mark.skipif(reason is not None, reason=reason or "")))
    return params
