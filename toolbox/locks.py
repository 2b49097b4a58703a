"""flock-based locks, released when their fd closes or the process dies, so a killed toolbox
never leaves a stale lock. Standard library only: the launch path holds some across exec."""

import fcntl
import os


class Busy(Exception):
    """A non-blocking lock is held by someone else."""


def acquire(path, shared=False, blocking=True, inheritable=False):
    """An fd holding an flock on `path` (created if missing). `inheritable` keeps it across
    exec, so the tool itself holds the lock for as long as it runs."""
    flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            raise Busy(path) from None
        # A cleaner may have unlinked the file between our open and our flock; then our lock
        # guards nothing anyone else can see. Start again on the file that is there now.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    if inheritable:
        os.set_inheritable(fd, True)
    return fd
