"""Bringing a context's lock (toolbox.lock) up to date with its pins, and checking a lock
against what its digests name: in the store (check_stored) or at the registry
(check_with_registry). Cold tier.

`lock`, `sync` and `lock --upgrade` report what changed (LockUpdate); a lock with merge
conflicts is refused, except by `toolbox lock`, which keeps every entry of either side that
still matches its pin and resolves only the rest (merge_sides).
"""

from dataclasses import dataclass

from toolbox.errors import LockError, NotFound, OutOfDate, ToolboxError
from toolbox.project.lockfile import LockEntry, disagreements, lock_changes, write_lock


@dataclass(frozen=True)
class LockUpdate:
    """What bringing a lock up to date did."""

    path: str  # the lock file
    entries: dict  # tool -> LockEntry: the lock as it is now (or would be, in a dry run)
    changes: list  # [lockfile.LockChange] from the file as it was (from our side of a conflicted one)
    resolved: tuple  # the tools resolved against the registry
    merged: tuple | None = None  # when the file had merge conflicts: the tools whose entry was kept


def locked_entry(context, tool, frozen=False):
    """The lock entry to run `tool` by, locking it first if needed: only it, so that another
    pin that does not resolve (a typo, a version not published) does not stop this one."""
    return locked_entries(context, frozen=frozen, only=tool, may_skip_write=True)[tool]


def locked_entries(context, upgrade=(), frozen=False, upgrade_all=False, only=None, may_skip_write=False):
    """The lock entries for the pins (update_lock)."""
    return update_lock(context, upgrade, frozen, upgrade_all, only, may_skip_write).entries


def update_lock(context, upgrade=(), frozen=False, upgrade_all=False, only=None, may_skip_write=False,
                dry_run=False, merge_conflicts=False):
    """Bring the lock up to date with the pins (a LockUpdate): resolve what is missing,
    stale or asked to be upgraded, and write toolbox.lock when that changed it (not with
    `dry_run`). With `frozen`, a lock that disagrees with the pins is an error instead.
    With `only`, that tool alone is checked and resolved; the other entries are kept as
    they are (broken ones too). With `may_skip_write`, a lock that cannot be written is a
    warning, not an error. With `merge_conflicts`, a lock with merge conflicts is resolved
    (merge_sides) instead of refused."""
    tools = [only] if only else sorted(context.pins.versions)
    context.catalog.check_usable(tools)  # a recipe that does not validate: its own error, before "no recipe"
    context.check_pins([only] if only else None)
    context.check_trusted([context.catalog.recipes[tool] for tool in tools])  # before anything is fetched
    lock = context.read_lock(conflicts=merge_conflicts and not frozen and only is None)
    if lock.sides is not None:
        return merge_sides(context, lock.sides, upgrade, upgrade_all, dry_run)
    reasons = [reason for tool, reason in disagreements(context.pins, context.catalog, lock)
               if only in (None, tool)]
    if frozen and reasons:
        raise OutOfDate(f"{context.pins.lock_path} does not match {context.pins.path}: {'; '.join(reasons)}",
                        hint="run `toolbox lock` and commit toolbox.lock "
                             "(--frozen and CI=true never resolve)")
    wanted, resolved = {}, []
    for tool, version in sorted(context.pins.versions.items()):
        entry = lock.entries.get(tool)
        if only and tool != only:
            if entry is not None:
                wanted[tool] = entry  # as it is: not this run's business
            continue
        recipe = context.catalog.recipes[tool]
        if entry is None or not entry.matches(recipe, version) or upgrade_all or tool in upgrade:
            entry = resolve(context, tool, recipe, version)
            resolved.append(tool)
        else:
            check_stored(context, entry)
        wanted[tool] = entry
    kept_broken = {tool: broken for tool, broken in lock.broken.items() if only and tool != only}
    if (wanted != lock.entries or set(kept_broken) != set(lock.broken) or lock.stamp is None) and not dry_run:
        _save_lock(context, wanted, kept_broken, may_skip_write)
    changes = lock_changes(lock.entries, wanted, damaged=set(lock.broken) - set(kept_broken))
    return LockUpdate(context.pins.lock_path, wanted, changes, tuple(resolved))


def merge_sides(context, sides, upgrade=(), upgrade_all=False, dry_run=False):
    """Resolve a lock with merge conflicts from the pins: for each pinned tool, the entry
    of either side (ours, theirs) that matches its pin now; when both sides match with
    different entries (the tag moved between the two lockings) or neither does, the tool
    is resolved again, and only then. A clean file is written (not with `dry_run`); the
    changes are told against our side."""
    ours, theirs = sides
    wanted, kept, resolved = {}, [], []
    for tool, version in sorted(context.pins.versions.items()):
        recipe = context.catalog.recipes[tool]
        matching = []
        for side in (ours, theirs):
            entry = side.get(tool)
            if entry is not None and entry.matches(recipe, version) and entry not in matching:
                matching.append(entry)
        if len(matching) == 1 and not (upgrade_all or tool in upgrade):
            check_stored(context, matching[0])
            wanted[tool] = matching[0]
            kept.append(tool)
        else:
            wanted[tool] = resolve(context, tool, recipe, version)
            resolved.append(tool)
    if not dry_run:
        _save_lock(context, wanted, {}, False)
    return LockUpdate(context.pins.lock_path, wanted, lock_changes(ours, wanted), tuple(resolved),
                      merged=tuple(kept))


