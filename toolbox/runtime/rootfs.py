"""The container's root filesystem, in the best mode the kernel allows (see `toolbox doctor`):

- overlay:        native overlayfs in the user namespace (Linux 5.11+, `userxattr`): the layer
                  trees as lower directories under a writable layer;
- fuse-overlayfs: where the kernel refuses that but /dev/fuse opens: the same layers served by
                  fuse-overlayfs, a child process that lives as long as the tool (it is the one
                  feature that needs a resident process);
- read-only:      the image flattened once into a cached tree (hard links into the layer trees,
                  so no file data is copied) and mounted read-only, with tmpfs on /tmp,
                  /var/tmp, /run and the home directory.

`auto` tries them in that order; TOOLBOX_ROOTFS names one mode or a comma-separated list to try.
Runs inside the new namespaces, before pivot_root. Standard library and the generated syscall
module only.
"""

import errno
import os

from toolbox.runtime import syscalls as sc
from toolbox.runtime.mounts import TMPFS, Mount, mount_table, mountpoint
from toolbox.runtime.spec import RunSpec

MODES = ("overlay", "fuse-overlayfs", "read-only")
AUTO = "auto"  # all of MODES, in that order
# What a kernel that refuses overlayfs in a user namespace answers.
_REFUSED = (errno.EPERM, errno.EINVAL, errno.ENODEV, errno.EACCES)
# In read-only mode, tmpfs where tools expect to write (its own, not the image's), and on the home directory.
WRITABLE_IN_READ_ONLY = (
    Mount(TMPFS, "toolbox-tmp", "tmp", sc.MS_NOSUID | sc.MS_NODEV, "mode=1777"),
    Mount(TMPFS, "toolbox-tmp", "var/tmp", sc.MS_NOSUID | sc.MS_NODEV, "mode=1777"),
    Mount(TMPFS, "toolbox-tmp", "run", sc.MS_NOSUID | sc.MS_NODEV, "mode=0755"),
)
LAYERS_FILE = "layers"  # in each flattened tree's directory: the layer trees it was made from
# Beside a kept writable layer (--name): the mode that wrote it. overlayfs and fuse-overlayfs
# record whiteouts and opaque directories differently, so a kept layer stays with its mode.
KEPT_MODE_FILE = "rootfs"
FUSE_MOUNT_TIMEOUT = 10.0  # seconds for fuse-overlayfs to mount before it is given up


def parse_modes(text: str | None) -> tuple[str, ...]:
    """The modes to try, in order, from TOOLBOX_ROOTFS's value; ValueError names a wrong one."""
    if not text or text == AUTO:
        return MODES
    modes = tuple(part.strip() for part in text.split(","))
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"{mode!r} is not a root filesystem mode (use {AUTO} or some of "
                             f"{', '.join(MODES)})")
    return modes


class Root:
    """The assembled root: where it is mounted and whether its own directories take writes."""

    __slots__ = ("path", "mode", "writable")

    def __init__(self, path: str, mode: str, writable: bool) -> None:
        self.path = path
        self.mode = mode
        self.writable = writable


class AssembleError(OSError):
    """The last mode tried failed: the error names it, for the hint (host.hint_for_run_failure)."""

    def __init__(self, mode: str, err: OSError) -> None:
        super().__init__(err.errno, err.strerror or str(err))
        self.mode = mode


