"""Tools by name: `toolbox run jq`, `toolbox lock`, `sync`, `add`, `list`. Binds the recipes,
the pins (a project's toolbox.toml or the user's global ones), the lock file and trust, and
resolves tags to digests through the registry client. Cold tier.

Which version runs: `tool@VERSION` as typed; else an alias's version (python3.11); else the pin;
else the recipe's default. A pinned version runs by the digest its lock entry names (for an
index, the pull picks this platform's manifest from the index itself); the lock is brought up to
date first when the pins changed (not with --frozen or CI=true, which fail instead). An unpinned
version runs by tag.

`lock`, `sync` and `lock --upgrade` report what changed (LockUpdate); a lock with merge
conflicts is refused, except by `toolbox lock`, which keeps every entry of either side that
still matches its pin and resolves only the rest (Context.merge_sides). A run whose lock entry
changed since the tool last ran from that pins file says so (lock_change_notice).

Every input is read once (fsutil.read_input) and the stamp of what was read is kept in
`Context.read_stamps`, so a tool plan made here names exactly the files it was made from.
A project's recipes are used for nothing — running, locking, pulling — until their grants are
trusted (trust.py).
"""

import os
import re
from dataclasses import dataclass

from toolbox.errors import NotFound, ToolboxError
from toolbox.project.lockfile import LockEntry, LockError, OutOfDate, disagreements, lock_changes, read_lock, short_digest, write_lock
from toolbox.project.project import LOCK_FILE, check_owner, current_pins, global_pins
from toolbox.project.recipes import Catalog, UnknownTool

TOOL_SPEC = re.compile(r"([a-z0-9][a-z0-9._-]*)(?:@([A-Za-z0-9][A-Za-z0-9._+-]*))?\Z")


def parse_tool_spec(text):
    """(name, version or None) when `text` names a tool (`jq`, `python@3.11`), else None: an
    image reference has a registry, a path, a tag or a digest."""
    match = TOOL_SPEC.match(text)
    return (match.group(1), match.group(2)) if match else None


@dataclass(frozen=True)
class ToolRun:
    """What `toolbox run TOOL` runs: an image and the recipe's settings for it."""

    tool: str  # as typed, without the version
    recipe: object  # Recipe
    version: str
    image: str  # a reference toolbox run can pull: by digest when locked
    command: tuple | None
    pinned_by: str | None  # the file that pins the version, or None
    entry: LockEntry | None = None  # the lock entry it runs by
    default_command: tuple | None = None  # what runs when no arguments are given
    lock_path: str | None = None  # the lock that entry is from

    def run_settings(self):
        """The recipe's part of the run, as the launch path takes it (plain values, no classes)."""
        recipe = self.recipe
        return {
            "pinned": self.pinned_by is not None,
            "image": self.image,
            "command": list(self.command) if self.command else None,
            "default_command": list(self.default_command) if self.default_command else None,
            "env": [f"{key}={value}" for key, value in sorted(recipe.env.items())],
            "pass_env": list(recipe.pass_env),
            "mounts": [(m.source, m.target, m.read_only) for m in recipe.mounts],
            "network": recipe.network,
        }


@dataclass(frozen=True)
class LockUpdate:
    """What bringing a lock up to date did."""

    path: str  # the lock file
    entries: dict  # tool -> LockEntry: the lock as it is now (or would be, in a dry run)
    changes: list  # [lockfile.LockChange] from the file as it was (from our side of a conflicted one)
    resolved: tuple  # the tools resolved against the registry
    merged: tuple | None = None  # when the file had merge conflicts: the tools whose entry was kept


