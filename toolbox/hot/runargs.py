"""`toolbox run`'s command line, read as docker reads its own: the options into RunOptions,
then the image (or tool) and the command. Only the words are read here; what they name (files,
volumes, users in the image) is looked at when the RunSpec is made (runspec.py, options.py).
Standard library only: the launch path.
"""

from toolbox.errors import UsageError

USAGE = "usage: toolbox run [OPTIONS] (TOOL[@VERSION] | IMAGE) [COMMAND [ARG...]]"
HELP = USAGE + """

Run a tool (a recipe's name, at the version this project pins) or a command in an image, as
you, in the current directory. A bare name is a tool; an image has a registry, a path, a tag
or a digest (alpine:3.20, library/alpine).

Options:
  -e, --env KEY[=VALUE]   set a variable (KEY alone passes the host's value)
  --env-file FILE         read KEY=VALUE (or KEY) lines; -e wins over it
  -w, --workdir DIR       working directory inside (default: the current directory)
  --entrypoint CMD        replace the image's entrypoint
  -v, --volume SRC:DEST[:ro]
                          mount a host path (absolute, ./relative or ~) or a named volume
                          (kept in toolbox's data directory) at DEST
  --mount type=bind|volume|tmpfs,source=SRC,target=DEST[,readonly]
                          the same, as Docker writes it
  --tmpfs DEST            a fresh tmpfs at DEST
  --shm-size SIZE         the size of /dev/shm (64m, 1g; a service's default is 64m)
  --network host|none     the host's network (default), or only a private loopback
  --memory SIZE, --cpus N, --pids-limit N
                          resource limits (need a delegated cgroup v2; refused otherwise)
  -u, --user USER         who runs inside: root, UID[:GID] or a name from the image;
                          always you outside (default: your own uid and gid)
  --subids                also map your subordinate ids (newuidmap), for tools that
                          switch users or chown (package managers)
  --name NAME             keep the writable layer between runs (`toolbox rm NAME`)
  -d, --detach            run it in the background, as a service: prints its name
                          (generated without --name); `toolbox ps`, `logs`, `stop`, `start`
  --rm                    with -d: remove the container when the service exits
  --pull missing|always|never
                          pull the image when it is not stored (default), every time, or never
  --platform OS/ARCH      the image's platform (default: this machine's)
  --frozen                fail when toolbox.lock does not match toolbox.toml, instead of
                          locking anew (also when CI=true)
  --no-cwd                do not mount the current directory
  --no-mount-args         do not mount host paths named in the command's arguments
  --read-only             make the image's root read-only
  -i, -t                  accepted, for muscle memory: stdin and the terminal are always the tool's
  -p, --publish [IP:]HOST:CONTAINER[/tcp|/udp]
                          with -d: publish a port of the service on the host (IP: 127.0.0.1
                          unless given); the service then has a network of its own
"""


class RunOptions:
    """What the command line asks for; a tool's settings (launch.apply_tool) fill in the rest."""

    __slots__ = ("image", "command", "env", "env_files", "workdir", "entrypoint", "mount_cwd", "mount_args",
                 "read_only", "volumes", "tmpfs", "network", "limits", "user", "name", "pull", "platform",
                 "subids", "frozen", "tool_command", "tool_default_command", "tool_mounts", "detach",
                 "remove", "ports", "shm_size", "tool_service")

    def __init__(self):
        self.image = None
        self.command = []
        self.env = []
        self.env_files = []
        self.mount_args = True
        self.user = None
        self.name = None
        self.pull = "missing"
        self.platform = None
        self.subids = False
        self.frozen = False
        self.detach = False  # -d: a service, under a monitor (runtime/monitor.py)
        self.ports = []  # -p values, for a service
        self.shm_size = None  # --shm-size, as typed
        self.remove = False  # --rm: with -d, the container goes when the service ends
        self.tool_command = None  # a recipe's command: replaces the image's entrypoint and cmd
        self.tool_default_command = None  # a recipe's command when no arguments are given
        self.tool_mounts = []  # a recipe's (host source, target, read only), `~` unexpanded
        self.tool_service = None  # a server recipe's [service] (recipes.ServiceSpec.values())
        self.workdir = None
        self.entrypoint = None
        self.mount_cwd = True
        self.read_only = False
        self.volumes = []
        self.tmpfs = []
        self.network = None  # --network, else the recipe's, else "host"
        self.limits = {}


FLAGS = {"--interactive": None, "--tty": None, "--rm": "remove", "--detach": "detach",
         "--no-cwd": "mount_cwd", "--no-mount-args": "mount_args", "--read-only": "read_only",
         "--subids": "subids", "--frozen": "frozen"}
_SET = ("read_only", "subids", "frozen", "detach", "remove")
# Docker's options for a daemon's containers: what toolbox does instead (UsageError's text).
_PUBLISH = ("a tool run in the foreground uses the host's network: a port it listens on is already reachable "
            "on the host, under the same number (make the tool listen on the one you want)")
