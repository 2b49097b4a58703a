"""toolbox.lock: what each pinned tool resolved to, by digest, so a tag moved upstream changes
nothing until `toolbox lock --upgrade`. Meant to be committed, so written deterministically:
sorted keys, stable bytes (tomli-w), the same file for the same resolutions.

    [tools.jq]
    recipe = "jq"
    source = "builtin"                     # where the recipe came from: builtin, user, project
    version = "1.7.1"                      # as pinned
    image = "ghcr.io/jqlang/jq"
    tag = "1.7.1"                          # what the recipe made of the version
    digest = "sha256:..."                  # what the tag pointed at: an index or a manifest
    [tools.jq.platforms]                   # the manifest run on each platform
    "linux/amd64" = "sha256:..."
    "linux/arm64/v8" = "sha256:..."

A lock with git's conflict markers (a merge of two branches that changed it) is refused before
it is parsed (LockConflict), except by `toolbox lock`, which reads both sides as far as they parse
(conflict_sides, side_entries) and keeps what still matches the pins (ops/locking.merge_sides).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from toolbox.errors import LockConflict, LockError, ToolboxError

if TYPE_CHECKING:  # names for the annotations only
    from toolbox.fsutil import InputFile
    from toolbox.oci.platform import Platform
    from toolbox.project.catalog import Catalog
    from toolbox.project.project import Pins
    from toolbox.project.recipes import Recipe

LOCK_VERSION = 1
DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
HEADER = "# Written by `toolbox lock` from toolbox.toml: commit it, do not edit it.\n"
ENTRY_KEYS = ("recipe", "source", "version", "image", "tag", "digest", "platforms")


@dataclass(frozen=True)
class LockEntry:
    tool: str
    recipe: str
    source: str
    version: str
    image: str
    tag: str
    digest: str
    platforms: dict = field(default_factory=dict)  # "os/arch[/variant]" -> manifest digest

    @property
    def reference(self) -> str:
        return f"{self.image}:{self.tag}"

    def matches(self, recipe: Recipe, version: str) -> bool:
        """Whether this entry is what `recipe` makes of `version` now."""
        return ((self.recipe, self.version, self.image, self.tag)
                == (recipe.name, version, recipe.image, recipe.tag_for(version)))

    def manifest_for(self, platform: Platform) -> str:
        """The locked manifest digest to run on `platform` (a Platform)."""
        from toolbox.oci.platform import Platform

        candidates = [(key, digest) for key, digest in sorted(self.platforms.items())
                      if platform.matches(Platform.parse(key))]
        exact = [c for c in candidates if c[0] == str(platform)]
        if not (exact or candidates):
            raise LockError(
                f"{self.tool}: the locked image {self.reference} has no manifest for {platform} (locked: "
                f"{', '.join(sorted(self.platforms)) or 'none'})",
                hint="pick a version published for this platform, then `toolbox lock`",
            )
        return (exact or candidates)[0][1]

    def pinned_reference(self) -> str:
        """What a locked tool runs by: the digest the tag named. For an index, the pull picks
        this platform's manifest from the index itself (verified by that digest), so an edited
        platform map cannot make toolbox run another manifest of the repository; the map is
        checked against the index too (ops/locking.check_against_index)."""
        return f"{self.image}@{self.digest}"

    @property
    def is_lone_manifest(self) -> bool:
        """The tag named one image manifest, not an index: the map has that one entry."""
        return self.digest in self.platforms.values()

    def to_toml(self) -> dict:
        return {"recipe": self.recipe, "source": self.source, "version": self.version, "image": self.image,
                "tag": self.tag, "digest": self.digest, "platforms": dict(sorted(self.platforms.items()))}


class LockFile:
    """toolbox.lock as read: the entries that parse, the ones that do not (their raw tables, kept
    as they are when another tool's entry is written), and the stamp of the bytes read. A file
    with merge conflicts read with `conflicts=True` has no entries but `sides`: the entries of
    ours and of theirs ({tool: LockEntry} each)."""

    def __init__(self, entries: dict[str, LockEntry] | None = None, broken: dict[str, tuple] | None = None,
                 stamp: tuple | None = None, sides: tuple[dict, dict] | None = None) -> None:
        self.entries = entries or {}  # tool -> LockEntry
        self.broken = broken or {}  # tool -> (raw table, what is wrong)
        self.stamp = stamp
        self.sides = sides  # (ours, theirs) when the file has merge conflicts


def conflicted(path: str) -> LockConflict:
    """The LockConflict for the lock at `path`: what to do about it."""
    return LockConflict(f"{path} has merge conflicts (git's <<<<<<< markers)",
                        hint="run `toolbox lock`: it resolves them from toolbox.toml, keeping every entry "
                             "that still matches its pin and resolving only the others; then commit "
                             "toolbox.lock (--frozen and CI=true never resolve)")


def read_lock(path: str, check_owner: Callable[[InputFile], None] | None = None,
              conflicts: bool = False) -> LockFile:
    """The LockFile at `path` (empty when the file does not exist). A file that is not valid
    TOML, or of another lock_version, is an error; an entry that does not validate is kept
    apart (LockFile.broken) so that it stops only its own tool. `check_owner` is called with
    the fsutil.InputFile read (project.check_owner). A file with merge conflict markers is a
    LockConflict, or with `conflicts` a LockFile of its two sides."""
    from toolbox.fsutil import read_input
    from toolbox.project.tomlinput import parse_toml_bytes

    found = read_input(path, "lock file", error=LockError)
    if found is None:
        return LockFile()
    if check_owner is not None:
        check_owner(found)
    if has_conflict_markers(found.data):  # before TOML: the markers make it invalid, and say why
        if not conflicts:
            raise conflicted(path)
        text = found.data.decode("utf-8", "replace")
        return LockFile(stamp=found.stamp,
                        sides=tuple(side_entries(side, path) for side in conflict_sides(text)))
    doc = parse_toml_bytes(found.data, path, LockError)
    if type(doc.get("lock_version")) is not int or doc["lock_version"] != LOCK_VERSION:  # True == 1 in Python
        raise LockError(f"{path}: lock_version {doc.get('lock_version')!r} is not {LOCK_VERSION}",
                        hint="run `toolbox lock` to write it again")
    tools = doc.get("tools", {})
    if not isinstance(tools, dict):
        raise LockError(f"{path}: [tools] must hold one table per tool",
                        hint="run `toolbox lock` to write it again")
    lock = LockFile(stamp=found.stamp)
    for tool, table in tools.items():
        try:
            lock.entries[tool] = _entry(tool, table, path)
        except LockError as err:
            lock.broken[tool] = (table, err.message)
    return lock


# -- merge conflicts --------------------------------------------------------------------------------
# git's markers: 7 characters at the start of a line, a space and a label after all but the
# separator; diff3 and zdiff3 add the base between ||||||| and =======. (A lock's own lines
# start with a key, a quote or "[": none of them.)
_MARKER = re.compile(rb"^(?:(?:<{7}|\|{7}|>{7})(?: [^\n]*)?|={7})\r?$", re.MULTILINE)


def has_conflict_markers(data: bytes) -> bool:
    return _MARKER.search(data) is not None


def conflict_sides(text: str) -> tuple[str, str]:
    """(ours, theirs): the text of each side of a file with conflict markers, the lines outside
    conflicts in both, the base of a diff3 conflict in neither."""
    ours, theirs = [], []
    part = None  # None outside a conflict, else "ours", "base" or "theirs"
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        marker = bare[:7] if _MARKER.match(bare.encode("utf-8", "replace")) else None
        if marker == "<" * 7 and part is None:
            part = "ours"
        elif marker == "|" * 7 and part == "ours":
            part = "base"
        elif marker == "=" * 7 and part in ("ours", "base"):
            part = "theirs"
        elif marker == ">" * 7 and part == "theirs":
            part = None
        else:
            if part in (None, "ours"):
                ours.append(line)
            if part in (None, "theirs"):
                theirs.append(line)
    return "".join(ours), "".join(theirs)


def side_entries(text: str, path: str) -> dict[str, LockEntry]:
    """{tool: LockEntry} of one side of a conflicted lock, as far as it parses: the whole side
    when it is valid TOML of this lock_version, else each tool's tables on their own (a side
    git merged into something TOML refuses, a table twice say); entries that do not validate,
    and tools whose tables appear twice, are left out."""
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        doc = None
    if doc is not None:
        tools = doc.get("tools") if doc.get("lock_version") == LOCK_VERSION else None
        tables = tools.items() if isinstance(tools, dict) else ()
    else:
        tables = _tool_tables(text)
    entries = {}
    for tool, table in tables:
        try:
            entries[tool] = _entry(tool, table, path)
        except LockError:
            continue
    return entries


def _tool_tables(text):
    """[(tool, table)] from the [tools.NAME] and [tools.NAME.platforms] sections of `text`,
    each tool's sections parsed on their own; a tool whose sections do not parse together is
    left out."""
    import tomllib

    sections, current = {}, None
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            try:
                path = _key_path(tomllib.loads(stripped))
            except tomllib.TOMLDecodeError:
                path = None
            current = path[1] if path and path[0] == "tools" and len(path) in (2, 3) else None
            if current is not None:
                sections.setdefault(current, []).append(line if line.endswith("\n") else line + "\n")
            continue
        if current is not None:
            sections[current].append(line)
    tables = []
    for tool, lines in sections.items():
        try:
            tables.append((tool, tomllib.loads("".join(lines))["tools"][tool]))
        except (tomllib.TOMLDecodeError, KeyError, TypeError):
            continue
    return tables


def _key_path(doc):
    """The keys of the one table a lone `[a.b.c]` header makes: ["a", "b", "c"]."""
    path = []
    while isinstance(doc, dict) and len(doc) == 1:
        key, doc = next(iter(doc.items()))
        path.append(key)
    return path


# -- what changed ------------------------------------------------------------------------------------
def short_digest(digest: str | None) -> str:
    """The first 12 hex digits, as images and `docker images` show a digest."""
    return digest.partition(":")[2][:12] if digest else "?"


@dataclass(frozen=True)
class LockChange:
    """One tool's entry before and after a lock was brought up to date (None: absent)."""

    tool: str
    before: LockEntry | None
    after: LockEntry | None
    was_damaged: bool = False  # the entry before did not validate

    def describe(self) -> str:
        """One line for people: `jq 1.7.1 → 1.7.2 (4de8791a2b3c → f1905e6d1a2b)`."""
        tool, before, after = self.tool, self.before, self.after
        if after is None:
            return (f"{tool} removed (was {before.version}, {short_digest(before.digest)})" if before
                    else f"{tool} removed (a damaged entry)")
        if before is None:
            if self.was_damaged:
                return f"{tool} {after.version}: a damaged entry written again ({short_digest(after.digest)})"
            return f"{tool} added: {after.version} ({short_digest(after.digest)})"
        digests = f"({short_digest(before.digest)} → {short_digest(after.digest)})"
        if before.version != after.version:
            return f"{tool} {before.version} → {after.version} {digests}"
        if before.reference != after.reference:
            return f"{tool} {after.version}: {before.reference} → {after.reference} {digests}"
        if before.digest != after.digest:
            return f"{tool}: tag {after.tag} moved {digests}"
        if (before.recipe, before.source) != (after.recipe, after.source):
            return (f"{tool} {after.version}: now from the {after.source} recipe {after.recipe} "
                    f"(was the {before.source} recipe {before.recipe})")
        return (f"{tool} {after.version}: platforms {', '.join(sorted(before.platforms))} → "
                f"{', '.join(sorted(after.platforms))}")


