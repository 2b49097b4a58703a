"""Layer tars built in memory, member by member, and what to look at in the trees they unpack
to: for the unpacker's tests (tests/store) and the flattener's (tests/runtime/test_flatten.py)."""

import io
import os
import stat
import tarfile

from toolbox.runtime.imagefs import OPAQUE_XATTR
from toolbox.store.unpack import unpack_layer

from tests.support.images import MTIME

KINDS = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE,
         "blk": tarfile.BLKTYPE}


def member(name, kind="file", data=b"", mode=0o644, target="", pax=None, mtime=MTIME):
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.mode = mode
    info.type = KINDS[kind]
    info.linkname = target
    info.size = len(data) if kind == "file" else 0
    if pax:
        info.pax_headers = pax
    return info, data


def tar_bytes(*members, format=tarfile.PAX_FORMAT):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def unpack(dest, *members, **kw):
    return unpack_layer(io.BytesIO(tar_bytes(*members)), str(dest), **kw)


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def is_whiteout(path):
    st_ = os.lstat(path)
    return stat.S_ISCHR(st_.st_mode) and st_.st_rdev == 0


def opaque(path):
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False
