"""Files of an image read on the host side, before its container exists: the ids and home for
`--user NAME` come from the image's /etc/passwd and /etc/group, read from the layer trees
because the id maps must be written before anything is mounted. On the launch path when --user
is given, so standard library only (os, stat, errno).

Nothing the image says is followed by the host's kernel. A path is walked one name at a time,
as the kernel's path walk does (path_resolution(7)), with overlayfs's rules across the layers
(the kernel's ovl_lookup):
- the topmost layer holding a name decides what it is; a whiteout there (a 0/0 character
  device, as unpack.py writes `.wh.NAME`) means it is absent;
- a directory merges with the directories of that name in the layers below, down to the first
  one marked opaque (`user.overlay.opaque=y`), or down to a layer holding a whiteout or a
  non-directory there, which hides itself and everything below it;
- a symlink's target is read (readlink, never followed) and walked on inside the image: an
  absolute target restarts at the image's root and `..` stops there, as after chroot(2); past
  40 links, ELOOP. So a link cannot lead out of the image: a link to /etc/passwd means the
  image's own /etc/passwd, and `../../../etc/passwd` the same.
Names are looked up with lstat only below directories already seen to be directories of that
layer tree (the store's trees do not change during a run: none of the image's code has run yet);
the file itself is then opened one directory at a time from its layer's root with O_NOFOLLOW.

A file is read only if it is a regular file, opened with O_NONBLOCK (a FIFO would block forever),
and never past a bound (a sparse file can claim terabytes): NotRegularFile and FileTooBig
otherwise. read_regular applies the same rules to one path, for the runtime's own reads of the
assembled root before pivot_root.
"""

import errno
import os
import stat

from toolbox.errors import ImageFileError

MAX_LINKS = 40  # the kernel's limit on symlinks in one path walk (path_resolution(7))
ACCOUNTS_LIMIT = 4 * 1024 * 1024  # /etc/passwd, /etc/group: real ones are a few kB, LDAP dumps a few MB
OPAQUE_XATTR = "user.overlay.opaque"  # the one definition: store/layertree.py sets it, flatten.py reads it
_WALK_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 16
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def is_whiteout(st: os.stat_result) -> bool:
    """Whether `st` is overlayfs's mark of a deleted name (a 0/0 character device): the one
    definition, as OPAQUE_XATTR is for an opaque directory."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class NotRegularFile(OSError):
    def __init__(self, path: str, mode: int) -> None:
        super().__init__(errno.EINVAL, f"{kind_of(mode)}, not a regular file", path)
        self.kind = kind_of(mode)


class FileTooBig(OSError):
    """`size`: what fstat says, or None when the file held more than it said (it grew, or is a
    /proc file whose size says 0)."""

    def __init__(self, path: str, size: int | None, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(errno.EFBIG, f"{self.describe()}, more than the {_size(limit)} toolbox reads of it",
                         path)

    def describe(self) -> str:
        return f"more than {_size(self.limit)}" if self.size is None else f"{self.size} bytes"


def kind_of(mode: int) -> str:
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "a regular file" if stat.S_ISREG(mode) else "of an unknown kind"


def read_image_file(layer_roots: list[str], path: str, limit: int, image: str) -> bytes | None:
    """The bytes of the regular file `path` of the image made of `layer_roots` (topmost first),
    or None when the image has no such file. ImageFileError names the file and `image` when it
    is something else than a regular file, bigger than `limit`, or cannot be reached."""
    try:
        entry = locate(layer_roots, path)
        if entry is None:
            return None
        layer_root, names, st = entry
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, st.st_mode)
        if st.st_size > limit:
            raise FileTooBig(path, st.st_size, limit)
        return _read_below(layer_root, names, limit)
    except NotRegularFile as err:
        raise ImageFileError(f"{path} in {image} is {err.kind}, not a regular file: "
                             "toolbox does not read it") from None
    except FileTooBig as err:
        raise ImageFileError(f"{path} in {image} is {err.strerror}") from None
    except OSError as err:
        raise ImageFileError(f"cannot read {path} in {image}: {err.strerror or err}") from None


def locate(layer_roots: list[str], path: str) -> tuple[str, list[str], os.stat_result] | None:
    """Where the image's `path` lies: (layer root, names below it, lstat) of the entry the
    container will see there, symlinks followed inside the image; or None when there is none.
    The entry is never a symlink; it may be a directory (the image's root too: no names)."""
    everything = tuple(range(len(layer_roots)))
    names = []  # the directories walked, below the image's root
    merged = [everything]  # for the root and each of them: the layers whose directory shows there
    pending = _parts(path)[::-1]  # a stack: the next name last
    links = 0
    while pending:
        name = pending.pop()
        if name == "..":
            if names:  # at the root, `..` is the root
                names.pop()
                merged.pop()
            continue
        found = _lookup(layer_roots, merged[-1], names, name)
        if found is None:
            return None
        layers, st = found
        if stat.S_ISDIR(st.st_mode):
            names.append(name)
            merged.append(layers)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, f"{os.strerror(errno.ELOOP)} (more than {MAX_LINKS})", path)
            target = os.readlink(os.path.join(layer_roots[layers[0]], *names, name))
            if not target:
                return None  # an empty target names nothing (ENOENT, as the kernel has it)
            if target.startswith("/"):
                names, merged = [], [everything]
            pending.extend(_parts(target)[::-1])
            continue
        if pending:
            return None  # a name below a non-directory (ENOTDIR): nothing there
        return layer_roots[layers[0]], names + [name], st
    top = merged[-1][0]
    return layer_roots[top], names, os.lstat(os.path.join(layer_roots[top], *names))