class Context:
    """The pins, catalog, lock and trust that apply in one directory. `confirm(text)`, when
    given, is asked whether to trust recipes it shows (a terminal prompt); without it, or when
    it says no, untrusted recipes are an error."""

    def __init__(self, services, cwd=None, confirm=None, pins=None):
        self.services = services
        self.layout = services.layout
        self.environ = services.environ
        self.confirm = confirm
        self.pins = pins or current_pins(services.layout, cwd or os.getcwd(), services.config, services.environ)
        self.catalog = Catalog.load(services.layout, self.pins if self.pins.is_project else None)
        self.read_stamps = dict(self.catalog.stamps)  # path -> stamp of the bytes read
        if services.config.path:
            self.read_stamps[services.config.path] = services.config.stamp
        self.read_stamps[self.pins.path] = self.pins.stamp
        self.cacheable = True  # False when an input changed under us: no tool plan is written
        self.warnings = []  # for the edge to print: what did not stop the command
        self._client = None
        self._global = None

    # -- which pin applies: the project's, else the user's global one ----------------------------
    def global_context(self):
        """The user's global pins, which apply in a project to the tools it does not pin (as
        mise layers its configs); None outside a project, where they are this context's own."""
        if not self.pins.is_project:
            return None
        if self._global is None:
            self._global = Context(self.services, confirm=self.confirm, pins=global_pins(self.layout, self.services.config))
        return self._global

    def pinned(self, recipe):
        """(version, the context whose pins and lock it comes from) of the pin that applies to
        `recipe` here: the project's; else the global one, unless the project has a recipe of
        that name of its own (the global pin is a version of another recipe); (None, self) when
        nothing pins it."""
        version = self.pins.versions.get(recipe.name)
        outer = self.global_context() if version is None and recipe.source != "project" else None
        if outer is not None and outer.catalog.recipes.get(recipe.name) == recipe and recipe.name in outer.pins.versions:
            return outer.pins.versions[recipe.name], outer
        return version, self

    def effective_pins(self):
        """{tool: (version, context)} for every pin that applies here (pinned())."""
        pins = {}
        outer = self.global_context()
        for tool in sorted(set(self.pins.versions) | set(outer.pins.versions if outer else ())):
            recipe = self.catalog.recipes.get(tool)
            if recipe is None:  # a pin without a recipe: shown, so that it can be fixed
                owner = self if tool in self.pins.versions else outer
                pins[tool] = (owner.pins.versions[tool], owner)
                continue
            version, owner = self.pinned(recipe)
            if version is not None:
                pins[tool] = (version, owner)
        return pins

    def _absorb(self, other):
        """What another context (the global one) read and said becomes this one's: a plan made
        here depends on the global lock and config too."""
        if other is not self:
            self.read_stamps.update(other.read_stamps)
            self.warnings += other.warnings
            other.warnings.clear()
            self.cacheable = self.cacheable and other.cacheable

    # -- which tool, which version --------------------------------------------------------------
    def tool_run(self, text, frozen=False):
        name, version = parse_tool_spec(text) or (None, None)
        if name is None:
            raise ToolboxError(f"{text!r} is not a tool name", hint="a tool is NAME or NAME@VERSION, e.g. python@3.11")
        recipe, alias = self.catalog.find(name)
        self.check_trusted([recipe])
        version = version or (alias.version if alias else None)
        pinned, owner = self.pinned(recipe)
        command = alias.command if alias and alias.command else recipe.command
        default_command = None if alias and alias.command else recipe.default_command  # an alias's command is all of it
        if pinned is None and version is None:  # the version would come from a pin: is one misspelt?
            self.check_misspelt_pin(recipe.name)
        if version is None or version == pinned:
            if pinned is not None:
                entry = owner.locked_entry(recipe.name, frozen)
                self._absorb(owner)
                return ToolRun(name, recipe, pinned, entry.pinned_reference(), command, owner.pins.path, entry, default_command,
                               owner.pins.lock_path)
            version = recipe.default_version
        return ToolRun(name, recipe, version, recipe.reference_for(version), command, None, default_command=default_command)

    def plan_inputs(self):
        """Every file a tool plan made here depends on (hot/plans.py), present or not."""
        from toolbox.project.trust import TrustStore

        paths = [self.pins.path, self.layout.config_file, self.pins.lock_path, TrustStore(self.layout).record_path(self.pins.path),
                 os.path.join(self.layout.config_dir, LOCK_FILE)]  # global pins apply in a project too
        paths += sorted(self.catalog.stamps)
        # toolbox itself: its version, and the code that makes plans (edited in a checkout).
        paths += plan_making_sources()
        return list(dict.fromkeys(paths))

    def plan_stamps(self):
        """{path: stamp} for a tool plan: the stamp of what was read, for the files read."""
        from toolbox.hot.plans import stamp

        return {path: self.read_stamps[path] if path in self.read_stamps else stamp(path) for path in self.plan_inputs()}

    def check_trusted(self, recipes):
        """Refuse (NotTrusted) to use project recipes whose grants are not trusted, after
        offering to trust them when `confirm` is there."""
        project = [r for r in recipes if r.source == "project"]
        if not project:
            return
        from toolbox.project.trust import TrustStore, refusal

        store = TrustStore(self.layout, self.environ)
        untrusted, record = store.untrusted(self.pins.path, project)
        self.read_stamps[record.path] = record.stamp
        if not untrusted:
            return
        error = refusal(self.pins, untrusted, record, self.catalog, store.trusted_elsewhere(self.pins.path, untrusted))
        question = f"{error.message}\nTrust them (as `toolbox trust` in {self.pins.directory} would)?"
        if self.confirm is None or not self.confirm(question):
            raise error
        store.trust(self.pins.path, untrusted, keep=record)
        self.read_stamps[record.path] = store.read(self.pins.path).stamp

    def check_misspelt_pin(self, tool):
        """A project that pins a name no recipe knows, close to `tool` (`jqq` for jq), means
        `tool`: running the host's jq, or the recipe's default version, would be a silent surprise."""
        import difflib

        unknown = [name for name in self.pins.versions if name not in self.catalog.recipes and name not in self.catalog.aliases]
        close = difflib.get_close_matches(tool, unknown, n=1, cutoff=0.75)
        if close:
            raise ToolboxError(f"{self.pins.path} pins {close[0]!r}, which no recipe knows: is it {tool}?",
                               hint=f"fix the name under [tools] in {self.pins.path} (toolbox remove {close[0]}; toolbox add {tool})")

    def check_pins(self, tools=None):
        """Every pin (or those of `tools`) names a recipe; an alias (python3.11) is refused,
        naming the recipe to pin."""
        for tool in sorted(tools or self.pins.versions):
            if tool not in self.catalog.recipes:
                if tool not in self.catalog.aliases:  # a pin in a file the user may not have in mind: name it
                    raise UnknownTool(f"no recipe for {tool!r}, which {self.pins.path} pins",
                                      hint=f"{self.catalog.suggestion(tool)}; fix the name there, or unpin it with "
                                           f"`toolbox remove {'--global ' if not self.pins.is_project else ''}{tool}`")
                raise ToolboxError(f"{self.pins.path}: [tools] {tool!r} is an alias of {self.catalog.aliases[tool][0].name}",
                                   hint=f"pin {self.catalog.aliases[tool][0].name} instead")

    # -- the lock --------------------------------------------------------------------------------
    def read_lock(self, conflicts=False):
        """toolbox.lock (a LockFile), read once; a project's must be yours like toolbox.toml.
        One with merge conflicts is a LockConflict, or with `conflicts` a LockFile of its sides."""
        safe = self.services.config.safe_directories
        owner_check = (lambda found: check_owner(found, safe, self.environ)) if self.pins.is_project else None
        lock = read_lock(self.pins.lock_path, owner_check, conflicts)
        self.read_stamps[self.pins.lock_path] = lock.stamp
        if self.pins.is_project:  # for `prune --unused`, `df` and `images`: the locks used here
            from toolbox.ops.usage import remember_project

            remember_project(self.layout, self.pins.path)
        return lock

    def locked_entry(self, tool, frozen=False):
        """The lock entry to run `tool` by, locking it first if needed: only it, so that another
        pin that does not resolve (a typo, a version not published) does not stop this one."""
        return self.lock(frozen=frozen, only=tool, may_skip_write=True)[tool]

    def lock(self, upgrade=(), frozen=False, upgrade_all=False, only=None, may_skip_write=False):
        """The lock entries for the pins (update_lock)."""
        return self.update_lock(upgrade, frozen, upgrade_all, only, may_skip_write).entries

    def update_lock(self, upgrade=(), frozen=False, upgrade_all=False, only=None, may_skip_write=False, dry_run=False,
                    merge_conflicts=False):
        """Bring the lock up to date with the pins (a LockUpdate): resolve what is missing,
        stale or asked to be upgraded, and write toolbox.lock when that changed it (not with
        `dry_run`). With `frozen`, a lock that disagrees with the pins is an error instead.
        With `only`, that tool alone is checked and resolved; the other entries are kept as
        they are (broken ones too). With `may_skip_write`, a lock that cannot be written is a
        warning, not an error. With `merge_conflicts`, a lock with merge conflicts is resolved
        (merge_sides) instead of refused."""
        tools = [only] if only else sorted(self.pins.versions)
        self.catalog.check_usable(tools)  # a recipe that does not validate: its own error, before "no recipe"
        self.check_pins([only] if only else None)
        self.check_trusted([self.catalog.recipes[tool] for tool in tools])  # before anything is fetched
        lock = self.read_lock(conflicts=merge_conflicts and not frozen and only is None)
        if lock.sides is not None:
            return self.merge_sides(lock.sides, upgrade, upgrade_all, dry_run)
        reasons = [reason for tool, reason in disagreements(self.pins, self.catalog, lock) if only in (None, tool)]
        if frozen and reasons:
            raise OutOfDate(f"{self.pins.lock_path} does not match {self.pins.path}: {'; '.join(reasons)}",
                            hint="run `toolbox lock` and commit toolbox.lock (--frozen and CI=true never resolve)")
        wanted, resolved = {}, []
        for tool, version in sorted(self.pins.versions.items()):
            entry = lock.entries.get(tool)
            if only and tool != only:
                if entry is not None:
                    wanted[tool] = entry  # as it is: not this run's business
                continue
            recipe = self.catalog.recipes[tool]
            if entry is None or not entry.matches(recipe, version) or upgrade_all or tool in upgrade:
                entry = self.resolve(tool, recipe, version)
                resolved.append(tool)
            else:
                self.check_stored(entry)
            wanted[tool] = entry
        kept_broken = {tool: broken for tool, broken in lock.broken.items() if only and tool != only}
        if (wanted != lock.entries or set(kept_broken) != set(lock.broken) or lock.stamp is None) and not dry_run:
            self._write_lock(wanted, kept_broken, may_skip_write)
        changes = lock_changes(lock.entries, wanted, damaged=set(lock.broken) - set(kept_broken))
        return LockUpdate(self.pins.lock_path, wanted, changes, tuple(resolved))

    def merge_sides(self, sides, upgrade=(), upgrade_all=False, dry_run=False):
        """Resolve a lock with merge conflicts from the pins: for each pinned tool, the entry
        of either side (ours, theirs) that matches its pin now; when both sides match with
        different entries (the tag moved between the two lockings) or neither does, the tool
        is resolved again, and only then. A clean file is written (not with `dry_run`); the
        changes are told against our side."""
        ours, theirs = sides
        wanted, kept, resolved = {}, [], []
        for tool, version in sorted(self.pins.versions.items()):
            recipe = self.catalog.recipes[tool]
            matching = []
            for side in (ours, theirs):
                entry = side.get(tool)
                if entry is not None and entry.matches(recipe, version) and entry not in matching:
                    matching.append(entry)
            if len(matching) == 1 and not (upgrade_all or tool in upgrade):
                self.check_stored(matching[0])
                wanted[tool] = matching[0]
                kept.append(tool)
            else:
                wanted[tool] = self.resolve(tool, recipe, version)
                resolved.append(tool)
        if not dry_run:
            self._write_lock(wanted, {}, False)
        return LockUpdate(self.pins.lock_path, wanted, lock_changes(ours, wanted), tuple(resolved), merged=tuple(kept))

    def _write_lock(self, entries, broken, may_skip):
        """Write toolbox.lock. For a run (`may_skip`), a project directory you cannot write is
        not a reason to stop the tool: it runs by the digests resolved now, and a warning says
        the lock was not saved (the tool plan remembers them until a project file changes)."""
        import errno

        try:
            write_lock(self.pins.lock_path, entries, broken)
        except OSError as err:
            message = f"cannot write {self.pins.lock_path}: {err.strerror}"
            if not may_skip or err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                where = "or work in a copy of the project" if self.pins.is_project else "(your global pins' lock, beside config.toml)"
                raise ToolboxError(message, hint=f"make its directory writable for you, {where}") from None
            self.warnings.append(f"{message}; running by the digests resolved now, the lock is not saved")
            return
        if self.read_lock().entries != entries:  # someone else wrote it in between
            self.cacheable = False

    def check_stored(self, entry):
        """Check `entry` against the document its digest names, if the store has it (it does
        once the image was pulled): what can be checked without the registry."""
        from toolbox.oci.digest import Digest

        store = self.services.store
        digest = Digest.parse(entry.digest)
        if store.has_blob(digest):
            from toolbox.oci.manifest import parse_manifest

            check_against_index(entry, parse_manifest(store.read_blob(digest), what=f"{entry.reference}@{entry.digest}"), self.pins.lock_path)

    def resolve(self, tool, recipe, version):
        from toolbox.oci.reference import ImageRef

        ref = ImageRef.parse(recipe.reference_for(version))
        try:
            digest, platforms = resolve_tag(self.client(), ref, self.services.store)
        except NotFound as err:
            raise NotFound(f"{tool} {version}: {recipe.reference_for(version)} does not exist ({err.message})",
                           hint=f"check the version; the recipe makes tags as {recipe.tag!r} from {recipe.image}") from None
        return LockEntry(tool, recipe.name, recipe.source, version, recipe.image, ref.tag, digest, platforms)

    def check_with_registry(self):
        """`toolbox lock --check`: every entry against the registry. Its digest must exist in the
        recipe's repository and list exactly the platforms locked, and the tag must still name
        it. [(tool, problem or None)]."""
        from toolbox.oci.manifest import parse_manifest
        from toolbox.oci.reference import ImageRef

        self.catalog.check_usable(self.pins.versions)
        self.check_pins()
        self.check_trusted([self.catalog.recipes[tool] for tool in self.pins.versions])
        lock = self.read_lock()
        problems = {tool: reason for tool, reason in disagreements(self.pins, self.catalog, lock)}
        client = self.client()
        for tool, entry in sorted(lock.entries.items()):
            if tool in problems:
                continue
            ref = ImageRef.parse(entry.reference)
            try:
                fetched = client.get_manifest(ref, entry.digest)
                check_against_index(entry, parse_manifest(fetched.data, fetched.content_type, what=f"{ref}@{entry.digest}"), self.pins.lock_path)
                now = client.get_manifest(ref)
            except NotFound:
                problems[tool] = f"{tool}: {entry.digest} is not in {entry.image}"
                continue
            except LockError as err:
                problems[tool] = err.message
                continue
            if str(now.digest) != entry.digest:
                problems[tool] = (f"{tool}: the tag {entry.tag} now names {now.digest}, the lock {entry.digest}: either the tag moved upstream "
                                  f"since the lock was written (`toolbox lock --upgrade {tool}` takes the new one) or the lock was edited")
        return [(tool, problems.get(tool)) for tool in sorted(set(lock.entries) | set(lock.broken) | set(self.pins.versions))]

    def client(self):
        if self._client is None:
            self._client = self.services.registry_client()
        return self._client

    def close(self):
        if self._client is not None:
            self._client.close()
        if self._global is not None:
            self._global.close()


