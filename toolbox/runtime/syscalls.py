"""Thin wrappers over the syscalls the launch path needs that Python 3.11's os module lacks.
Each checks the return value and raises OSError with errno, naming the call and its path."""

import errno
import os
import sys

from toolbox.runtime._sys import ffi

_libc = ffi.dlopen(None)

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")  # what mount(2) reads of the options, their NUL included
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}


def _check(result: int, what: str) -> int:
    if result == -1:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _c(text):
    # cffi wants a char[] it owns for variadic syscall() arguments; bytes are fine elsewhere.
    return ffi.NULL if text is None else ffi.new("char[]", os.fsencode(text))


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace `fd` refers to (an open /proc/PID/ns/* file)."""
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    what = f"mount {fstype or ''} {source or ''} on {target}".replace("  ", " ")
    if data is not None and len(os.fsencode(data)) >= PAGE_SIZE:
        # mount(2) copies one page of options and silently cuts the rest (fs/namespace.c): the
        # filesystem would be mounted with other options than these (rootfs._LayerDirs).
        raise OSError(errno.E2BIG, f"{what}: {len(os.fsencode(data))} bytes of options, and mount(2) reads "
                                   f"one page ({PAGE_SIZE})")
    _check(_libc.mount(_c(source), _c(target), _c(fstype), flags, _c(data)), what)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_c(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(38, f"pivot_root: unsupported architecture {os.uname().machine}")
    _check(_libc.syscall(ffi.cast("long", number), _c(new_root), _c(put_old)), f"pivot_root {new_root}")


def set_no_new_privs() -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")



def set_parent_death_signal(signum: int) -> None:
    _check(_libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def keep_capabilities_across_exec() -> None:
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
            _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, capability, 0, 0),
                   f"prctl(PR_CAP_AMBIENT_RAISE, {capability})")


# -- a seccomp filter against terminal injection ----------------------------------------------------
# The tool shares the user's terminal (exec in place), so without this an image could push
# keystrokes into the user's shell with ioctl(TIOCSTI) (or TIOCLINUX on a console) to run after
# it exits. A new session would stop that but also take the terminal's job control from the tool;
# a filter refusing those two ioctls (EPERM) is what bubblewrap and podman's default profile do.
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
# (audit arch, ioctl's syscall numbers on it): x86_64 (+ its x32 ABI's), i386, aarch64.
_IOCTL_SYSCALLS = ((0xC000003E, (16, 0x40000000 | 514)), (0x40000003, (54,)), (0xC00000B7, (29,)))
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
_ARCH_OFFSET, _NR_OFFSET = 4, 0
_ARG1_OFFSET = 24 if sys.byteorder == "little" else 28  # seccomp_data.args[1], its low 32 bits


def _terminal_filter() -> list[tuple[int, int, int, int]]:
    """The BPF program as (code, jt, jf, k) tuples: for each known arch, ioctl with request
    TIOCSTI or TIOCLINUX fails with EPERM; everything else is allowed."""
    deny, check_request = "deny", "request"
    program = [(_LD_W_ABS, 0, 0, _ARCH_OFFSET)]
    arch_blocks = []
    for arch, numbers in _IOCTL_SYSCALLS:
        label = f"arch-{arch:x}"
        program.append((_JEQ_K, label, 0, arch))
        block = ([(_LD_W_ABS, 0, 0, _NR_OFFSET)]
                 + [(_JEQ_K, check_request, 0, number) for number in numbers]
                 + [(_RET_K, 0, 0, _SECCOMP_RET_ALLOW)])
        arch_blocks.append((label, block))
    program.append((_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    labels = {}
    for label, block in arch_blocks:
        labels[label] = len(program)
        program += block
    labels[check_request] = len(program)
    program += [(_LD_W_ABS, 0, 0, _ARG1_OFFSET), (_JEQ_K, deny, 0, TIOCSTI), (_JEQ_K, deny, 0, TIOCLINUX),
                (_RET_K, 0, 0, _SECCOMP_RET_ALLOW)]
    labels[deny] = len(program)
    program.append((_RET_K, 0, 0, _SECCOMP_RET_ERRNO | 1))  # EPERM
    resolved = []
    for index, (code, jt, jf, k) in enumerate(program):
        # Jumps are relative to the next instruction, forward only.
        jt = labels[jt] - index - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - index - 1 if isinstance(jf, str) else jf
        resolved.append((code, jt, jf, k))
    return resolved


def block_terminal_injection() -> None:
    """Install the filter (needs no_new_privs first). Kept by the tool across execve and by
    every process it starts."""
    order = sys.byteorder
    code = b"".join(c.to_bytes(2, order) + bytes((jt, jf)) + k.to_bytes(4, order) for c, jt, jf,
                    k in _terminal_filter())
    instructions = ffi.new("unsigned char[]", code)
    pointer = int(ffi.cast("uintptr_t", instructions))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }: the pointer aligned.
    size = ffi.sizeof("void *")
    fprog = ffi.new("unsigned char[]",
                    (len(code) // 8).to_bytes(2, order) + bytes(size - 2) + pointer.to_bytes(size, order))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, int(ffi.cast("uintptr_t", fprog)), 0, 0),
           "prctl(PR_SET_SECCOMP)")
