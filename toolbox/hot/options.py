"""The parts of `toolbox run` only some options need: -v (host paths and named volumes),
--user looked up in the image, --env-file, --subids, --name containers, resource limits.
The launch (launch.py, runspec.py) loads this only when one of them is given, so the common
launch stays small."""

import os

from toolbox.errors import ImageFileError, ToolboxError, UsageError
from toolbox.hot.runargs import container_path
from toolbox.runtime.imagefs import ACCOUNTS_LIMIT, read_image_file
from toolbox.runtime.spec import Bind, User, own_user, user_name


def volume_binds(layout, specs, cwd):
    """-v values as binds. Docker's reading: a source that looks like a path is a host path; a
    bare name is a named volume, created on first use."""
    binds = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[0] or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise UsageError(f"-v {spec!r}: expected SRC:DEST or SRC:DEST:ro")
        source, inside = parts[0], container_path(parts[1], "-v")
        read_only = len(parts) == 3 and parts[2] == "ro"
        if source.startswith(("/", "./", "../", "~")) or source in (".", ".."):
            host = os.path.abspath(os.path.join(cwd, os.path.expanduser(source)))
            if not os.path.exists(host):
                raise ToolboxError(f"-v {spec}: {host} does not exist",
                                   hint="create it first; toolbox does not create host paths")
        else:
            host = named_volume(layout, source)
        binds.append(Bind(host, inside, read_only))  # explicit: not judged (argpaths)
    return binds


def named_volume(layout, name):
    from toolbox.runtime.containers import check_name  # the same rule for both kinds of name

    path = layout.volume_data(check_name(name, "volume"))
    os.makedirs(path, exist_ok=True)
    return path


def env_file_entries(path):
    """docker's --env-file format: KEY=VALUE or KEY per line, taken literally (no quotes, no
    expansion); blank lines and lines starting with # are skipped."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8", errors="surrogateescape") as file:
            lines = file.read().splitlines()
    except OSError as err:
        raise ToolboxError(f"--env-file {path}: {err.strerror}") from None
    return [line.lstrip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def user_inside(requested, image_lookup):
    """--user: absent means the user's own ids and name; `root` or 0 a fake root; UID[:GID];
    or NAME[:GROUP] looked up in the image's /etc/passwd and /etc/group. A name that must be
    looked up fails with the reason when the image's file cannot be read (imagefs refuses a
    FIFO, a device, a directory, a file past ACCOUNTS_LIMIT, a symlink loop); for a numeric UID
    the entry only brings a name and a home, so such a file counts as no entry."""
    if requested is None:
        return own_user()
    own_name = user_name()
    who, _, group = requested.partition(":")
    if who.isdigit():
        try:
            entry = image_lookup("passwd", who)
        except ImageFileError:
            entry = None
        uid = int(who)
    else:
        entry = _looked_up(requested, image_lookup, "passwd", who) if who else None
        if entry is None:
            raise ToolboxError(f"--user {requested}: the image has no user named {who!r}",
                               hint="use a numeric UID[:GID]")
        uid = int(entry[2])
    if group.isdigit():
        gid = int(group)
    elif group:
        group_entry = _looked_up(requested, image_lookup, "group", group)
        if group_entry is None:
            raise ToolboxError(f"--user {requested}: the image has no group named {group!r}",
                               hint="use a numeric UID:GID")
        gid = int(group_entry[2])
    else:
        gid = int(entry[3]) if entry is not None else uid
    if uid >= 2**32 - 1 or gid >= 2**32 - 1:
        raise UsageError(f"--user {requested}: ids must be below 4294967295")
    name = entry[0] if entry is not None else ("root" if uid == 0 else own_name)
    home = (entry[5] if entry is not None and entry[5].startswith("/")
            else ("/root" if uid == 0 else f"/home/{name}"))
    return User(uid, gid, name, home)


def _looked_up(requested, image_lookup, database, key):
    try:
        return image_lookup(database, key)
    except ImageFileError as err:
        raise ToolboxError(f"--user {requested}: {err}",
                           hint="use numeric ids (UID[:GID]): they need no lookup") from None


def image_lookup_in(layers_dir, layers, image="the image"):
    """A lookup of NAME or ID in the image's /etc/passwd or /etc/group (`database`): the ids
    must be known before the id maps are written, so before anything is mounted. The file is
    read from the layer trees as the container will see it (imagefs: overlayfs's rules,
    symlinks resolved inside the image, a regular file of at most ACCOUNTS_LIMIT bytes, never a
    host file); ImageFileError, naming the file and `image`, when it cannot be."""
    layer_roots = [os.path.join(layers_dir, layer) for layer in layers]

    def lookup(database, key):
        data = read_image_file(layer_roots, f"/etc/{database}", ACCOUNTS_LIMIT, image)
        return account_entry(data, database, key)

    return lookup


def account_entry(data, database, key):
    """The fields of the line for NAME or ID `key` in /etc/passwd or /etc/group (`database`)
    whose content is `data` (None: no file), or None."""
    if data is None:
        return None
    minimum_fields = 7 if database == "passwd" else 3
    for line in data.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= minimum_fields and key in (fields[0], fields[2]) and fields[2].isdigit():
            if database == "passwd" and not fields[3].isdigit():
                continue
            return fields
    return None


def subid_maps(options, user):
    if not options.subids:
        return None
    from toolbox.runtime.subids import plan_maps

    return plan_maps(user_name(), user.uid, user.gid)


def container_layers(layout, container):
    from toolbox.runtime.containers import layers_of

    layers = layers_of(container.record)
    if not all(os.path.isdir(os.path.join(layout.layers_dir, layer)) for layer in layers):
        raise ToolboxError(
            f"the layers container {container.name!r} was made on are no longer stored",
            hint=f"remove it and start afresh: toolbox rm {container.name}",
        )
    return layers


def claim_container(layout, options, plan):
    if options.name is None:
        return None
    from toolbox.runtime.containers import claim

    return claim(layout, options.name, options.image, plan)


def apply_limits(requested):
    if not requested:
        return
    from toolbox.runtime import cgroups  # only when limits are asked for

    parse = {"memory": cgroups.parse_memory, "cpus": cgroups.parse_cpus, "pids": cgroups.parse_pids}
    cgroups.enter_limited_cgroup({key: parse[key](value) for key, value in requested.items()})