def lock_changes(before: dict[str, LockEntry], after: dict[str, LockEntry],
                 damaged: Iterable[str] = ()) -> list[LockChange]:
    """[LockChange] from the entries `before` to `after` ({tool: LockEntry} each), by tool;
    `damaged` names tools whose entry before did not validate."""
    changes = []
    for tool in sorted(set(before) | set(after) | set(damaged)):
        old, new = before.get(tool), after.get(tool)
        if old != new or tool in damaged:
            changes.append(LockChange(tool, old, new, was_damaged=tool in damaged))
    return changes


def _entry(tool, table, path):
    where = f"{path}: [tools.{tool}]"
    if not isinstance(table, dict) or set(table) != set(ENTRY_KEYS):
        raise LockError(f"{where} must have exactly {', '.join(ENTRY_KEYS)}",
                        hint="run `toolbox lock` to write it again")
    platforms = table["platforms"]
    strings = [table[key] for key in ENTRY_KEYS if key != "platforms"]
    if (not all(isinstance(value, str) and value for value in strings)
        or not isinstance(platforms, dict) or not platforms
        or not all(isinstance(d, str) for d in platforms.values())):
        raise LockError(f"{where} has a value of the wrong kind", hint="run `toolbox lock` to write it again")
    entry = LockEntry(tool, *strings, platforms=dict(platforms))
    _check_consistent(entry, where)
    return entry


