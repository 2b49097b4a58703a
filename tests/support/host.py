"""What this host lets an ordinary user do, probed with the real kernel (util-linux `unshare`),
so tests that need a feature skip with the reason instead of failing."""

import shutil
import subprocess
import tempfile


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
        probe = f"mkdir {lower} {upper} {work} {merged} && mount -t overlay overlay -o userxattr,lowerdir={lower},upperdir={upper},workdir={work} {merged}"
        return subprocess.run(["unshare", "-Urm", "sh", "-c", probe], capture_output=True).returncode == 0
