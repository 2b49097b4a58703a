"""Trust in a project's toolbox.toml. A project that defines recipes chooses images, host
mounts, host variables and networks for tools that run as you, so its recipes are refused until
you run `toolbox trust` there, and refused again after any change to the file: trust is bound
to the file's path and the sha256 of its bytes. Built-in and user recipes are trusted.

Kept in the data directory, one small file per trusted project (no shared file to rewrite).
"""

import hashlib
import os

from .errors import ToolboxError


class NotTrusted(ToolboxError):
    """A project's recipe would run before the user trusted the file that defines it."""


class TrustStore:
    def __init__(self, layout):
        self.directory = os.path.join(layout.data_dir, "trusted")

    def record_path(self, pins):
        return os.path.join(self.directory, hashlib.sha256(os.fsencode(os.path.abspath(pins.path))).hexdigest())

    def is_trusted(self, pins):
        try:
            with open(self.record_path(pins), encoding="utf-8") as file:
                path, content_hash = file.read().splitlines()[:2]
        except (FileNotFoundError, ValueError):
            return False
        return path == os.path.abspath(pins.path) and content_hash == pins.content_hash

    def trust(self, pins):
        from .fsutil import atomic_write

        atomic_write(self.record_path(pins), f"{os.path.abspath(pins.path)}\n{pins.content_hash}\n".encode(), 0o600)

    def untrust(self, pins):
        from .fsutil import unlink_quietly

        unlink_quietly(self.record_path(pins))


def permission_diff(recipe, catalog):
    """What running this project recipe grants, against the recipe it replaces if any: lines
    starting with + (granted), - (no longer granted) or two spaces (as the built-in has it)."""
    replaced = catalog.shadowed(recipe.name)
    if replaced is None:
        return [f"+ {line}" for line in recipe.grants()]
    before = replaced.grants()
    after = recipe.grants()
    return [f"+ {line}" for line in after if line not in before] + [f"- {line}" for line in before if line not in after]


def refusal(pins, recipes, catalog):
    """The NotTrusted error for running `recipes` (project recipes) from an untrusted file."""
    lines = []
    for recipe in recipes:
        replaced = catalog.shadowed(recipe.name)
        what = f"replaces the {replaced.source} recipe" if replaced else "a recipe of this project's own"
        lines.append(f"  {recipe.name} ({what}):")
        lines += [f"    {line}" for line in permission_diff(recipe, catalog)]
    return NotTrusted(
        f"{pins.path} defines recipes that are not trusted yet; running them would grant:\n" + "\n".join(lines),
        hint=f"read {pins.path}, then run `toolbox trust` in {pins.directory} (any change to the file asks again)",
    )