def check_against_index(entry, document, lock_path):
    """The lock entry's platform map must be what the document its digest names says: for an
    index, exactly its runnable platforms and manifests; for a lone manifest, itself alone. A
    map pointing a platform at another manifest (another version's, say) is refused."""
    from toolbox.oci.manifest import Index

    where = f"{lock_path}: [tools.{entry.tool}]"
    hint = f"the lock was edited or damaged: `toolbox lock --upgrade {entry.tool}` writes the entry again from the registry; review who changed it"
    if isinstance(document, Index):
        listed = index_platforms(document)
        if entry.is_lone_manifest or listed != entry.platforms:
            wrong = sorted(key for key in set(listed) | set(entry.platforms) if listed.get(key) != entry.platforms.get(key))
            raise LockError(f"{where} does not match the index {entry.digest} names: for {', '.join(wrong)} the lock says "
                            f"{', '.join(str(entry.platforms.get(k)) for k in wrong)}, the index {', '.join(str(listed.get(k)) for k in wrong)}",
                            hint=hint)
    elif not entry.is_lone_manifest:
        raise LockError(f"{where}: {entry.digest} is an image manifest, yet the entry maps other manifests", hint=hint)


def index_platforms(index):
    """{platform: manifest digest} of the images an index lists (not attestations)."""
    return {str(entry.platform): str(entry.digest) for entry in index.runnable_entries()}


