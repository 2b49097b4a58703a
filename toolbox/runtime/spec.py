"""The run spec: the one contract between planning and the runtime (what to run, on which
layers, with which mounts, as which user, with which ids and limits). The runtime never sees a
recipe or an image reference, only these values.

Built on every launch: plain classes with __slots__, not dataclasses (~30 ms to import), and
type hints that need no `typing` import (builtin generics, evaluated for free at definition).
"""

import os

# The names of the runtime's steps that callers tell apart (RuntimeStepError.step): doctor's
# probe makes the same steps, so its failures read like a run's, and host.hint_for_run_failure
# chooses a fix by them. Here rather than in container.py, which loads the generated cffi
# module: doctor must load without it, to report that it is broken.
UNSHARE = "unshare user and mount namespaces"
ID_MAPS = "write id maps"
PRIVATE = "make mounts private"
ASSEMBLE = "assemble the root filesystem"  # followed by the mode tried last, in parentheses, when one was
NAMESPACE_STEPS = (UNSHARE, ID_MAPS, PRIVATE)

# (relative path below a bind, READ_ONLY or HIDDEN): a protected place the runtime covers.
Mask = tuple[str, str]
# What subids.plan_maps returns: (newuidmap and newgidmap paths, uid map, gid map), the maps
# as (inside, outside, count) triples.
IdRanges = tuple[tuple[str, str], list[tuple[int, int, int]], list[tuple[int, int, int]]]


class Bind:
    """A host path mounted at a path inside the container (bind mount, recursive).

    `identity`, when given, is the (device, inode) of the object that was judged safe to mount
    (hot/argpaths.py): the runtime opens the host path and refuses it if it is another object
    by then (a symlink swapped in). `masks` cover protected places below it, as (path relative
    to it, "read-only" or "hidden")."""

    __slots__ = ("host", "inside", "read_only", "identity", "masks")

    def __init__(self, host: str, inside: str, read_only: bool = False,
                 identity: tuple[int, int] | None = None, masks: tuple[Mask, ...] = ()) -> None:
        self.host = host
        self.inside = inside
        self.read_only = read_only
        self.identity = identity
        self.masks = masks

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bind):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in Bind.__slots__)

    def __repr__(self) -> str:
        return f"Bind({', '.join(repr(getattr(self, name)) for name in Bind.__slots__)})"


class RunSpec:
    """What to run and how."""

    __slots__ = ("layers_dir", "layers", "scratch_dir", "argv", "env", "cwd", "binds", "tmpfs", "network",
                 "user_name", "home", "read_only", "uid", "gid", "upper", "work", "rootfs", "flat_root",
                 "subid_maps", "pid_namespace", "shm_size")

    def __init__(self, layers_dir: str, layers: list[str], scratch_dir: str, argv: list[str],
                 env: dict[str, str], cwd: str, binds: list[Bind] | tuple[Bind, ...] = (),
                 tmpfs: list[str] | tuple[str, ...] = (), network: str = "host", user_name: str = "user",
                 home: str = "/home/user", read_only: bool = False, uid: int | None = None,
                 gid: int | None = None, upper: str | None = None, work: str | None = None,
                 rootfs: tuple[str, ...] | None = None, flat_root: str | None = None,
                 subid_maps: IdRanges | None = None, pid_namespace: bool = False,
                 shm_size: int | None = None) -> None:
        self.layers_dir = layers_dir  # the directory that holds the layer trees
        self.layers = layers  # layer tree names relative to layers_dir, topmost first
        self.scratch_dir = scratch_dir  # an empty directory to mount the scratch tmpfs on
        self.argv = argv
        self.env = env
        self.cwd = cwd  # working directory inside
        self.binds = binds
        self.tmpfs = tmpfs  # container paths that get a fresh tmpfs
        # "host": the host's network; "none": a namespace with only lo; "private": the same, for a
        # service whose monitor forwards its published ports (forward.py)
        self.network = network
        self.user_name = user_name
        self.home = home
        self.read_only = read_only
        # The ids the tool has inside, mapped to the invoking user's (default: the same ids).
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        # A kept writable layer (--name): overlayfs upper and work directories; None for a
        # scratch layer in a tmpfs that vanishes with the run.
        self.upper = upper
        self.work = work
        # the root filesystem modes to try, in order (rootfs.parse_modes); None: all of them
        self.rootfs = rootfs
        self.flat_root = flat_root  # where read-only mode keeps flattened images
        self.subid_maps = subid_maps  # subids.plan_maps(): full id ranges through newuidmap, or None
        # A pid namespace of its own, the tool its pid 1 (with its own /proc): a service's, whose
        # processes all end with it. Needs a parent outside to fork it (runtime/monitor.py).
        self.pid_namespace = pid_namespace
        self.shm_size = shm_size  # bytes of /dev/shm; None: the kernel's default for a tmpfs


def spec_to_values(spec: RunSpec) -> dict[str, object]:
    """The spec as plain values (marshal writes them): what a service is started with again."""
    values = {name: getattr(spec, name) for name in RunSpec.__slots__}
    values["binds"] = [tuple(getattr(bind, name) for name in Bind.__slots__) for bind in spec.binds]
    values["layers"], values["tmpfs"] = list(spec.layers), list(spec.tmpfs)
    return values


def spec_from_values(values: dict[str, object]) -> RunSpec:
    fields = dict(values)
    fields["binds"] = [Bind(*bind) for bind in fields["binds"]]
    return RunSpec(**fields)


class User:
    """Who the tool runs as inside. Outside it is always the invoking user: the single id map
    sends `uid`/`gid` to the user's own ids, so files written keep the user's ownership."""

    __slots__ = ("uid", "gid", "name", "home")

    def __init__(self, uid: int, gid: int, name: str, home: str) -> None:
        self.uid = uid
        self.gid = gid
        self.name = name
        self.home = home


def own_user() -> User:
    """Who runs inside without --user: you, by your own ids and name."""
    name = user_name()
    return User(os.getuid(), os.getgid(), name, f"/home/{name}")


def user_name() -> str:
    """Your login name: $USER or $LOGNAME when it is a usable name, else the password database's."""
    name = os.environ.get("USER") or os.environ.get("LOGNAME")
    if name and ":" not in name and "\n" not in name:
        return name
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "user"
