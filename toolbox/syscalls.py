"""Thin wrappers over the syscalls the launch path needs that Python 3.11's os module lacks.
Each checks the return value and raises OSError with errno, naming the call and its path."""

import os

from ._sys import ffi

_libc = ffi.dlopen(None)

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}


def _check(result, what):
    if result == -1:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _c(text):
    # cffi wants a char[] it owns for variadic syscall() arguments; bytes are fine elsewhere.
    return ffi.NULL if text is None else ffi.new("char[]", os.fsencode(text))


def unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def mount(source, target, fstype, flags=0, data=None):
    what = f"mount {fstype or ''} {source or ''} on {target}".replace("  ", " ")
    _check(_libc.mount(_c(source), _c(target), _c(fstype), flags, _c(data)), what)


def umount2(target, flags=0):
    _check(_libc.umount2(_c(target), flags), f"umount {target}")


def pivot_root(new_root, put_old):
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(38, f"pivot_root: unsupported architecture {os.uname().machine}")
    _check(_libc.syscall(ffi.cast("long", number), _c(new_root), _c(put_old)), f"pivot_root {new_root}")


def set_no_new_privs():
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")



def set_parent_death_signal(signum):
    _check(_libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def keep_capabilities_across_exec():
    """Raise every permitted capability into the inheritable and ambient sets, so that a program
    this process execs keeps them although its uid in the namespace is not 0 (capabilities(7):
    a non-root execve keeps only the ambient set)."""
    header = ffi.new("uint32_t[2]", [_LINUX_CAPABILITY_VERSION_3, 0])
    data = ffi.new("uint32_t[6]")  # two {effective, permitted, inheritable}: capabilities 0-31, 32-63
    _check(_libc.capget(header, data), "capget")
    data[2], data[5] = data[1], data[4]
    _check(_libc.capset(header, data), "capset")
    for capability in range(64):
        if data[1 + 3 * (capability // 32)] >> (capability % 32) & 1:
            _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, capability, 0, 0), f"prctl(PR_CAP_AMBIENT_RAISE, {capability})")
