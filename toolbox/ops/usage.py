"""Which stored images the locks toolbox has seen use: for `images` and `df` (which tool and
version an image is, and for which project: `python 3.13 (project ~/proj)`), for `rmi` (a warning
naming the project whose lock runs an image removed) and for `prune --unused` (remove what no
lock uses).

The locks toolbox knows are
- the global pins' lock (toolbox.lock beside config.toml);
- the lock of every project toolbox has read one of here: context.Context.read_lock calls
  remember_project, which keeps one small file per project in the data directory naming its
  toolbox.toml (one stat when the project is known already; the cold tier only);
- the projects named by tool plans in the store, which runs made before projects were
  remembered (so that an upgrade of toolbox forgets no project).
A project whose toolbox.toml or toolbox.lock is gone (deleted, moved) uses nothing; `prune
--unused` forgets it.

A lock names images by digest: the digest its tag named (an index or a manifest) and the
manifest of each platform. A stored image is used by a lock when its manifest or index digest
is one of those, whatever reference it was stored under. A lock that does not parse (conflict
markers after a merge) keeps every digest written in it.
"""

import hashlib
import os
import re
from dataclasses import dataclass

from toolbox.errors import ToolboxError
from toolbox.hot.plans import PROJECT_FILE
from toolbox.project.project import LOCK_FILE

DIGEST_TEXT = re.compile(r"sha256:[0-9a-f]{64}")


# -- the projects toolbox has used here ------------------------------------------------------------
def _record_path(layout, project_file):
    return os.path.join(layout.known_projects_dir, hashlib.sha256(os.fsencode(project_file)).hexdigest()[:32])


def remember_project(layout, project_file):
    """Note that toolbox read the lock of the project of `project_file` (its toolbox.toml). Never
    an error: a data directory toolbox cannot write only means the project is not remembered."""
    project_file = os.path.abspath(project_file)
    path = _record_path(layout, project_file)
    if os.path.exists(path):
        return
    from toolbox.fsutil import atomic_write

    try:
        os.makedirs(layout.known_projects_dir, exist_ok=True)
        atomic_write(path, os.fsencode(project_file) + b"\n", 0o600)
    except OSError:
        pass


def remembered_projects(layout):
    """{project file: its record in the data directory, or None when only a tool plan names it}."""
    from toolbox.fsutil import read_input

    found = {}
    try:
        names = sorted(os.listdir(layout.known_projects_dir))
    except OSError:
        names = []
    for name in names:
        path = os.path.join(layout.known_projects_dir, name)
        try:
            record = read_input(path, "project record", limit=64 * 1024)
        except ToolboxError:
            continue
        if record is not None:
            found[os.fsdecode(record.data.rstrip(b"\n"))] = path
    for project_file in _planned_projects(layout):
        found.setdefault(project_file, None)
    return found


def _planned_projects(layout):
    """The project files tool plans were made for (hot/plans.py)."""
    import marshal

    try:
        names = os.listdir(layout.tool_plans_dir)
    except OSError:
        return set()
    found = set()
    for name in names:
        try:
            with open(os.path.join(layout.tool_plans_dir, name), "rb") as file:
                pins = marshal.load(file)["pins"]
        except (OSError, EOFError, ValueError, TypeError, KeyError):
            continue
        if isinstance(pins, str) and os.path.basename(pins) == PROJECT_FILE:
            found.add(pins)
    return found


def forget_missing(layout):
    """Forget the projects whose toolbox.toml is gone (where the data directory can be
    written: forgetting is tidying, never a reason to fail). Returns them."""
    gone = [project for project, record in remembered_projects(layout).items()
            if record and not os.path.isfile(project)]
    for project in gone:
        try:
            os.unlink(_record_path(layout, project))
        except OSError:
            continue
    return gone


# -- their locks ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KnownLock:
    pins_path: str  # the project's toolbox.toml, or config.toml for the global pins
    lock_path: str
    is_project: bool
    entries: dict  # tool -> LockEntry, the entries that parse
    digests: frozenset  # every digest the lock names, its broken entries' too
    problem: str | None = None  # why its entries could not be read (its digests come from its text then)

    def names(self, record):
        return (str(record.digest) in self.digests
                or (record.index_digest is not None and str(record.index_digest) in self.digests))

    def tools_for(self, record):
        """[(tool, version)] of the entries that run `record`."""
        ours = {str(record.digest), str(record.index_digest)}
        return [(tool, entry.version) for tool, entry in sorted(self.entries.items())
                if ours & {entry.digest, *entry.platforms.values()}]

    def where(self, home=None):
        """'project ~/proj' or 'global pins'."""
        if not self.is_project:
            return "global pins"
        return f"project {tilde(os.path.dirname(self.pins_path), home)}"


def tilde(path, home=None):
    """`path` with the home directory written `~`."""
    home = (home or os.path.expanduser("~")).rstrip("/")
    if home and (path == home or path.startswith(home + "/")):
        return "~" + path[len(home):]
    return path


