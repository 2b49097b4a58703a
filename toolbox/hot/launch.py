"""`toolbox run`: the launch path. Light by design — standard library and the generated cffi
module only, no typer, requests, json, dataclasses or platformdirs — because it runs before every
tool. It parses the options, reads the image's run plan (made by the cold tier on first use),
builds a RunSpec and hands this process over to the runtime, which becomes the tool.

Exit status: the tool's own; 125 when toolbox fails; 126 when the command cannot be executed;
127 when it is not found in the image.
"""

import os
import sys

from toolbox.errors import EXIT_CANNOT_RUN, EXIT_NOT_FOUND, EXIT_TOOLBOX_FAILED, ToolboxError, from_os_error
from toolbox.runtime.inuse import claim as claim_layers
from toolbox.layout import Layout
from toolbox.hot.plans import read_current_plan
from toolbox.runtime.container import DEFAULT_PATH, CommandNotExecutable, CommandNotFound, RuntimeStepError, exec_container
from toolbox.runtime.spec import Bind, RunSpec

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
  --network host|none     the host's network (default), or only a private loopback
  --memory SIZE, --cpus N, --pids-limit N
                          resource limits (need a delegated cgroup v2; refused otherwise)
  -u, --user USER         who runs inside: root, UID[:GID] or a name from the image;
                          always you outside (default: your own uid and gid)
  --subids                also map your subordinate ids (newuidmap), for tools that
                          switch users or chown (package managers)
  --name NAME             keep the writable layer between runs (`toolbox rm NAME`)
  --pull missing|always|never
                          pull the image when it is not stored (default), every time, or never
  --platform OS/ARCH      the image's platform (default: this machine's)
  --frozen                fail when toolbox.lock does not match toolbox.toml, instead of
                          locking anew (also when CI=true)
  --no-cwd                do not mount the current directory
  --no-mount-args         do not mount host paths named in the command's arguments
  --read-only             make the image's root read-only
  -i, -t, --rm            accepted, for muscle memory: stdin and the terminal are always the tool's
  -d, -p                  refused, saying what toolbox does instead (foreground; the host's network)
"""
PASSED_FROM_HOST = ("TERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "COLORTERM", "TZ")
# Set by tests to check what the launch path imported, just before it execs.
MODULES_REPORT_ENV = "TOOLBOX_REPORT_MODULES"


class UsageError(Exception):
    pass


class RunOptions:
    __slots__ = ("image", "command", "env", "env_files", "workdir", "entrypoint", "mount_cwd", "mount_args", "read_only", "volumes", "tmpfs",
                 "network", "limits", "user", "name", "pull", "platform", "subids", "frozen", "tool_command", "tool_default_command",
                 "tool_mounts")

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
        self.tool_command = None  # a recipe's command: replaces the image's entrypoint and cmd
        self.tool_default_command = None  # a recipe's command when no arguments are given
        self.tool_mounts = []  # a recipe's (host source, target, read only), `~` unexpanded
        self.workdir = None
        self.entrypoint = None
        self.mount_cwd = True
        self.read_only = False
        self.volumes = []
        self.tmpfs = []
        self.network = None  # --network, else the recipe's, else "host"
        self.limits = {}


_FLAGS = {"-i": None, "-t": None, "-it": None, "-ti": None, "--interactive": None, "--tty": None, "--rm": None,
          "--no-cwd": "mount_cwd", "--no-mount-args": "mount_args", "--read-only": "read_only", "--subids": "subids",
          "--frozen": "frozen"}
# Docker's options for a daemon's containers: what toolbox does instead (UsageError's text).
_DETACH = "toolbox runs the tool in the foreground, as an installed program: to put it in the background, end the command with & as for any program"
_PUBLISH = ("the tool uses the host's network: a port it listens on is already reachable on the host, under the same number "
            "(make the tool listen on the one you want); with --network none nothing is")
_DOCKER_ONLY = {"-d": _DETACH, "--detach": _DETACH, "-p": _PUBLISH, "--publish": _PUBLISH, "-P": _PUBLISH, "--publish-all": _PUBLISH}
_WITH_VALUE = {"-e": "env", "--env": "env", "-w": "workdir", "--workdir": "workdir", "--entrypoint": "entrypoint",
               "-v": "volumes", "--volume": "volumes", "--tmpfs": "tmpfs", "--network": "network", "--net": "network",
               "--memory": "memory", "-m": "memory", "--cpus": "cpus", "--pids-limit": "pids", "--env-file": "env_files",
               "-u": "user", "--user": "user", "--name": "name", "--pull": "pull", "--platform": "platform"}
_LIMITS = ("memory", "cpus", "pids")
_LISTS = ("env", "env_files", "volumes", "tmpfs")
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
        if name in _FLAGS:
            if _FLAGS[name] in ("read_only", "subids", "frozen"):
                setattr(options, _FLAGS[name], True)
            elif _FLAGS[name]:  # the --no-* flags
                setattr(options, _FLAGS[name], False)
            continue
        if name in _WITH_VALUE:
            if not has_value:
                if not args:
                    raise UsageError(f"option {name} needs a value")
                value = args.pop(0)
            attribute = _WITH_VALUE[name]
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
    if options.pull not in PULL_POLICIES:
        raise UsageError(f"--pull {options.pull!r}: use one of {', '.join(PULL_POLICIES)}")
    for path in options.tmpfs:
        _container_path(path, "--tmpfs")
    return options


def _add_mount(options, text):
    """Docker's --mount type=bind|volume|tmpfs,source=...,target=...[,readonly]: the same as
    -v SRC:DEST[:ro] (a host path or a named volume) or --tmpfs DEST."""
    fields = {}
    for part in text.split(","):
        key, has_value, value = part.partition("=")
        key = {"src": "source", "dst": "target", "destination": "target", "ro": "readonly"}.get(key.strip(), key.strip())
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


def _container_path(path, option):
    if not path.startswith("/") or path == "/" or "/../" in path + "/":
        raise UsageError(f"{option}: {path!r} must be an absolute path inside the container, not /")
    return path


def recipe_binds(mounts, home_inside):
    """A recipe's mounts: `~` is the user's home outside and the tool's home inside; a source
    that does not exist (no ~/.aws yet) is skipped."""
    binds = []
    for source, target, read_only in mounts:
        host = os.path.expanduser(source)
        if os.path.exists(host):
            binds.append(Bind(host, home_inside.rstrip("/") + target[1:] if target.startswith("~") else target, read_only))
    return binds


def tool_settings(layout, text, frozen, pull="missing", platform=None):
    """What the recipe and the pins say of `toolbox run TEXT`: from the tool plan when it is
    current, else from the cold tier (which writes the plan). In a terminal, the cold tier may
    ask whether to trust a project's recipes."""
    from toolbox.hot.plans import pins_file, read_tool_plan
    from toolbox.prompt import frozen_requested

    settings = read_tool_plan(layout, pins_file(layout, os.getcwd()), text)
    if settings is None:
        from toolbox.prompt import confirm_on_terminal, tell, warn
        from toolbox.ops.tools import run_settings

        settings = run_settings(text, frozen_requested(os.environ, frozen), pull=pull, platform=platform,
                                confirm=confirm_on_terminal, warn=warn, tell=tell)
    return settings


def apply_tool(options, settings):
    """`toolbox run TOOL`: the image and the recipe's command, environment, mounts, network."""
    options.image = settings["image"]
    options.tool_command = settings["command"]
    options.tool_default_command = settings.get("default_command")  # absent from plans of older toolboxes
    passed = [name for name in sorted(os.environ) if any(_matches(name, p) for p in settings["pass_env"])]
    options.env = settings["env"] + passed + options.env  # -e wins over the recipe
    options.tool_mounts = settings["mounts"]
    options.network = options.network or settings["network"]


def _matches(name, pattern):
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def is_tool(text):
    """A bare name, maybe with @VERSION: no registry, path, tag or digest."""
    return "/" not in text and ":" not in text


def load_plan(layout, options):
    """The image's run plan: read from the cache, or made by the cold tier when missing or stale,
    or when --pull or --platform ask for more than the cache can say."""
    if options.pull == "missing" and options.platform is None:
        plan = read_current_plan(layout.run_plan_path(options.image))
        if plan is not None:
            return plan
    from toolbox.ops.prepare import ensure_plan  # the cold tier, once per image and spelling

    return ensure_plan(layout, options.image, options.pull, options.platform)


def command_line(plan, options):
    """Docker's rules: --entrypoint replaces the entrypoint and drops the image's Cmd; arguments
    replace Cmd. A recipe's command and default command take the places of the image's
    Entrypoint and Cmd (both of them, when it has either): `toolbox run ubuntu` runs bash,
    `toolbox run ubuntu ls /` runs ls, as `docker run` does."""
    if options.entrypoint is not None:
        entrypoint = [options.entrypoint] if options.entrypoint else []
        cmd = options.command
    elif options.tool_command or options.tool_default_command:
        entrypoint, cmd = list(options.tool_command or []), options.command or list(options.tool_default_command or [])
    else:
        entrypoint = plan["entrypoint"] or []
        cmd = options.command or (plan["cmd"] or [])
    argv = entrypoint + cmd
    if not argv:
        raise ToolboxError(f"{plan['reference']} has no entrypoint or command, and none was given", hint=USAGE)
    return argv


def environment(plan, options, user):
    env = {}
    for entry in plan["env"]:
        key, _, value = entry.partition("=")
        env[key] = value
    env.setdefault("PATH", DEFAULT_PATH)
    for name in PASSED_FROM_HOST:
        if name in os.environ:
            env[name] = os.environ[name]
    env["HOME"] = user.home
    env["USER"] = user.name
    from_files = []
    if options.env_files:
        from toolbox.hot.options import env_file_entries

        from_files = [entry for path in options.env_files for entry in env_file_entries(path)]
    for item in from_files + options.env:
        key, has_value, value = item.partition("=")
        if not key or "\0" in item:
            raise UsageError(f"invalid environment entry {item!r}: expected KEY or KEY=VALUE")
        if has_value:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


class User:
    """Who the tool runs as inside. Outside it is always the invoking user: the single id map
    sends `uid`/`gid` to the user's own ids, so files written keep the user's ownership."""

    __slots__ = ("uid", "gid", "name", "home")

    def __init__(self, uid, gid, name, home):
        self.uid = uid
        self.gid = gid
        self.name = name
        self.home = home


def own_user():
    """Who runs inside without --user: you, by your own ids and name."""
    name = user_name()
    return User(os.getuid(), os.getgid(), name, f"/home/{name}")


def _runoptions():
    from toolbox.hot import options as runoptions  # only for the options that need it

    return runoptions


def user_name():
    name = os.environ.get("USER") or os.environ.get("LOGNAME")
    if name and ":" not in name and "\n" not in name:
        return name
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "user"


def current_directory_bind(layout, host_cwd, home, places, notes):
    """(the bind of the current directory or None, the working directory inside or None for the
    image's), judged as argument paths are (argpaths): no bind where
    it is the image's own place (/usr, /etc, ...: the tool then works in the image's directory of
    that path; said once per directory) or lies in your credentials; read-only in toolbox's own
    directories; protected places below it covered. Bound only if it is still the directory this
    process is in (device and inode checked when the mount is made), so a directory renamed away
    and replaced by a symlink to your home in between is refused instead of mounted."""
    from toolbox.hot.argpaths import current_directory

    judged = current_directory(host_cwd, home, places)
    if judged[0] == "image":
        note_once(layout, host_cwd, notes, f"not mounting the current directory: {judged[1]}; the tool works in the image's {host_cwd}")
        return None, host_cwd
    if judged[0] == "hidden":
        notes.append(f"not mounting the current directory: {judged[1]}; the tool starts in the image's working directory")
        return None, None
    st = os.stat(".")
    return Bind(host_cwd, host_cwd, judged[1], (st.st_dev, st.st_ino), judged[2]), host_cwd


def note_once(layout, key, notes, message):
    """Add `message` to `notes` unless it was said before for `key` (a marker in the store)."""
    import zlib

    marker = os.path.join(layout.store_dir, "said", f"{zlib.crc32(os.fsencode(key + chr(0) + message)):08x}")
    if os.path.exists(marker):
        return
    notes.append(message)
    try:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError:
        pass  # said again next time: no harm


def protected_places(layout, home):
    from toolbox.hot.argpaths import protected_places as places  # stdlib only, like this module

    return places(layout, home)


def make_spec(layout, plan, options, container=None, notes=None):
    """The RunSpec for this run; `notes` receives what the user should be told (a path not
    mounted, and why)."""
    notes = [] if notes is None else notes
    layers = _runoptions().container_layers(layout, container) if container else plan["layers"]
    if options.user is None:
        user = own_user()
    else:
        user = _runoptions().user_inside(options.user, _runoptions().image_lookup_in(layout.layers_dir, layers, plan["reference"]))
    binds = []
    host_cwd = os.getcwd()
    home = os.environ.get("HOME") or os.path.expanduser("~")
    places = protected_places(layout, home)
    cwd_bind, cwd_inside = current_directory_bind(layout, host_cwd, home, places, notes) if options.mount_cwd else (None, None)
    cwd_mounted = cwd_bind is not None
    if cwd_mounted:
        binds.append(cwd_bind)
    workdir = options.workdir or cwd_inside or plan["working_dir"] or "/"
    if options.volumes:
        binds += _runoptions().volume_binds(layout, options.volumes, host_cwd)
    binds += recipe_binds(options.tool_mounts, user.home)
    if options.mount_args and any("/" in arg for arg in options.command):  # argpaths looks at no other
        from toolbox.hot.argpaths import argument_binds

        visible = [bind.inside for bind in binds] + list(options.tmpfs)
        relative_ok = cwd_mounted and workdir == host_cwd
        binds += argument_binds(options.command, host_cwd, home, visible, relative_ok, places, notes)
    os.makedirs(layout.scratch_mountpoint, exist_ok=True)
    return RunSpec(
        layers_dir=layout.layers_dir,
        layers=layers,
        scratch_dir=layout.scratch_mountpoint,
        argv=command_line(plan, options),
        env=environment(plan, options, user),
        cwd=workdir,
        binds=binds,
        tmpfs=options.tmpfs,
        network=options.network or "host",
        user_name=user.name,
        home=user.home,
        read_only=options.read_only,
        uid=user.uid,
        gid=user.gid,
        upper=container.upper if container else None,
        work=container.work if container else None,
        rootfs=rootfs_modes(),
        flat_root=layout.flat_dir,
        subid_maps=_runoptions().subid_maps(options, user) if options.subids else None,
    )


def rootfs_modes():
    from toolbox.runtime.rootfs import parse_modes

    try:
        return parse_modes(os.environ.get("TOOLBOX_ROOTFS"))
    except ValueError as err:
        raise ToolboxError(f"TOOLBOX_ROOTFS: {err}") from None


def _report_modules():
    path = os.environ.get(MODULES_REPORT_ENV)
    if path:
        with open(path, "w") as file:
            file.write("\n".join(sorted(sys.modules)))


def _fail(message, hint=None, code=EXIT_TOOLBOX_FAILED):
    print(f"toolbox: error: {message}", file=sys.stderr)
    if hint:
        print(f"toolbox: hint: {hint}", file=sys.stderr)
    return code


def main(argv, layout=None, settings=None):
    """`settings`: a tool's, already looked up (shims)."""
    try:
        options = parse_args(argv)
        layout = layout or Layout.from_env()
        if settings is not None or is_tool(options.image):
            apply_tool(options, settings or tool_settings(layout, options.image, options.frozen, options.pull, options.platform))
        plan = load_plan(layout, options)
        container = None
        if options.name is not None:
            from toolbox.hot.options import claim_container

            container = claim_container(layout, options, plan)
        notes = []
        spec = make_spec(layout, plan, options, container, notes)
        for note in notes:
            print(f"toolbox: {note}", file=sys.stderr)
        claim_layers(layout, spec.layers)  # held by the tool until it exits
        if options.limits:
            from toolbox.hot.options import apply_limits

            apply_limits(options.limits)
        _report_modules()
        exec_container(spec)
    except UsageError as err:
        if err.args[0] is None:
            print(HELP)
            return 0
        return _fail(str(err), USAGE)
    except ToolboxError as err:
        return _fail(err.message, err.hint, err.exit_code)
    except RuntimeStepError as err:
        return _fail(f"cannot start the container: {err}", _runtime_hint(err))
    except CommandNotFound as err:
        return _fail(f"command not found in the image: {err}", "check the command name, or the image's PATH", EXIT_NOT_FOUND)
    except CommandNotExecutable as err:
        return _fail(f"cannot execute {err}", None, EXIT_CANNOT_RUN)
    except KeyboardInterrupt:
        from toolbox.runtime.signals import die_of_interrupt

        return die_of_interrupt()
    except OSError as err:  # a file toolbox needed and could not use (or the current directory is gone)
        error = from_os_error(err, layout)
        return _fail(error.message, error.hint)
    except Exception as err:  # noqa: BLE001 — a bug: still one line, and toolbox's status
        return _fail(f"unexpected {type(err).__name__}: {err}", "this is a bug in toolbox; please report it with the command that failed")
    return EXIT_TOOLBOX_FAILED  # not reached: exec_container does not return


def _runtime_hint(err):
    try:
        from toolbox.ops.doctor import hint_for_run_failure  # a failure path: the checks may probe
    except ImportError:
        return None  # failed after pivot_root: the host's files, toolbox's among them, are gone
    return hint_for_run_failure(err.step, err.errno)