def resolve_tag(client, ref, store=None):
    """(the digest the tag names, {platform: manifest digest}). An index gives every runnable
    platform it lists; a lone manifest gives the one its config names. The document is kept in
    `store` (verified by its digest), so the lock can be checked against it offline later."""
    from toolbox.oci.manifest import MAX_CONFIG_SIZE, Index, parse_config, parse_manifest

    fetched = client.get_manifest(ref)
    document = parse_manifest(fetched.data, fetched.content_type, what=f"manifest of {ref}")
    if isinstance(document, Index):
        platforms = index_platforms(document)
    else:
        config = parse_config(client.get_blob_bytes(ref, document.config, fetched.endpoint, MAX_CONFIG_SIZE), what=f"config of {ref}")
        platforms = {str(config.platform): str(fetched.digest)}
    if not platforms:
        raise NotFound(f"{ref} lists no image for any platform")
    if store is not None:
        store.put_blob(fetched.digest, fetched.data)
    return str(fetched.digest), platforms


def run_settings(text, frozen=False, cwd=None, pull="missing", platform=None, confirm=None, warn=None, tell=None):
    """For the launch path: what `toolbox run TEXT` runs, as plain values (ToolRun.run_settings),
    also written as a tool plan (hot/plans.py) so the next run reads it without this module. A
    locked tool's image is pulled here (unless `pull` is "never") so that the lock entry is
    checked against its index before the plan is written. The first run of a pinned tool
    after its lock entry changed says so (`warn`): a changed lock makes the plan stale, so
    that run comes here."""
    import gc

    from toolbox.hot import plans
    from toolbox.ops.wiring import load_services

    gc.enable()  # a shim turns it off for the launch path; resolving and pulling make cycles
    cwd = cwd or os.getcwd()
    services = load_services()
    pins_file = plans.pins_file(services.layout, cwd)
    context = Context(services, cwd, confirm)
    try:
        run = context.tool_run(text, frozen)
        if run.entry is not None:
            from toolbox.oci.platform import Platform, host_platform

            run.entry.manifest_for(Platform.parse(platform) if platform else host_platform())  # the lock's own word first
            if pull != "never":
                from toolbox.ops.prepare import ensure_plan

                ensure_plan(services.layout, run.image, "missing", platform)
                context.check_stored(run.entry)
            notice = lock_change_notice(services.layout, run)
            if notice:
                context.warnings.append(notice)
        settings = run.run_settings()
        _ensure_pinned_shims(context, tell)
    finally:
        context.close()
        for message in context.warnings:
            if warn is not None:
                warn(message)
    if context.cacheable and context.pins.path == pins_file:
        path = plans.plan_path(services.layout, pins_file, text)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with services.store.new_file(path) as file:
            file.write(plans.plan_bytes(pins_file, text, settings, context.plan_stamps(), services.environ))
    return settings