def known_locks(layout, also=()):
    """The global pins' lock and the locks of the projects toolbox has used here (and of the
    project files `also`, in use now) that still exist beside their toolbox.toml."""
    candidates = [(layout.config_file, os.path.join(layout.config_dir, LOCK_FILE), False)]
    candidates += [(os.path.abspath(p), os.path.join(os.path.dirname(os.path.abspath(p)), LOCK_FILE), True)
                   for p in [*also, *sorted(remembered_projects(layout))]]
    found, seen = [], set()
    for pins_path, lock_path, is_project in candidates:
        if lock_path in seen or (is_project and not os.path.isfile(pins_path)):
            continue
        seen.add(lock_path)
        known = read_known_lock(pins_path, lock_path, is_project)
        if known is not None:
            found.append(known)
    return found


def read_known_lock(pins_path, lock_path, is_project):
    """The KnownLock at `lock_path`, or None when there is none."""
    from toolbox.fsutil import read_input
    from toolbox.project.lockfile import read_lock

    try:
        lock = read_lock(lock_path)
    except ToolboxError as err:  # conflict markers, another lock_version: keep what its text names
        try:
            found = read_input(lock_path, "lock file")
        except ToolboxError:
            found = None
        text = found.data.decode("utf-8", "replace") if found is not None else ""
        return KnownLock(pins_path, lock_path, is_project, {}, frozenset(DIGEST_TEXT.findall(text)),
                         err.message)
    if lock.stamp is None:
        return None
    digests = set()
    for entry in lock.entries.values():
        digests.update([entry.digest, *entry.platforms.values()])
    for table, _reason in lock.broken.values():
        digests.update(DIGEST_TEXT.findall(repr(table)))
    return KnownLock(pins_path, lock_path, is_project, dict(lock.entries), frozenset(digests))


# -- what that says about stored images ------------------------------------------------------------------
class StoreUse:
    """Which tool and version each stored image is, and which locks use it. `recipes` name the
    images of tools no lock pins (by tag: `jq 1.6`)."""

    def __init__(self, locks, recipes=(), home=None):
        self.locks = list(locks)
        self.home = home
        self._recipes = {}
        for recipe in recipes:
            self._recipes.setdefault(recipe.image, recipe)

    def users(self, record):
        """[(tool, version, KnownLock)] of the lock entries that run `record`."""
        return [(tool, version, lock) for lock in self.locks if lock.names(record)
                for tool, version in lock.tools_for(record)]

    def used(self, record):
        return any(lock.names(record) for lock in self.locks)

    def label(self, record):
        """'python 3.13 (project ~/proj)', 'jq 1.7.1 (projects ~/a, ~/b; global pins)', 'jq 1.6'
        for a recipe's image by tag, 'jq' by another digest; '' for an image of no recipe."""
        users = self.users(record)
        if users:
            wheres = {}
            for tool, version, lock in users:
                wheres.setdefault((tool, version), []).append(lock)
            return "; ".join(f"{tool} {version} ({_where(locks, self.home)})" for (tool, version),
                             locks in wheres.items())
        naming = [lock for lock in self.locks if lock.names(record)]
        if naming:  # by a lock, or an entry of one, that does not parse (conflict markers)
            return (f"{self._recipe_label(record.reference) or '?'} ({_where(naming, self.home)}: "
                    "a lock entry that cannot be read)")
        return self._recipe_label(record.reference)

    def _recipe_label(self, reference):
        repository, _, digest = reference.partition("@")
        name, colon, tag = repository.rpartition(":")
        if not colon or "/" in tag:  # no tag: what follows the colon is a registry's port
            name, tag = repository, ""
        recipe = self._recipes.get(name)
        if recipe is None:
            return ""
        if not tag:
            return recipe.name
        return f"{recipe.name} {_version_of(recipe.tag, tag)}"

    def orphaned(self, removed, remaining):
        """[(pins file, tool)] whose locked image was among `removed` records and is in none of
        `remaining`: its next run pulls it again."""
        found = []
        for lock in self.locks:
            for tool, entry in sorted(lock.entries.items()):
                digests = {entry.digest, *entry.platforms.values()}
                hit = [r for r in removed if {str(r.digest), str(r.index_digest)} & digests]
                if hit and not any({str(r.digest), str(r.index_digest)} & digests for r in remaining):
                    found.append((lock.pins_path, tool))
        return found


def _where(locks, home):
    projects = [tilde(os.path.dirname(lock.pins_path), home) for lock in locks if lock.is_project]
    parts = [f"project{'s' if len(projects) > 1 else ''} {', '.join(projects)}"] if projects else []
    parts += ["global pins"] if any(not lock.is_project for lock in locks) else []
    return "; ".join(parts)


def _version_of(scheme, tag):
    """The version a recipe's tag scheme ("{version}-slim") made `tag` from, else the tag."""
    if "{version}" not in scheme:
        return tag
    pattern = re.escape(scheme).replace(re.escape("{version}"), "(.+)", 1)
    match = re.fullmatch(pattern, tag)
    return match.group(1) if match else tag