def assemble(spec: RunSpec) -> Root:
    """A tmpfs on the scratch directory holds the mount point of the root, the fuse-overlayfs
    log, the short names of the layers when the image has many and, without --name, the
    writable layer (gone when the namespace goes)."""
    scratch = spec.scratch_dir
    sc.mount("toolbox-scratch", scratch, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=0755")
    for name in ("upper", "work", "root"):
        os.mkdir(os.path.join(scratch, name), 0o755)
    modes = _kept_layer_modes(spec) or spec.rootfs or MODES
    layers = _LayerDirs(spec)
    for mode in modes:
        try:
            root = _ASSEMBLERS[mode](spec, layers, os.path.join(scratch, "root"))
        except OSError as err:
            if mode == modes[-1] or (mode == "overlay" and err.errno not in _REFUSED):
                raise AssembleError(mode, err) from None
            continue
        _record_kept_layer_mode(spec, mode)
        return root
    raise AssembleError("none", OSError(errno.EINVAL, "no root filesystem mode to try"))


class _LayerDirs:
    """The lower, upper and work directories as overlayfs and fuse-overlayfs are given them:
    `lower` is the lowerdir list, topmost first, of names relative to the current directory,
    which this changes.

    mount(2) copies one page of options and cuts the rest off, ending the string at the page's
    last byte (fs/namespace.c), without an error. Relative to the layers directory a layer is
    `sha256/<64 hex>/tree` (76 bytes): at 53 layers the page ends inside the 53rd name, and
    overlayfs mounted the top 52 layers and the 53rd's directory, without upperdir and workdir,
    read-only: not the image. So beyond what fits, the layers get short names instead: links
    `0`, `1`, ... in a directory of the scratch tmpfs (as podman's overlay driver keeps links
    in l/), ≈4 bytes a layer, 127 layers (Docker's most) in ≈500 bytes. They are made per run,
    on this run's own tmpfs in its own mount namespace, so nothing in the store needs naming,
    keeping or cleaning. syscalls.mount refuses what would still not fit (paths of thousands
    of bytes) rather than let the kernel cut it."""

    __slots__ = ("lower", "upper", "work")

    def __init__(self, spec: RunSpec) -> None:
        self.upper = spec.upper or os.path.join(spec.scratch_dir, "upper")
        self.work = spec.work or os.path.join(spec.scratch_dir, "work")
        self.lower = ":".join(spec.layers)
        if len(os.fsencode(self.overlay_options())) < sc.PAGE_SIZE:
            os.chdir(spec.layers_dir)
            return
        links = os.path.join(spec.scratch_dir, "l")
        os.mkdir(links, 0o700)
        layers_dir = os.path.abspath(spec.layers_dir)
        for index, layer in enumerate(spec.layers):
            os.symlink(os.path.join(layers_dir, layer), os.path.join(links, str(index)))
        os.chdir(links)
        self.lower = ":".join(str(index) for index in range(len(spec.layers)))

    def overlay_options(self) -> str:
        return f"userxattr,lowerdir={self.lower},upperdir={escape(self.upper)},workdir={escape(self.work)}"


def escape(path: str) -> str:
    """A path in an overlayfs or fuse-overlayfs option: their option parsers (and fuse's) split
    on commas, their directory lists on colons; a backslash escapes either (fs/overlayfs/params.c)."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def _overlay(spec: RunSpec, layers: _LayerDirs, root: str) -> Root:
    sc.mount("toolbox", root, "overlay", 0, layers.overlay_options())
    return Root(root, "overlay", True)


def _fuse_overlayfs(spec: RunSpec, layers: _LayerDirs, root: str) -> Root:
    from toolbox.runtime import fuse

    log = os.path.join(spec.scratch_dir, "fuse-overlayfs.log")
    fuse.mount_overlay(layers.lower, escape(layers.upper), escape(layers.work), root, log, FUSE_MOUNT_TIMEOUT)
    return Root(root, "fuse-overlayfs", True)


def _read_only(spec: RunSpec, _layers: _LayerDirs, root: str) -> Root:
    if spec.upper:
        raise OSError(errno.EOPNOTSUPP, "--name needs a writable layer, and neither overlayfs nor "
                                        "fuse-overlayfs can be mounted here")
    sc.mount(flattened_tree(spec), root, None, sc.MS_BIND | sc.MS_REC)
    return Root(root, "read-only", False)


_ASSEMBLERS = {"overlay": _overlay, "fuse-overlayfs": _fuse_overlayfs, "read-only": _read_only}


def _kept_layer_modes(spec: RunSpec) -> tuple[str] | None:
    if not spec.upper:
        return None
    try:
        with open(os.path.join(os.path.dirname(spec.upper), KEPT_MODE_FILE)) as file:
            mode = file.read().strip()
    except FileNotFoundError:
        return None
    if mode not in MODES:
        raise AssembleError(mode, OSError(errno.EINVAL, f"the kept layer records an unknown mode {mode!r}"))
    return (mode,)


def _record_kept_layer_mode(spec: RunSpec, mode: str) -> None:
    if spec.upper:
        path = os.path.join(os.path.dirname(spec.upper), KEPT_MODE_FILE)
        if not os.path.exists(path):
            with open(path, "w") as file:
                file.write(mode + "\n")


def flattened_tree(spec: RunSpec) -> str:
    """The image as one directory, made once per list of layers (merge_layers hard-links the
    layers' files, so it costs directories, not data) and kept in the store's flat/ directory
    (`toolbox prune` removes those whose layers are gone)."""
    import hashlib  # only in this fallback mode

    key = hashlib.sha256("\n".join(spec.layers).encode()).hexdigest()
    flat_dir = os.path.join(spec.flat_root, key)
    path = os.path.join(flat_dir, "tree")
    if os.path.isdir(path):
        return path
    from toolbox.runtime.flatten import merge_layers

    # Named by our PID, so `toolbox prune` can tell a dead maker's leftover from work going on.
    # One that exists is a leftover of an earlier process that had this PID: no one else's.
    staging = f"{flat_dir}.tmp-{os.getpid()}"
    if os.path.lexists(staging):
        _remove_quietly(staging)
    try:
        os.makedirs(os.path.join(staging, "tree"))
        merge_layers([os.path.join(spec.layers_dir, layer) for layer in reversed(spec.layers)],
                     os.path.join(staging, "tree"))
        with open(os.path.join(staging, LAYERS_FILE), "w") as file:
            file.write("\n".join(spec.layers) + "\n")
        try:
            os.rename(staging, flat_dir)
            return path
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    except BaseException:
        _remove_quietly(staging)  # a failed flattening leaves nothing half-made behind
        raise
    _remove_quietly(staging)  # another run made it first
    return path


def _remove_quietly(path: str) -> None:
    """Remove a staging tree without recursion (it may be as deep as a layer), never letting a
    failure to clean up hide the error being reported."""
    from toolbox import fsutil
    from toolbox.errors import ToolboxError

    try:
        fsutil.remove_tree(path)
    except (OSError, ToolboxError):
        pass


def mount_scratch_space(root: Root, home: str) -> None:
    """In read-only mode: WRITABLE_IN_READ_ONLY, then an empty home directory."""
    mount_table(root.path, WRITABLE_IN_READ_ONLY)
    sc.mount("toolbox-home", mountpoint(root.path, home, directory=True), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV,
             "mode=0700")
