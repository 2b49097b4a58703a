"""Host paths named in a tool's arguments, mounted at the same path inside so that
`toolbox run IMAGE jq . ../other/a.json` or `sort -o /tmp/out.txt` behave as on the host.

The rules, chosen to be predictable and to expose no more than the arguments name:
- An argument is a path candidate when it contains a `/` (`../x.json`, `/tmp/y`, `sub/z`);
  so is the VALUE of `--option=VALUE`. URLs are not. Bare names (`a.json`) are relative to the
  current directory, which is mounted already; other options are left alone (`-o FILE` gives
  FILE as its own argument, which is looked at).
- Relative paths are read against the host's current directory (the tool's working directory
  inside), and only while that directory is mounted.
- What is mounted: an existing directory as itself; an existing file through its directory, so
  tools that write by renaming a temp file beside it (sed -i, editors, formatters) work; a path
  that does not exist yet through its directory, so outputs can be created.
- Never mounted: `/`, the home directory or any directory above it, and the image's own system
  areas (/usr, /etc, /proc, ...): an argument there means the container's file. A file directly
  in a broad shared directory (the home directory, /tmp, /var/tmp, a top-level directory) is
  mounted alone rather than exposing its siblings; a missing file there is not mounted.
- Nothing already visible (under the current directory or a -v mount) is mounted twice, and a
  directory below another one mounted is dropped.
- Symlinks are judged by where they lead too (a bind mount follows them): a link to /, to the
  home directory or into a system area is not mounted, wherever it sits. The object judged is
  the object mounted (checked by device and inode when the mount is made), so a link swapped in
  afterwards changes nothing.
- Protected places (protected_places) are judged by their real paths, for these mounts and for
  the current directory's: toolbox's own directories (config with your recipes, data with trust
  records and shims, the store) are never writable through them — a mount inside one is made
  read-only, and one below a mounted directory is covered by a read-only bind of itself; your
  credentials (~/.ssh, ~/.aws, ~/.docker, ...) are never visible through them — a mount inside
  one is not made (a note on stderr says so), and one below a mounted directory is covered by
  an empty read-only tmpfs (a file: by /dev/null, read-only). -v and a recipe's mounts are
  explicit and are not judged.

Standard library only: this runs on the launch path.
"""

import os

from toolbox.runtime.spec import Bind

# Credentials below the home directory: never visible through the current directory or an
# argument path.
CREDENTIALS = (".ssh", ".gnupg", ".aws", ".azure", ".docker", ".kube", ".netrc", ".pgpass",
               ".git-credentials", ".password-store", ".config/containers", ".config/gcloud", ".config/gh",
               ".local/share/keyrings")
# Directories below home that hold every application's state: a file named there is mounted
# alone, as in home itself (a directory there is mounted as itself).
BROAD_BELOW_HOME = (".config", ".local", ".local/share", ".local/state", ".cache")
READ_ONLY, HIDDEN = "read-only", "hidden"

SYSTEM_AREAS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
                "/sbin", "/sys", "/usr", "/var")
# /var itself is the image's, but these below it are shared scratch space users name.
SHARED_BELOW_SYSTEM = ("/var/tmp",)


def protected_places(layout, home, environ=os.environ):
    """[(real path, READ_ONLY or HIDDEN)] of the protected places that exist, parents first."""
    candidates = [(path, READ_ONLY) for path in (layout.config_dir, layout.config_file, layout.data_dir,
                                                 layout.cache_dir)]
    if home:
        candidates += [(os.path.join(home, name), HIDDEN) for name in CREDENTIALS]
    for variable, below in (("REGISTRY_AUTH_FILE", ""), ("DOCKER_CONFIG", ""),
                            ("XDG_RUNTIME_DIR", "containers")):
        value = environ.get(variable)
        if value and value.startswith("/"):
            candidates.append((os.path.join(value, below) if below else value, HIDDEN))
    places = {}
    for path, kind in candidates:
        if os.path.lexists(path):
            real = os.path.realpath(path)
            if places.get(real) != HIDDEN:
                places[real] = kind
    return sorted(places.items(), key=lambda item: (item[0].count("/"), item[0]))


def protection(real_path, places):
    """How the real directory or file `real_path` may be mounted: None when it lies in a hidden
    place (not at all), else (read_only, masks): read-only when it lies in a read-only place,
    and masks for the protected places below it, as (path relative to it, kind)."""
    read_only = False
    masks = []
    for place, kind in places:
        if real_path == place or _is_below(real_path, place):
            if kind == HIDDEN:
                return None
            read_only = True
        elif _is_below(place, real_path):
            masks.append((place[len(real_path.rstrip("/")) + 1:], kind))
    return read_only, tuple(masks)


