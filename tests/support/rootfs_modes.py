"""The three root filesystem modes `toolbox run` can use (TOOLBOX_ROOTFS selects one), as pytest
parameters, each marked with what the host must give for it (tests/support/markers.py), so a mode
skips with the reason where this host cannot give it, and only there. scripts/test, run as root,
installs fuse-overlayfs and opens /dev/fuse as a desktop's fuse3 package does, so all three run
in the suite."""

import pytest

NEEDS = {
    "overlay": (pytest.mark.needs_userns_overlay,),
    "fuse-overlayfs": (pytest.mark.needs_userns, pytest.mark.needs_fuse),
    "read-only": (pytest.mark.needs_userns,),
}


def rootfs_mode_params():
    """pytest.param per mode, marked with what the mode needs of the host."""
    return [pytest.param(mode, id=mode, marks=needs) for mode, needs in NEEDS.items()]
