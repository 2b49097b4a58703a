"""A project's toolbox.toml: the tool versions it pins and the recipes it defines.

    # toolbox.toml, found by walking up from the current directory
    [tools]
    jq = "1.7.1"
    python = "3.11"

    [recipes.lint]          # a recipe of the project's own (see recipes.py): needs `toolbox trust`
    image = "ghcr.io/example/lint"
    default_version = "2"

Outside any project, the [tools] table of the user's config.toml pins versions the same way.
toolbox.lock beside the file records what the pins resolved to (lockfile.py). `add` and
`remove` edit the file line by line, so the user's comments and layout stay as they were.
"""

import hashlib
import os
import re
from dataclasses import dataclass, field

from .errors import ConfigError
from .recipes import NAME_PATTERN, VERSION_PATTERN, RecipeError, parse_recipe, read_toml
from .toolplan import find_project_file  # noqa: F401  (light, so the launch path has it too)

LOCK_FILE = "toolbox.lock"
PROJECT_KEYS = {"tools", "recipes"}


@dataclass(frozen=True)
class Pins:
    """Where versions are pinned: a project's toolbox.toml, or the user's config outside one."""

    path: str  # the file the pins are in
    lock_path: str
    versions: dict  # tool name -> version
    recipes: dict = field(default_factory=dict)  # name -> Recipe, source "project"
    content_hash: str = ""  # sha256 of the file's bytes: what trust is bound to
    is_project: bool = True

    @property
    def directory(self):
        return os.path.dirname(self.path)


def load_project(path):
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None
    doc = read_toml(path, ConfigError)
    unknown = sorted(set(doc) - PROJECT_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r}", hint="allowed: [tools] and [recipes.NAME]")
    recipes_table = doc.get("recipes", {})
    if not isinstance(recipes_table, dict):
        raise ConfigError(f"{path}: 'recipes' must hold [recipes.NAME] tables")
    try:
        recipes = {name: parse_recipe(name, table, "project", path) for name, table in recipes_table.items()}
    except RecipeError as err:
        raise ConfigError(err.message, err.hint) from None
    return Pins(path, os.path.join(os.path.dirname(path), LOCK_FILE), parse_pins(doc.get("tools", {}), path), recipes,
                hashlib.sha256(data).hexdigest())


def parse_pins(table, path):
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tools] must be a table of name = \"version\"")
    for name, version in table.items():
        if not NAME_PATTERN.match(name):
            raise ConfigError(f"{path}: [tools] {name!r} is not a tool name (lowercase letters, digits, '.', '_', '-')")
        if not isinstance(version, str) or not VERSION_PATTERN.match(version):
            raise ConfigError(f"{path}: [tools] {name} = {version!r}: a version is a string like \"1.7.1\"")
    return dict(table)


def current_pins(layout, cwd, user_config):
    """The project's pins when `cwd` is in one, else the user's global pins."""
    path = find_project_file(cwd)
    if path is not None:
        return load_project(path)
    return Pins(user_config.path or layout.config_file, os.path.join(layout.config_dir, LOCK_FILE), dict(user_config.tools), is_project=False)


# -- editing toolbox.toml, keeping the user's comments and layout -------------------------------------
_TABLE_HEADER = re.compile(r"\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def _toml_key(name):
    return name if _BARE_KEY.match(name) else f'"{name}"'


def _key_of(line):
    """The key a `key = value` line sets, unquoted, or None."""
    match = re.match(r'\s*(?:"([^"]+)"|([A-Za-z0-9_.-]+))\s*=', line)
    return (match.group(1) or match.group(2)) if match else None


def edit_pins(path, set_versions=None, remove=(), new_file_mode=0o644):
    """Set `set_versions` ({tool: version}) and drop `remove` in the [tools] table of the file
    at `path` (created when missing), changing only those lines. Written atomically, and only
    when the result reads back as exactly the intended change: pins written another way (dotted
    `tools.jq = ...` keys, an inline table) are refused rather than guessed at."""
    import tomllib

    try:
        with open(path, "rb") as file:
            original = file.read()
    except FileNotFoundError:
        original = b""
    text = original.decode("utf-8")
    before = tomllib.loads(text)  # the caller loaded it: it parses
    intended = dict(before)
    intended["tools"] = {k: v for k, v in dict(before.get("tools", {}), **(set_versions or {})).items() if k not in remove}
    if not intended["tools"] and "tools" not in before:
        del intended["tools"]
    edited = _edited_text(text, dict(set_versions or {}), remove)
    try:
        result = tomllib.loads(edited)
    except tomllib.TOMLDecodeError:
        result = None
    if result != intended:
        raise ConfigError(f"cannot edit {path}: its pins are not one `name = \"version\"` line each under a [tools] table",
                          hint="edit the file by hand, or write the pins that way")
    from .fsutil import atomic_write

    mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else new_file_mode
    atomic_write(path, edited.encode("utf-8"), mode)


def _edited_text(text, set_versions, remove):
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += newline
    start, end = _tools_table(lines)
    if start is None and set_versions:
        if lines and lines[-1].strip():
            lines.append(newline)
        lines.append("[tools]" + newline)
        start = end = len(lines)
    last = _last_entry(lines, start, end) if start is not None else None
    kept = []
    for index, line in enumerate(lines):
        key = _key_of(line) if start is not None and start <= index < end else None
        if key in remove:
            continue
        if key in set_versions:
            value_part = line.split("=", 1)[1]
            comment = value_part[value_part.index("#"):].rstrip("\r\n") if "#" in value_part else ""
            line = f'{_toml_key(key)} = "{set_versions.pop(key)}"{"  " + comment if comment else ""}{newline}'
        kept.append(line)
        if index == last and set_versions:
            kept += [f'{_toml_key(name)} = "{version}"{newline}' for name, version in sorted(set_versions.items())]
            set_versions = {}
    kept += [f'{_toml_key(name)} = "{version}"{newline}' for name, version in sorted(set_versions.items())]
    return "".join(kept)


def _tools_table(lines):
    """(first line after the [tools] header, the index where the table ends) or (None, None)."""
    start = None
    for index, line in enumerate(lines):
        match = _TABLE_HEADER.match(line)
        if not match:
            continue
        if start is not None:
            return start, index
        if match.group(1) == "tools":
            start = index + 1
    return (start, len(lines)) if start is not None else (None, None)


def _last_entry(lines, start, end):
    """The index of the table's last key line (new keys go after it), or of its header."""
    last = start - 1
    for index in range(start, end):
        if _key_of(lines[index]):
            last = index
    return last
