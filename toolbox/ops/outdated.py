"""`toolbox outdated`: for each pinned tool, what is locked, the newest version its recipe's tag
scheme allows (versions.py says which), and whether the pinned tag names another digest
upstream than the lock does. Asks each recipe's registry (tags/list, and the pinned tag's
manifest); a tool whose registry cannot be asked gets its own problem, the others are still
reported. Nothing is written.
"""

from dataclasses import asdict, dataclass

from toolbox.errors import ToolboxError


@dataclass(frozen=True)
class OutdatedTool:
    tool: str
    version: str  # as pinned
    pinned_by: str  # the file that pins it
    image: str | None  # the recipe's repository
    tag: str | None  # the pinned version's tag
    locked_digest: str | None  # the lock's digest for the pin (None: not locked for this pin)
    newest: str | None  # the newest version the scheme allows (maybe the pinned one); None: cannot tell
    newer: bool  # newest is newer than the pin
    tag_digest: str | None  # what the pinned tag names upstream now
    tag_moved: bool | None  # the tag names another digest than the lock's (None: cannot tell)
    note: str | None = None  # about the lock or the scheme: not a failure
    problem: str | None = None  # why the registry could not say (a failure)

    def to_json(self):
        return asdict(self)


def outdated(context, tools=None):
    """[OutdatedTool] for the pins that apply here (project and global), or those of `tools`."""
    from toolbox.errors import LockError, NotTrusted

    pins = context.effective_pins()
    unknown = sorted(set(tools or ()) - set(pins))
    if unknown:
        raise ToolboxError(f"not pinned here: {', '.join(unknown)}",
                           hint="`toolbox list` shows the pins that apply here")
    locks, tags_of = {}, {}
    rows = []
    for tool, (version, owner) in sorted(pins.items()):
        if tools and tool not in tools:
            continue
        base = {"tool": tool, "version": version, "pinned_by": owner.pins.path}
        recipe = context.catalog.recipes.get(tool)
        if recipe is None:
            broken = context.catalog.broken.get(tool)
            problem = broken.error.message if broken else f"no recipe for {tool!r}"
            rows.append(_row(base, problem=problem))
            continue
        base.update(image=recipe.image, tag=recipe.tag_for(version))
        if owner.pins.path not in locks:
            try:
                locks[owner.pins.path] = (owner.read_lock(), None)
            except LockError as err:
                locks[owner.pins.path] = (None, err.message)
        lock, lock_problem = locks[owner.pins.path]
        entry = lock.entries.get(tool) if lock is not None else None
        if entry is not None and not entry.matches(recipe, version):
            entry, note = None, (f"locked for {lock.entries[tool].version}, pinned {version}: "
                                 "`toolbox lock` brings the lock up to date")
        elif entry is None:
            note = lock_problem or (lock.broken[tool][1] if tool in lock.broken
                                    else "not locked: `toolbox lock` locks it")
        else:
            note = None
        base["locked_digest"] = entry.digest if entry else None
        try:
            # a project's recipe chooses the registry asked: not before it is trusted
            owner.check_trusted([recipe])
        except NotTrusted:
            rows.append(_row(base, note=note, problem=f"{owner.pins.path} defines this recipe, and you have "
                                                      "not trusted it: read it, then `toolbox trust`"))
            continue
        rows.append(_checked(context, recipe, version, entry, base, note, tags_of))
    return rows


def _row(base, **fields):
    values = {"image": None, "tag": None, "locked_digest": None, "newest": None, "newer": False,
              "tag_digest": None, "tag_moved": None, "note": None, "problem": None}
    values.update(base)
    values.update(fields)
    return OutdatedTool(**values)


def _checked(context, recipe, version, entry, base, note, tags_of):
    from toolbox.errors import NotFound
    from toolbox.oci.reference import ImageRef
    from toolbox.oci.versions import is_newer, newest, versions_in

    client = context.client()
    if recipe.image not in tags_of:  # once per repository, and a failure once too
        try:
            tags_of[recipe.image] = (
                client.list_tags(ImageRef.parse(f"{recipe.image}:{recipe.tag_for(version)}")), None)
        except ToolboxError as err:
            tags_of[recipe.image] = (None, err)
    tags, failure = tags_of[recipe.image]
    if failure is not None:
        return _row(base, note=note, problem=f"cannot list the tags of {recipe.image}: {failure.message}")
    found = newest(version, versions_in(recipe.tag, tags))
    if found is None:
        why = (f"the recipe's tags ({recipe.tag}) do not depend on the version"
               if "{version}" not in recipe.tag else
               f"{version} is not a numbered version: nothing to compare it with"
               if not _numbered(version) else
               f"no tag of {recipe.image} has the shape of {version}")
        note = f"{note}; {why}" if note else why
    try:
        tag_digest = str(client.get_manifest(ImageRef.parse(recipe.reference_for(version))).digest)
    except NotFound:
        tag_digest = None
        gone = f"the tag {recipe.tag_for(version)} is gone from {recipe.image}"
        note = f"{note}; {gone}" if note else gone
    except ToolboxError as err:
        return _row(base, note=note, newest=found.text if found else None, newer=is_newer(found, version),
                    problem=f"cannot ask for the tag {recipe.tag_for(version)}: {err.message}")
    moved = None if entry is None or tag_digest is None else tag_digest != entry.digest
    return _row(base, note=note, newest=found.text if found else None, newer=is_newer(found, version),
                tag_digest=tag_digest, tag_moved=moved)


def _numbered(version):
    from toolbox.oci.versions import parse_version

    return parse_version(version) is not None
