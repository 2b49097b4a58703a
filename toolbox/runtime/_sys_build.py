"""Generates toolbox/_sys.py, the syscall bindings of the launch path, with cffi's out-of-line
ABI mode: the declarations are parsed here, once, not by pycparser at every start (an in-line
cdef costs ~70 ms; loading the generated module ~1 ms). No C compiler is needed.

    python -m toolbox.runtime._sys_build     # after changing CDEF; tests/test_runtime.py checks freshness
"""

import os

import cffi

CDEF = """
int unshare(int flags);
int mount(const char *source, const char *target, const char *filesystemtype,
          unsigned long mountflags, const void *data);
int umount2(const char *target, int flags);
long syscall(long number, ...);
int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5);
int capget(void *header, void *data);
int capset(void *header, const void *data);
int setns(int fd, int nstype);
"""


def builder() -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source("toolbox.runtime._sys", None)  # None: ABI mode, a pure-Python module
    return ffi


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    builder().emit_python_code(os.path.join(here, "_sys.py"))
