"""The RunSpec for `toolbox run`: the image's run plan (hot/plans.py) and the options
(runargs.py) made into what the runtime takes: the layers, the command line, the environment,
who runs inside and the binds (the current directory, -v, a recipe's mounts, the paths named in
the arguments: argpaths.py). Standard library only: the launch path; options.py holds what only
some options need.
"""

import os

from toolbox.errors import ToolboxError, UsageError
from toolbox.hot.runargs import USAGE
from toolbox.runtime.container import DEFAULT_PATH
from toolbox.runtime.spec import Bind, RunSpec, own_user

PASSED_FROM_HOST = ("TERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "COLORTERM", "TZ")


def make_spec(layout, plan, options, container=None, notes=None):
    """The RunSpec for this run; `notes` receives what the user should be told (a path not
    mounted, and why)."""
    notes = [] if notes is None else notes
    layers = _runoptions().container_layers(layout, container) if container else plan["layers"]
    if options.user is None:
        user = own_user()
    else:
        options_module = _runoptions()
        lookup = options_module.image_lookup_in(layout.layers_dir, layers, plan["reference"])
        user = options_module.user_inside(options.user, lookup)
    binds = []
    host_cwd = os.getcwd()
    home = os.environ.get("HOME") or os.path.expanduser("~")
    places = protected_places(layout, home)
    cwd_bind, cwd_inside = (current_directory_bind(layout, host_cwd, home, places, notes)
                            if options.mount_cwd else (None, None))
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
        shm_size=shm_bytes(options.shm_size),
    )


def shm_bytes(text):
    if text is None:
        return None
    from toolbox.runtime.cgroups import parse_memory

    return parse_memory(text, "--shm-size")


def rootfs_modes():
    from toolbox.runtime.rootfs import parse_modes

    try:
        return parse_modes(os.environ.get("TOOLBOX_ROOTFS"))
    except ValueError as err:
        raise ToolboxError(f"TOOLBOX_ROOTFS: {err}") from None


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
        note_once(layout, host_cwd, notes, f"not mounting the current directory: {judged[1]}; the tool works "
                                           f"in the image's {host_cwd}")
        return None, host_cwd
    if judged[0] == "hidden":
        notes.append(f"not mounting the current directory: {judged[1]}; the tool starts in the image's "
                     "working directory")
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


def recipe_binds(mounts, home_inside):
    """A recipe's mounts: `~` is the user's home outside and the tool's home inside; a source
    that does not exist (no ~/.aws yet) is skipped."""
    binds = []
    for source, target, read_only in mounts:
        host = os.path.expanduser(source)
        if os.path.exists(host):
            binds.append(Bind(host,
                              home_inside.rstrip("/") + target[1:] if target.startswith("~") else target,
                              read_only))
    return binds


def command_line(plan, options):
    """Docker's rules: --entrypoint replaces the entrypoint and drops the image's Cmd; arguments
    replace Cmd. A recipe's command and default command take the places of the image's
    Entrypoint and Cmd (both of them, when it has either): `toolbox run ubuntu` runs bash,
    `toolbox run ubuntu ls /` runs ls, as `docker run` does."""
    if options.entrypoint is not None:
        entrypoint = [options.entrypoint] if options.entrypoint else []
        cmd = options.command
    elif options.tool_command or options.tool_default_command:
        entrypoint, cmd = (list(options.tool_command or []),
                           options.command or list(options.tool_default_command or []))
    else:
        entrypoint = plan["entrypoint"] or []
        cmd = options.command or (plan["cmd"] or [])
    argv = entrypoint + cmd
    if not argv:
        raise ToolboxError(f"{plan['reference']} has no entrypoint or command, and none was given",
                           hint=USAGE)
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


def _runoptions():
    from toolbox.hot import options as runoptions  # only for the options that need it

    return runoptions
