"""The runtime's host probes (toolbox.runtime.host), as the ordinary test user: the probe makes
the runtime's own first steps in a child process and must answer as util-linux `unshare` does;
the hint after a failed run names the fix the probes point to."""

import errno
import os

from toolbox.layout import Layout
from toolbox.runtime import host
from toolbox.runtime.host import KERNEL_FIX, Host
from toolbox.runtime.spec import ASSEMBLE, NAMESPACE_STEPS

from tests.support.host import fuse_usable, userns_available, userns_overlay_works


def test_the_probe_answers_as_util_linux_unshare_does(tmp_path, monkeypatch):
    userns = userns_available()
    assert (host.probe_runtime().failed_step is None) == userns
    probe = host.probe_runtime(str(tmp_path / "overlay"))
    assert (probe.failed_step is None) == userns_overlay_works(), probe
    assert not os.path.exists(tmp_path / "overlay" / "scratch" / "root")  # the tmpfs stayed in the child
    # Where the namespaces fail, the fuse probe fails there, before fuse-overlayfs is tried;
    # where they work, it fails at assembling the root exactly when fuse-overlayfs is unusable.
    fuse = host.probe_runtime(str(tmp_path / "fuse"), mode="fuse-overlayfs")
    if not userns:
        assert fuse.failed_step in NAMESPACE_STEPS, fuse
    elif fuse_usable():
        assert fuse.failed_step is None, fuse
    else:
        assert fuse.failed_step == ASSEMBLE + " (fuse-overlayfs)", fuse
    # The same without fuse-overlayfs on PATH, so that branch is taken on every host.
    no_program = tmp_path / "no-fuse-overlayfs"
    no_program.mkdir()
    monkeypatch.setenv("PATH", str(no_program))
    missing = host.probe_runtime(str(tmp_path / "fuse-missing"), mode="fuse-overlayfs")
    if userns:
        assert (missing.failed_step == ASSEMBLE + " (fuse-overlayfs)"
                and "not installed" in missing.message), missing
    else:
        assert missing.failed_step in NAMESPACE_STEPS, missing


# -- hints for `toolbox run` ----------------------------------------------------------------------
def test_hint_for_an_unshare_refusal(tmp_path):
    hint = host.hint_for_run_failure("unshare user and mount namespaces", errno.EPERM)
    assert isinstance(hint, str) and hint and hint != host.DOCTOR_HINT
    if not host.read_sysctls(Host()):
        assert "seccomp" in hint  # nothing on this host forbids them: the fix names what else would


def test_hint_for_an_overlay_refusal(tmp_path):
    assert host.hint_for_run_failure(ASSEMBLE, errno.EPERM, host=Host(release="5.4.0")) == KERNEL_FIX
    hint = host.hint_for_run_failure(ASSEMBLE, errno.EINVAL, layout=Layout.under(tmp_path))
    if userns_overlay_works():
        assert "toolbox rmi IMAGE" in hint  # the probe mounts, so the image's layers are to blame
    assert host.hint_for_run_failure("pivot_root", errno.EINVAL) == host.DOCTOR_HINT