def lock_change_notice(layout, run):
    """One line when the pinned `run` (a ToolRun) runs by another lock entry than the last time
    it ran from its pins file ("jq is now 1.7.2 (was 1.7.1), from /p/toolbox.lock"), else None;
    never on a tool's first run."""
    from toolbox.ops import lastrun

    entry = run.entry
    before = lastrun.swap(layout, run.pinned_by, run.recipe.name, entry.version, entry.digest)
    if before is None or before == (entry.version, entry.digest):
        return None
    version, digest = before
    if version != entry.version:
        return f"{run.recipe.name} is now {entry.version} (was {version}), from {run.lock_path}"
    return f"{run.recipe.name} {entry.version} is now {short_digest(entry.digest)} (was {short_digest(digest)}), from {run.lock_path}"


# -- tool names where image names are expected ---------------------------------------------------------
def image_for_word(context, text, resolve=False):
    """What a word given to `pull`, `inspect` or `rmi` names. A tool first: a recipe's name or
    alias, maybe with @VERSION, is the image that tool runs here (pinned: by the lock's digest,
    locked first only when `resolve`; else by the version's tag). Anything else is an image
    reference, a bare word no recipe knows included (docker.io/library/NAME); an explicit
    `docker.io/library/jq` always means the image."""
    from toolbox.project.recipes import UnknownTool

    parsed = parse_tool_spec(text)
    if parsed is None:
        return text
    try:
        context.catalog.find(parsed[0])
    except UnknownTool:
        return text
    return context.tool_run(text, frozen=not resolve).image


def _ensure_pinned_shims(context, tell):
    """The first call of a tool after the pins or the lock changed (its plan is made again):
    the tools pinned here that have no shim yet get one, once shims are in use."""
    from toolbox.ops import shimgen as shims

    pinned = [tool for tool in context.effective_pins() if tool in context.catalog.recipes]
    added = shims.ensure(context.layout, pinned)
    if added and tell is not None:
        tell(f"installed shims for {', '.join(added)}, pinned here")


# The code whose edits change what a tool plan says: the version, the project package (recipes,
# pins, lock, trust), the plan format, and the use cases that build plans.
PLAN_MAKERS = ("toolbox", "toolbox.fsutil", "toolbox.hot.plans", "toolbox.ops.tools", "toolbox.ops.prepare")


def plan_making_sources():
    """The source files of PLAN_MAKERS and of every module of toolbox.project, found from the
    modules themselves, so a module moved or added there is followed."""
    import importlib

    import toolbox.project

    project_dir = os.path.dirname(toolbox.project.__file__)
    files = [importlib.import_module(name).__file__ for name in PLAN_MAKERS]
    files += sorted(os.path.join(project_dir, name) for name in os.listdir(project_dir) if name.endswith(".py"))
    return files