def _save_lock(context, entries, broken, may_skip):
    """Write toolbox.lock. For a run (`may_skip`), a project directory you cannot write is
    not a reason to stop the tool: it runs by the digests resolved now, and a warning says
    the lock was not saved (the tool plan remembers them until a project file changes)."""
    import errno

    try:
        write_lock(context.pins.lock_path, entries, broken)
    except OSError as err:
        message = f"cannot write {context.pins.lock_path}: {err.strerror}"
        if not may_skip or err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            where = ("or work in a copy of the project" if context.pins.is_project
                     else "(your global pins' lock, beside config.toml)")
            raise ToolboxError(message, hint=f"make its directory writable for you, {where}") from None
        context.warnings.append(f"{message}; running by the digests resolved now, the lock is not saved")
        return
    if context.read_lock().entries != entries:  # someone else wrote it in between
        context.cacheable = False


def check_stored(context, entry):
    """Check `entry` against the document its digest names, if the store has it (it does
    once the image was pulled): what can be checked without the registry."""
    from toolbox.oci.digest import Digest

    store = context.services.store
    digest = Digest.parse(entry.digest)
    if store.has_blob(digest):
        from toolbox.oci.manifest import parse_manifest

        check_against_index(entry,
                            parse_manifest(store.read_blob(digest), what=f"{entry.reference}@{entry.digest}"),
                            context.pins.lock_path)


def resolve(context, tool, recipe, version):
    from toolbox.oci.reference import ImageRef

    ref = ImageRef.parse(recipe.reference_for(version))
    try:
        digest, platforms = resolve_tag(context.client(), ref, context.services.store)
    except NotFound as err:
        raise NotFound(f"{tool} {version}: {recipe.reference_for(version)} does not exist ({err.message})",
                       hint=f"check the version; the recipe makes tags as {recipe.tag!r} "
                            f"from {recipe.image}") from None
    return LockEntry(tool, recipe.name, recipe.source, version, recipe.image, ref.tag, digest, platforms)


def check_with_registry(context):
    """`toolbox lock --check`: every entry against the registry. Its digest must exist in the
    recipe's repository and list exactly the platforms locked, and the tag must still name
    it. [(tool, problem or None)]."""
    from toolbox.oci.manifest import parse_manifest
    from toolbox.oci.reference import ImageRef

    context.catalog.check_usable(context.pins.versions)
    context.check_pins()
    context.check_trusted([context.catalog.recipes[tool] for tool in context.pins.versions])
    lock = context.read_lock()
    problems = {tool: reason for tool, reason in disagreements(context.pins, context.catalog, lock)}
    client = context.client()
    for tool, entry in sorted(lock.entries.items()):
        if tool in problems:
            continue
        ref = ImageRef.parse(entry.reference)
        try:
            fetched = client.get_manifest(ref, entry.digest)
            check_against_index(entry, parse_manifest(fetched.data, fetched.content_type,
                                                      what=f"{ref}@{entry.digest}"), context.pins.lock_path)
            now = client.get_manifest(ref)
        except NotFound:
            problems[tool] = f"{tool}: {entry.digest} is not in {entry.image}"
            continue
        except LockError as err:
            problems[tool] = err.message
            continue
        if str(now.digest) != entry.digest:
            problems[tool] = (f"{tool}: the tag {entry.tag} now names {now.digest}, the lock {entry.digest}: "
                              "either the tag moved upstream since the lock was written "
                              f"(`toolbox lock --upgrade {tool}` takes the new one) or the lock was edited")
    return [(tool, problems.get(tool))
            for tool in sorted(set(lock.entries) | set(lock.broken) | set(context.pins.versions))]


def check_against_index(entry, document, lock_path):
    """The lock entry's platform map must be what the document its digest names says: for an
    index, exactly its runnable platforms and manifests; for a lone manifest, itself alone. A
    map pointing a platform at another manifest (another version's, say) is refused."""
    from toolbox.oci.manifest import Index

    where = f"{lock_path}: [tools.{entry.tool}]"
    hint = (f"the lock was edited or damaged: `toolbox lock --upgrade {entry.tool}` writes the entry "
            "again from the registry; review who changed it")
    if isinstance(document, Index):
        listed = index_platforms(document)
        if entry.is_lone_manifest or listed != entry.platforms:
            wrong = sorted(key for key in set(listed) | set(entry.platforms)
                           if listed.get(key) != entry.platforms.get(key))
            raise LockError(f"{where} does not match the index {entry.digest} names: for {', '.join(wrong)} "
                            f"the lock says {', '.join(str(entry.platforms.get(k)) for k in wrong)}, "
                            f"the index {', '.join(str(listed.get(k)) for k in wrong)}",
                            hint=hint)
    elif not entry.is_lone_manifest:
        raise LockError(f"{where}: {entry.digest} is an image manifest, yet the entry maps other manifests",
                        hint=hint)


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
        config = parse_config(client.get_blob_bytes(ref, document.config, fetched.endpoint, MAX_CONFIG_SIZE),
                              what=f"config of {ref}")
        platforms = {str(config.platform): str(fetched.digest)}
    if not platforms:
        raise NotFound(f"{ref} lists no image for any platform")
    if store is not None:
        store.put_blob(fetched.digest, fetched.data)
    return str(fetched.digest), platforms