def _check_consistent(entry, where):
    """What an entry can be checked against without the registry: well-formed digests, platforms
    and reference, and a map that fits the digest (a lone manifest locks exactly itself)."""
    from toolbox.oci.platform import Platform
    from toolbox.oci.reference import ImageRef

    bad = [d for d in [entry.digest, *entry.platforms.values()] if not DIGEST.match(d)]
    if bad:
        raise LockError(f"{where}: {bad[0]!r} is not a sha256 digest",
                        hint="run `toolbox lock` to write it again")
    try:
        for key in entry.platforms:
            Platform.parse(key)
        ImageRef.parse(f"{entry.image}:{entry.tag}")
    except ToolboxError as err:
        raise LockError(f"{where}: {err.message}", hint="run `toolbox lock` to write it again") from None
    if entry.is_lone_manifest and len(entry.platforms) != 1:
        raise LockError(f"{where}: digest {entry.digest} is one platform's manifest, but the entry maps "
                        f"{len(entry.platforms)} platforms",
                        hint="the lock was edited or damaged: run `toolbox lock --upgrade` and review the "
                             "change")
    if len(set(entry.platforms.values())) != len(entry.platforms):
        raise LockError(f"{where}: two platforms are mapped to the same manifest",
                        hint="the lock was edited or damaged: run `toolbox lock --upgrade` and review the "
                             "change")


