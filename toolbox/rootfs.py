"""The container's root filesystem, in the best mode the kernel allows (see `toolbox doctor`):

- overlay:   native overlayfs in the user namespace (Linux 5.11+, `userxattr`): the layer trees
             as lower directories under a writable layer;
- read-only: where the kernel refuses that: the image flattened once into a cached tree (hard
             links into the layer trees, so no file data is copied) and mounted read-only, with
             tmpfs on /tmp, /var/tmp, /run and the home directory.

`auto` tries them in that order; TOOLBOX_ROOTFS forces one. Runs inside the new namespaces,
before pivot_root. Standard library and the generated syscall module only.

Not yet: fuse-overlayfs between the two. Started from here it runs as the user without
capabilities, so it cannot mount; mounting /dev/fuse for it and passing /dev/fd/N gives reads
but not writes. Running it as root of the namespace and the tool in a nested one is the way.
"""

import errno
import os

from . import syscalls as sc

MODES = ("auto", "overlay", "read-only")
# What a kernel that refuses overlayfs in a user namespace answers.
_REFUSED = (errno.EPERM, errno.EINVAL, errno.ENODEV, errno.EACCES)
WRITABLE_IN_READ_ONLY = ("tmp", "var/tmp", "run")
LAYERS_FILE = "layers"  # in each flattened tree's directory: the layer trees it was made from


class Root:
    """The assembled root: where it is mounted and whether its own directories take writes."""

    __slots__ = ("path", "mode", "writable")

    def __init__(self, path, mode, writable):
        self.path = path
        self.mode = mode
        self.writable = writable


def assemble(spec):
    """A tmpfs on the scratch directory holds the mount point of the root and, without --name,
    the writable layer (gone when the namespace goes)."""
    scratch = spec.scratch_dir
    sc.mount("toolbox-scratch", scratch, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=0755")
    for name in ("upper", "work", "root"):
        os.mkdir(os.path.join(scratch, name), 0o755)
    root = os.path.join(scratch, "root")
    upper = spec.upper or f"{scratch}/upper"
    work = spec.work or f"{scratch}/work"
    # Layer paths relative to the layers directory keep the option string short: mount data is
    # limited to one page.
    os.chdir(spec.layers_dir)
    lowerdirs = ":".join(spec.layers)
    mode = spec.rootfs
    if mode in ("auto", "overlay"):
        try:
            sc.mount("toolbox", root, "overlay", 0, f"userxattr,lowerdir={lowerdirs},upperdir={upper},workdir={work}")
            return Root(root, "overlay", True)
        except OSError as err:
            if mode == "overlay" or err.errno not in _REFUSED:
                raise
    if spec.upper:
        raise OSError(errno.EOPNOTSUPP, "--name needs a writable layer, and overlayfs cannot be mounted here")
    flat = flattened_tree(spec)
    sc.mount(flat, root, None, sc.MS_BIND | sc.MS_REC)
    return Root(root, "read-only", False)


def flattened_tree(spec):
    """The image as one directory, made once per list of layers (merge_layers hard-links the
    layers' files, so it costs directories, not data) and kept in the store's flat/ directory
    (`toolbox prune` removes those whose layers are gone)."""
    import hashlib  # only in this fallback mode

    key = hashlib.sha256("\n".join(spec.layers).encode()).hexdigest()
    flat_dir = os.path.join(spec.flat_root, key)
    path = os.path.join(flat_dir, "tree")
    if os.path.isdir(path):
        return path
    from .unpack import merge_layers

    staging = f"{flat_dir}.tmp-{os.getpid()}"
    os.makedirs(os.path.join(staging, "tree"))
    merge_layers([os.path.join(spec.layers_dir, layer) for layer in reversed(spec.layers)], os.path.join(staging, "tree"))
    with open(os.path.join(staging, LAYERS_FILE), "w") as file:
        file.write("\n".join(spec.layers) + "\n")
    try:
        os.rename(staging, flat_dir)
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        _remove_quietly(staging)  # another run made it first
    return path


def _remove_quietly(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def mount_scratch_space(root, mountpoint, home):
    """In read-only mode: tmpfs where tools expect to write (its own, not the image's)."""
    for inside in WRITABLE_IN_READ_ONLY:
        mode = "0755" if inside == "run" else "1777"
        sc.mount("toolbox-tmp", mountpoint(root.path, inside, directory=True), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, f"mode={mode}")
    sc.mount("toolbox-home", mountpoint(root.path, home, directory=True), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=0700")