def argument_binds(args, cwd, home, visible, relative_ok=True, places=(), notes=None):
    """Binds (at the same path inside, with the identity judged) for the paths in `args` that
    lie outside what is already `visible` (a list of container paths mounted from the same host
    paths). `places` are the protected places (protected_places); what is left out because of
    them is said in `notes`."""
    chosen = []
    named = []  # every path named, to say which ones the tool writes into unseen
    broad = _broad_directories(home)
    for arg in args:
        path = _candidate(arg)
        if path is None:
            continue
        if not path.startswith("/"):
            if not relative_ok:
                continue
            path = os.path.join(cwd, path)
        path = os.path.normpath(path)
        named.append(path)
        target = _mount_target(path, home, broad)
        if target is None or _is_below_any(target, visible) or target in chosen:
            continue
        chosen.append(target)
    # Longest last: a directory mounted after one below it would hide that mount.
    kept = [t for t in chosen if not _is_below_any(t, [o for o in chosen if o != t])]
    binds = []
    for target in sorted(kept):
        real_home = os.path.realpath(home) if home else home
        judged = _judge(target, real_home, _broad_directories(real_home))
        if judged is None:
            continue
        identity, real = judged
        protected = protection(real, places)
        if protected is None:
            if notes is not None:
                notes.append(f"not mounting {target}: it is or holds credentials ({real}); use -v to mount "
                             "it on purpose")
            continue
        read_only, masks = protected
        binds.append(Bind(target, target, read_only, identity, masks))
    if notes is not None:
        shown = list(visible) + [bind.inside for bind in binds]
        notes += [unseen_output_note(path, home) for path in named
                  if not _is_below_any(path, shown) and unseen_output_note(path, home)]
    return binds


def unseen_output_note(path, home):
    """What to tell the user about `path`, named in the arguments but not visible to the tool,
    when the tool could well be meant to create it there: it does not exist, and the nearest
    directory above it that does is one of yours that toolbox does not mount whole (a broad
    one: your home, /tmp; or a directory it would have to create). A file made there would stay
    inside the container; the note says so before the tool runs, and how to keep it. None when
    there is nothing to say (the path exists, or lies in the image's own areas)."""
    if os.path.lexists(path):
        return None
    existing = os.path.dirname(path)
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    if existing == "/" or _is_system(existing) or not os.access(existing, os.W_OK):
        return None
    remedy = "create it first (touch, or mkdir -p for a directory) so that it is mounted"
    if not (home and (existing == os.path.normpath(home) or _is_below(os.path.normpath(home), existing))):
        remedy += f", or mount the directory with -v {existing}:{existing}"
    return (f"{path} does not exist yet, and {existing} is not mounted whole: what the tool writes there "
            f"stays in the container; {remedy}")


def current_directory(cwd, home, places):
    """How the current directory (a real path) is shown to the tool, judged as argument paths
    are: ("mount", read_only, masks); ("image", why) where the path is the image's own (/, a
    system area: /usr, /etc, ...), so the tool works in the image's directory of that path
    instead of the host's; or ("hidden", why) inside your credentials. Unlike an argument, your
    home (and above) is mounted when you work there, its protected places covered: working
    in it is what you asked for."""
    if cwd == "/" or _is_system(cwd):
        return ("image", f"{cwd} is one of the image's own system directories")
    protected = protection(cwd, places)
    if protected is None:
        return ("hidden", f"{cwd} is or holds credentials")
    return ("mount",) + protected


def _broad_directories(home):
    home = os.path.normpath(home) if home else None
    return {home, *(os.path.join(home, below) for below in BROAD_BELOW_HOME)} if home else set()


def _judge(target, real_home, broad):
    """What `target` really is, opened once (O_PATH, following symlinks): its (device, inode)
    and real path when it may be mounted, None when it leads to /, the home directory or above,
    or a system area. The runtime mounts only an object with that identity, so a symlink swapped
    in between (in a shared /tmp, say) cannot redirect the mount."""
    try:
        fd = os.open(target, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
        if _mount_target(real, real_home, broad) is None:
            return None
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino), real
    finally:
        os.close(fd)


def _candidate(arg):
    if arg.startswith("-"):
        name, has_value, value = arg.partition("=")
        if not (has_value and name.startswith("--")):
            return None
        arg = value
    if "/" not in arg or "\0" in arg or "\n" in arg:
        return None
    if "://" in arg:  # a URL, not a path
        return None
    return arg


def _mount_target(path, home, broad=()):
    """The host path to mount so that `path` is reachable, or None."""
    if path == "/" or _is_system(path):
        return None
    home = os.path.normpath(home) if home else None
    if home and (path == home or _is_below(home, path)):
        return None  # the home directory or above: far more than the argument names
    if os.path.isdir(path):
        return path
    directory = os.path.dirname(path)
    if _is_broad(directory, home) or directory in broad:
        return path if os.path.lexists(path) else None
    if _is_system(directory) or not os.path.isdir(directory):
        return None
    return directory


def _is_system(path):
    if any(path == shared or _is_below(path, shared) for shared in SHARED_BELOW_SYSTEM):
        return False
    return any(path == area or _is_below(path, area) for area in SYSTEM_AREAS)


def _is_broad(directory, home):
    return (directory == "/" or directory.count("/") == 1 or directory in SHARED_BELOW_SYSTEM
            or directory == home)


def _is_below(path, directory):
    return path.startswith(directory.rstrip("/") + "/")


def _is_below_any(path, directories):
    return any(path == d or _is_below(path, d) for d in directories)