def render(entries: dict[str, LockEntry], broken: dict[str, tuple] | None = None) -> bytes:
    """The lock file's bytes: the same entries give the same bytes. `broken` entries (raw
    tables, LockFile.broken) are written back as they were."""
    import tomli_w

    tables = {tool: entries[tool].to_toml() for tool in entries}
    tables.update({tool: table for tool, (table, _reason) in (broken or {}).items() if tool not in entries})
    doc = {"lock_version": LOCK_VERSION, "tools": {tool: tables[tool] for tool in sorted(tables)}}
    return (HEADER + "\n" + tomli_w.dumps(doc)).encode("utf-8")


def write_lock(path: str, entries: dict[str, LockEntry], broken: dict[str, tuple] | None = None) -> bool:
    """Atomically, and only when the bytes change (a clean checkout stays clean)."""
    data = render(entries, broken)
    try:
        with open(path, "rb") as file:
            if file.read(len(data) + 1) == data:
                return False
    except FileNotFoundError:
        pass
    from toolbox.fsutil import atomic_write

    atomic_write(path, data)
    return True


def disagreements(pins: Pins, catalog: Catalog, lock: LockFile) -> list[tuple[str, str]]:
    """Where the lock (a LockFile) does not match the pins: (tool, reason) pairs, empty when
    it does."""
    reasons = []
    for tool, version in sorted(pins.versions.items()):
        entry = lock.entries.get(tool)
        recipe = catalog.recipes.get(tool)
        if tool in lock.broken:
            reasons.append((tool, lock.broken[tool][1]))
        elif entry is None:
            reasons.append((tool, f"{tool} is pinned but not locked"))
        elif recipe is None:
            reasons.append((tool, f"{tool}: no recipe"))
        elif not entry.matches(recipe, version):
            reasons.append((tool, f"{tool}: pinned {version} ({recipe.reference_for(version)}), locked "
                                  f"{entry.version} ({entry.reference})"))
    locked = set(lock.entries) | set(lock.broken)
    reasons += [(tool, f"{tool} is locked but no longer pinned")
                for tool in sorted(locked - set(pins.versions))]
    return reasons
