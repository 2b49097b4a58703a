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
"""

from dataclasses import dataclass, field

from .errors import ConfigError, ToolboxError

LOCK_VERSION = 1
HEADER = "# Written by `toolbox lock` from toolbox.toml: commit it, do not edit it.\n"
ENTRY_KEYS = ("recipe", "source", "version", "image", "tag", "digest", "platforms")


class LockError(ConfigError):
    pass


class OutOfDate(ToolboxError):
    """toolbox.toml and toolbox.lock disagree and resolving is not allowed (--frozen, CI)."""


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
    def reference(self):
        return f"{self.image}:{self.tag}"

    def matches(self, recipe, version):
        """Whether this entry is what `recipe` makes of `version` now."""
        return (self.recipe, self.version, self.image, self.tag) == (recipe.name, version, recipe.image, recipe.tag_for(version))

    def manifest_for(self, platform):
        """The locked manifest digest to run on `platform` (a Platform)."""
        from .platform import Platform

        candidates = [(key, digest) for key, digest in sorted(self.platforms.items()) if platform.matches(Platform.parse(key))]
        exact = [c for c in candidates if c[0] == str(platform)]
        if not (exact or candidates):
            raise LockError(
                f"{self.tool}: the locked image {self.reference} has no manifest for {platform} (locked: {', '.join(sorted(self.platforms)) or 'none'})",
                hint="pick a version published for this platform, then `toolbox lock`",
            )
        return (exact or candidates)[0][1]

    def pinned_reference(self, platform):
        return f"{self.image}@{self.manifest_for(platform)}"

    def to_toml(self):
        return {"recipe": self.recipe, "source": self.source, "version": self.version, "image": self.image, "tag": self.tag,
                "digest": self.digest, "platforms": dict(sorted(self.platforms.items()))}


def read_lock(path):
    """{tool: LockEntry}; empty when the file does not exist."""
    import tomllib

    try:
        with open(path, "rb") as file:
            doc = tomllib.load(file)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as err:
        raise LockError(f"{path}: not valid TOML: {err}", hint="remove it and run `toolbox lock` to write it again") from None
    if doc.get("lock_version") != LOCK_VERSION:
        raise LockError(f"{path}: lock_version {doc.get('lock_version')!r} is not {LOCK_VERSION}", hint="run `toolbox lock` to write it again")
    tools = doc.get("tools", {})
    if not isinstance(tools, dict):
        raise LockError(f"{path}: [tools] must hold one table per tool")
    return {tool: _entry(tool, table, path) for tool, table in tools.items()}


def _entry(tool, table, path):
    if not isinstance(table, dict) or set(table) != set(ENTRY_KEYS):
        raise LockError(f"{path}: [tools.{tool}] must have exactly {', '.join(ENTRY_KEYS)}", hint="run `toolbox lock` to write it again")
    platforms = table["platforms"]
    strings = [table[key] for key in ENTRY_KEYS if key != "platforms"]
    if not all(isinstance(value, str) and value for value in strings) or not isinstance(platforms, dict) or not platforms \
            or not all(isinstance(d, str) and d.startswith("sha256:") for d in platforms.values()):
        raise LockError(f"{path}: [tools.{tool}] has a value of the wrong kind", hint="run `toolbox lock` to write it again")
    return LockEntry(tool, *strings, platforms=dict(platforms))


def render(entries):
    """The lock file's bytes: the same entries give the same bytes."""
    import tomli_w

    doc = {"lock_version": LOCK_VERSION, "tools": {tool: entries[tool].to_toml() for tool in sorted(entries)}}
    return (HEADER + "\n" + tomli_w.dumps(doc)).encode("utf-8")


def write_lock(path, entries):
    """Atomically, and only when the bytes change (a clean checkout stays clean)."""
    data = render(entries)
    try:
        with open(path, "rb") as file:
            if file.read() == data:
                return False
    except FileNotFoundError:
        pass
    from .fsutil import atomic_write

    atomic_write(path, data)
    return True


def disagreements(pins, catalog, entries):
    """Where the lock does not match the pins: (tool, reason) pairs, empty when it does."""
    reasons = []
    for tool, version in sorted(pins.versions.items()):
        entry = entries.get(tool)
        recipe = catalog.recipes.get(tool)
        if entry is None:
            reasons.append((tool, f"{tool} is pinned but not locked"))
        elif recipe is None:
            reasons.append((tool, f"{tool}: no recipe"))
        elif not entry.matches(recipe, version):
            reasons.append((tool, f"{tool}: pinned {version} ({recipe.reference_for(version)}), locked {entry.version} ({entry.reference})"))
    reasons += [(tool, f"{tool} is locked but no longer pinned") for tool in sorted(set(entries) - set(pins.versions))]
    return reasons