def _parts(path):
    return [part for part in path.split("/") if part not in ("", ".")]


def _lookup(layer_roots, candidates, names, name):
    """`name` in the directory `names`, which shows the directories of the layers `candidates`:
    (the layers it shows, lstat of the topmost), or None when it is absent or whited out."""
    shown = []
    top = None
    for index in candidates:
        entry = os.path.join(layer_roots[index], *names, name)
        try:
            st = os.lstat(entry)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if is_whiteout(st):
            break  # this name is gone from here down
        if not stat.S_ISDIR(st.st_mode):
            if shown:
                break  # a non-directory below a directory is hidden, and hides the layers below it
            return (index,), st
        shown.append(index)
        if top is None:
            top = st
        if _is_opaque(entry):
            break
    return (tuple(shown), top) if shown else None


def _is_opaque(path):
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:  # ENODATA: not marked
        return False


def _read_below(layer_root, names, limit):
    """Open the directories down to the file one by one, none of them through a symlink."""
    dir_fd = os.open(layer_root, _WALK_FLAGS)
    try:
        for name in names[:-1]:
            child = os.open(name, _WALK_FLAGS, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = child
        data = read_regular(names[-1], limit, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    if data is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/".join(names))
    return data


def read_regular(path: str, limit: int, dir_fd: int | None = None) -> bytes | None:
    """The bytes of the regular file `path`, or None when nothing is there. Anything else raises
    NotRegularFile: a symlink in the last place is not followed, and no FIFO, device or socket is
    even opened (opening one can block or act). More than `limit` bytes raises FileTooBig,
    checked before reading (a sparse file) and while reading (a file that grows, or a /proc file
    whose size says 0)."""
    try:
        st = os.lstat(path, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    _check_regular(path, st, limit)
    fd = os.open(path, _READ_FLAGS, dir_fd=dir_fd)
    try:
        opened = os.fstat(fd)
        _check_regular(path, opened, limit)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            raise OSError(errno.ESTALE, "replaced while being opened", path)
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise FileTooBig(path, None, limit)
    return b"".join(chunks)


def _check_regular(path, st, limit):
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, st.st_mode)
    if st.st_size > limit:
        raise FileTooBig(path, st.st_size, limit)


def _size(count):
    return f"{count // (1024 * 1024)} MiB" if count % (1024 * 1024) == 0 else f"{count} bytes"