_PUBLISH_ALL = "name each port to publish: -p HOST:CONTAINER (with -d)"
_DOCKER_ONLY = {"-P": _PUBLISH_ALL, "--publish-all": _PUBLISH_ALL}
WITH_VALUE = {"-e": "env", "--env": "env", "-w": "workdir", "--workdir": "workdir",
              "--entrypoint": "entrypoint", "-v": "volumes", "--volume": "volumes", "--tmpfs": "tmpfs",
              "--network": "network", "--net": "network", "--memory": "memory", "-m": "memory",
              "--cpus": "cpus", "--pids-limit": "pids", "--env-file": "env_files", "-u": "user",
              "--user": "user", "--name": "name", "--pull": "pull", "--platform": "platform", "-p": "ports",
              "--publish": "ports", "--shm-size": "shm_size"}
_LIMITS = ("memory", "cpus", "pids")
_LISTS = ("env", "env_files", "volumes", "tmpfs", "ports")
NETWORKS = ("host", "none")
PULL_POLICIES = ("missing", "always", "never")


def parse_args(argv):
    options = RunOptions()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            options.image = arg
            break
        name, has_value, value = arg.partition("=") if arg.startswith("--") else (arg, False, None)
        if name in FLAGS:
            if FLAGS[name] in _SET:
                setattr(options, FLAGS[name], True)
            elif FLAGS[name]:  # the --no-* flags
                setattr(options, FLAGS[name], False)
            continue
        if len(arg) > 1 and arg[0] == "-" and set(arg[1:]) <= set("dit"):  # -d, -i, -t, -it, -dit...
            options.detach = options.detach or "d" in arg
            continue
        if name in WITH_VALUE:
            if not has_value:
                if not args:
                    raise UsageError(f"option {name} needs a value")
                value = args.pop(0)
            attribute = WITH_VALUE[name]
            if attribute in _LISTS:
                getattr(options, attribute).append(value)
            elif attribute in _LIMITS:
                options.limits[attribute] = value
            else:
                setattr(options, attribute, value)
            continue
        if name == "--mount":
            if not has_value:
                if not args:
                    raise UsageError("option --mount needs a value")
                value = args.pop(0)
            _add_mount(options, value)
            continue
        if arg in ("-h", "--help"):
            raise UsageError(None)
        if name in _DOCKER_ONLY:
            raise UsageError(f"{name}: {_DOCKER_ONLY[name]}")
        raise UsageError(f"unknown option {arg}")
    if options.image is None:
        if not args:
            raise UsageError("no image given")
        options.image = args.pop(0)
    options.command = args
    if options.network is not None and options.network not in NETWORKS:
        raise UsageError(f"--network {options.network!r}: use one of {', '.join(NETWORKS)}")
    if options.ports and not options.detach:
        raise UsageError(f"-p: {_PUBLISH}; -p publishes the ports of a service (-d)")
    if options.ports and options.network is not None:
        raise UsageError(f"-p with --network {options.network}: published ports need a network of the "
                         "service's own")
    if options.pull not in PULL_POLICIES:
        raise UsageError(f"--pull {options.pull!r}: use one of {', '.join(PULL_POLICIES)}")
    for path in options.tmpfs:
        container_path(path, "--tmpfs")
    return options


def _add_mount(options, text):
    """Docker's --mount type=bind|volume|tmpfs,source=...,target=...[,readonly]: the same as
    -v SRC:DEST[:ro] (a host path or a named volume) or --tmpfs DEST."""
    fields = {}
    for part in text.split(","):
        key, has_value, value = part.partition("=")
        key = key.strip()
        key = {"src": "source", "dst": "target", "destination": "target", "ro": "readonly"}.get(key, key)
        if key not in ("type", "source", "target", "readonly") or (not has_value and key != "readonly"):
            raise UsageError(f"--mount {text!r}: {part!r} is not one of type=, source=, target=, readonly")
        fields[key] = value if has_value else "true"
    kind = fields.get("type", "volume")
    target = fields.get("target")
    if not target:
        raise UsageError(f"--mount {text!r}: target= is required")
    read_only = fields.get("readonly", "false").lower() in ("true", "1", "")
    if kind == "tmpfs":
        options.tmpfs.append(target)
    elif kind in ("bind", "volume") and fields.get("source"):
        source = fields["source"]
        if kind == "bind" and not source.startswith(("/", "./", "../", "~")) and source not in (".", ".."):
            source = "./" + source  # a bind's source is a path, whatever it looks like
        options.volumes.append(f"{source}:{target}{':ro' if read_only else ''}")
    else:
        raise UsageError(f"--mount {text!r}: use type=bind or type=volume with source=, or type=tmpfs")


def container_path(path, option):
    """`path` as given to `option` (--tmpfs, -v), when it can be a mount point inside."""
    if not path.startswith("/") or path == "/" or "/../" in path + "/":
        raise UsageError(f"{option}: {path!r} must be an absolute path inside the container, not /")
    return path
