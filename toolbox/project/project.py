"""A project's toolbox.toml: the tool versions it pins and the recipes it defines.

    # toolbox.toml, found by walking up from the current directory
    [tools]
    jq = "1.7.1"
    python = "3.11"

    [recipes.lint]          # a recipe of the project's own (see recipes.py): needs `toolbox trust`
    image = "ghcr.io/example/lint"
    default_version = "2"

Which file applies is decided by plans.find_project_file (the walk up and where it stops).
The file is read once, bounded in size, and refused when it belongs to another user (not you,
not root) unless its directory is allowed (safe_directories in config.toml, or
TOOLBOX_SAFE_DIRECTORIES), as git refuses a repository someone else owns. Outside any project,
the [tools] table of the user's config.toml pins versions the same way.
toolbox.lock beside the file records what the pins resolved to (lockfile.py). `add` and
`remove` edit the file line by line, so the user's comments and layout stay as they were.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from toolbox.errors import ConfigError, ForeignFile, RecipeError
from toolbox.fsutil import read_input
from toolbox.hot.plans import SAFE_ENV, find_project_file
from toolbox.project.recipes import (
    NAME_PATTERN,
    VERSION_PATTERN,
    BrokenRecipe,
    parse_recipe,
)
from toolbox.project.tomlinput import parse_toml_bytes

if TYPE_CHECKING:  # names for the annotations only
    from toolbox.fsutil import InputFile
    from toolbox.layout import Layout
    from toolbox.project.config import UserConfig

LOCK_FILE = "toolbox.lock"
PROJECT_KEYS = {"tools", "recipes", "services"}


@dataclass(frozen=True)
class Pins:
    """Where versions are pinned: a project's toolbox.toml, or the user's config outside one."""

    path: str  # the file the pins are in
    lock_path: str
    versions: dict  # tool name -> version
    recipes: dict = field(default_factory=dict)  # name -> Recipe, source "project"
    stamp: tuple | None = None  # of the bytes parsed (stamps.stamp_of)
    is_project: bool = True
    broken_recipes: dict = field(default_factory=dict)  # name -> BrokenRecipe: only that name fails
    services: object = None  # the [services] table as written; read by `toolbox up` (services.py)

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path)


def load_project(path: str, safe_directories: Iterable[str] = (),
                 environ: Mapping[str, str] = os.environ) -> Pins:
    """The pins and recipes of the toolbox.toml at `path`, from one read of its bytes."""
    found = read_input(path, "project file")
    if found is None:
        raise ConfigError(f"cannot read {path}: No such file or directory")
    check_owner(found, safe_directories, environ)
    doc = parse_toml_bytes(found.data, path, ConfigError)
    unknown = sorted(set(doc) - PROJECT_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r}",
                          hint="allowed: [tools], [recipes.NAME] and [services.NAME]")
    recipes_table = doc.get("recipes", {})
    if not isinstance(recipes_table, dict):
        raise ConfigError(f"{path}: 'recipes' must hold [recipes.NAME] tables")
    recipes, broken = {}, {}
    for name, table in recipes_table.items():  # a recipe that does not validate stops only its own name
        try:
            recipes[name] = parse_recipe(name, table, "project", path)
        except RecipeError as err:
            broken[name] = BrokenRecipe(name, "project", path, err)
    return Pins(path, os.path.join(os.path.dirname(path), LOCK_FILE), parse_pins(doc.get("tools", {}), path),
                recipes, found.stamp, broken_recipes=broken, services=doc.get("services"))


def check_owner(found: InputFile, safe_directories: Iterable[str] = (),
                environ: Mapping[str, str] = os.environ) -> None:
    """A project file read (fsutil.InputFile) must be yours or root's, unless its directory is
    allowed: another user who can write a parent directory, a shared checkout or /tmp must
    not choose the images and pins that run as you."""
    if found.owner in (os.getuid(), 0):
        return
    directory = os.path.dirname(os.path.abspath(found.path))
    allowed = (list(safe_directories)
               + [entry for entry in environ.get(SAFE_ENV, "").split(os.pathsep) if entry])
    if "*" in allowed or os.path.realpath(directory) in {os.path.realpath(entry) for entry in allowed}:
        return
    raise ForeignFile(
        f"{found.path} belongs to {_user_name(found.owner)}, not to you: toolbox does not follow another "
        "user's project files",
        hint=f"if you trust that user's file, allow its directory: add \"{directory}\" to safe_directories "
             f"in your config.toml, or set {SAFE_ENV}={directory}; else work in a directory of your own",
    )


def _user_name(uid):
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def parse_pins(table: object, path: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tools] must be a table of name = \"version\"")
    for name, version in table.items():
        if not NAME_PATTERN.match(name):
            raise ConfigError(f"{path}: [tools] {name!r} is not a tool name (lowercase letters, digits, '.', "
                              "'_', '-')")
        if not isinstance(version, str) or not VERSION_PATTERN.match(version):
            raise ConfigError(f"{path}: [tools] {name} = {version!r}: a version is a string like \"1.7.1\"")
    return dict(table)


def current_pins(layout: Layout, cwd: str, user_config: UserConfig,
                 environ: Mapping[str, str] = os.environ) -> Pins:
    """The project's pins when `cwd` is in one, else the user's global pins. (In a project,
    the global pins still apply to the tools it does not pin: ops/context.Context.pinned.)"""
    path = find_project_file(cwd)
    if path is not None:
        return load_project(path, user_config.safe_directories, environ)
    return global_pins(layout, user_config)


def global_pins(layout: Layout, user_config: UserConfig) -> Pins:
    """The [tools] of the user's config.toml, locked in the config directory's toolbox.lock."""
    return Pins(user_config.path or layout.config_file, os.path.join(layout.config_dir, LOCK_FILE),
                dict(user_config.tools), stamp=user_config.stamp, is_project=False)


# -- editing toolbox.toml, keeping the user's comments and layout -------------------------------------
_TABLE_HEADER = re.compile(r"\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def _toml_key(name):
    return name if _BARE_KEY.match(name) else f'"{name}"'


def _key_of(line):
    """The key a `key = value` line sets, unquoted, or None."""
    match = re.match(r'\s*(?:"([^"]+)"|([A-Za-z0-9_.-]+))\s*=', line)
    return (match.group(1) or match.group(2)) if match else None


def edit_pins(path: str, set_versions: dict[str, str] | None = None, remove: Iterable[str] = (),
              new_file_mode: int = 0o644) -> None:
    """Set `set_versions` ({tool: version}) and drop `remove` in the [tools] table of the file
    at `path` (created when missing), changing only those lines. Written atomically, and only
    when the result reads back as exactly the intended change: pins written another way (dotted
    `tools.jq = ...` keys, an inline table) are refused rather than guessed at."""
    import tomllib

    found = read_input(path, "file")
    text = found.data.decode("utf-8") if found is not None else ""
    before = tomllib.loads(text)  # the caller loaded it: it parses
    intended = dict(before)
    intended["tools"] = {k: v for k, v in dict(before.get("tools", {}), **(set_versions or {})).items()
                         if k not in remove}
    if not intended["tools"] and "tools" not in before:
        del intended["tools"]
    edited = _edited_text(text, dict(set_versions or {}), remove)
    try:
        result = tomllib.loads(edited)
    except tomllib.TOMLDecodeError:
        result = None
    if result != intended:
        raise ConfigError(f"cannot edit {path}: its pins are not one `name = \"version\"` line each under a "
                          "[tools] table",
                          hint="edit the file by hand, or write the pins that way")
    from toolbox.fsutil import atomic_write

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
            kept += [f'{_toml_key(name)} = "{version}"{newline}'
                     for name, version in sorted(set_versions.items())]
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
