"""Trust in a project's own recipes. A recipe in toolbox.toml chooses an image, a command, host
mounts, host variables and a network for a tool that runs as you, so a project's recipes are
refused until you trust them. What is trusted is each recipe's *grants* (Recipe.grant_items:
image, tag scheme, command, default command, aliases' commands, mounts, env, pass_env,
network), not the file's bytes: pins, versions, comments and the other recipes can change
without asking again, and a change to a recipe's grants asks again showing exactly what changed
(+ new, - dropped).

Trust is per checkout: the record is keyed by the toolbox.toml's absolute path, so a second
clone or a git worktree of the same project asks on its own (the refusal says when the same
grants are trusted in another checkout). A CI job trusts explicitly: TOOLBOX_TRUSTED_PROJECTS
lists project directories (like PATH) whose recipes are trusted as they are.

Records are kept in the data directory, one small JSON file per project (no shared file to
rewrite), read once and bounded like every input.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from toolbox.errors import NotTrusted, ToolboxError
from toolbox.hot.plans import TRUST_ENV
from toolbox.project.recipes import NOT_GRANTED_NETWORKS, describe_grant, sorted_grants

if TYPE_CHECKING:  # names for the annotations only
    from toolbox.layout import Layout
    from toolbox.project.catalog import Catalog
    from toolbox.project.project import Pins
    from toolbox.project.recipes import Recipe

TRUST_VERSION = 2


class TrustRecord:
    """What was trusted for one project file: {recipe name: frozenset of grant tuples}."""

    __slots__ = ("path", "recipes", "stamp")

    def __init__(self, path: str, recipes: dict[str, frozenset], stamp: tuple | None) -> None:
        self.path = path  # the record file
        self.recipes = recipes
        self.stamp = stamp  # of the bytes read; None when there is no record


class TrustStore:
    def __init__(self, layout: Layout, environ: Mapping[str, str] = os.environ) -> None:
        self.directory = os.path.join(layout.data_dir, "trusted")
        self.environ = environ

    def record_path(self, project_file: str) -> str:
        return os.path.join(self.directory,
                            hashlib.sha256(os.fsencode(os.path.abspath(project_file))).hexdigest() + ".json")

    def read(self, project_file: str) -> TrustRecord:
        """The TrustRecord for `project_file` (empty when none, damaged, or of an older kind:
        round 1 trusted the file's hash, which says nothing about grants)."""
        from toolbox.fsutil import read_input

        path = self.record_path(project_file)
        found = read_input(path, "trust record")
        if found is None:
            return TrustRecord(path, {}, None)
        try:
            doc = json.loads(found.data)
            if doc.get("version") != TRUST_VERSION or doc.get("project") != os.path.abspath(project_file):
                raise ValueError("another project or version")
            recipes = {name: _grants(items) for name, items in doc["recipes"].items()}
        except (ValueError, TypeError, KeyError, AttributeError):
            recipes = {}
        return TrustRecord(path, recipes, found.stamp)

    def trusted_by_environment(self, project_file: str) -> bool:
        """Whether TOOLBOX_TRUSTED_PROJECTS names the project's directory (CI)."""
        directory = os.path.realpath(os.path.dirname(os.path.abspath(project_file)))
        listed = [entry for entry in self.environ.get(TRUST_ENV, "").split(os.pathsep) if entry]
        return any(os.path.isabs(entry) and os.path.realpath(entry) == directory for entry in listed)

    def untrusted(self, project_file: str, recipes: list[Recipe]) -> tuple[list[Recipe], TrustRecord]:
        """The recipes (of those given) whose grants are not trusted, and the record read."""
        record = self.read(project_file)
        if self.trusted_by_environment(project_file):
            return [], record
        return [r for r in recipes if record.recipes.get(r.name) != r.grant_items()], record

    def trust(self, project_file: str, recipes: list[Recipe], keep: TrustRecord | None = None) -> dict:
        """Record `recipes`' grants as trusted for `project_file`; `keep` (a TrustRecord) keeps
        what it trusted of other recipes. Returns what was written, {name: grants}."""
        from toolbox.fsutil import atomic_write

        trusted = dict(keep.recipes) if keep is not None else {}
        trusted.update({recipe.name: recipe.grant_items() for recipe in recipes})
        doc = {"version": TRUST_VERSION, "project": os.path.abspath(project_file),
               "recipes": {name: [list(item) for item in sorted_grants(items)]
                           for name, items in sorted(trusted.items())}}
        atomic_write(self.record_path(project_file),
                     json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n", 0o600)
        return trusted

    def untrust(self, project_file: str) -> None:
        from toolbox.fsutil import unlink_quietly

        unlink_quietly(self.record_path(project_file))

    def projects_defining(self, name: str) -> list[str]:
        """The project files whose trusted recipes include `name`."""
        found = []
        for project, recipes in self._records():
            if name in recipes:
                found.append(project)
        return sorted(found)

    def _records(self):
        """(project file, {recipe: grants}) of every trust record that reads."""
        from toolbox.fsutil import read_input

        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                doc = json.loads(read_input(os.path.join(self.directory, name), "trust record").data)
                if doc.get("version") == TRUST_VERSION:
                    yield doc["project"], {n: _grants(items) for n, items in doc["recipes"].items()}
            except (ToolboxError, ValueError, TypeError, KeyError, AttributeError):
                continue

    def trusted_elsewhere(self, project_file: str, recipes: list[Recipe]) -> list[str]:
        """Other project files for which exactly these recipes' grants are trusted (another
        checkout or worktree of the same project, usually)."""
        wanted = {recipe.name: recipe.grant_items() for recipe in recipes}
        own = os.path.abspath(project_file)
        return [project for project, trusted in self._records()
                if project != own and all(trusted.get(name) == grants for name, grants in wanted.items())]


def _grants(items):
    """A recorded recipe's grants. Records written before `network none` stopped counting as a
    grant still list it: dropped here, so that they match what the same recipe grants now."""
    return (frozenset(tuple(item) for item in items)
            - {("network", network) for network in NOT_GRANTED_NETWORKS})


def grant_diff(recipe: Recipe, record: TrustRecord, catalog: Catalog) -> tuple[str, list[str]]:
    """(what the lines are compared with, lines): each grant of `recipe` as "+ grant" when new,
    "  grant" when unchanged, and "- grant" for what is no longer granted. Compared with what
    was trusted for this recipe, else with the recipe of the same name it replaces (what you
    have without this project), else with nothing."""
    if recipe.name in record.recipes:
        basis, before = "changed since you trusted it", record.recipes[recipe.name]
    else:
        replaced = catalog.shadowed(recipe.name)
        if replaced is not None:
            basis, before = f"replaces the {replaced.source} recipe", replaced.grant_items()
        else:
            kind = "a service" if recipe.name.startswith("service ") else "a recipe"
            basis, before = f"{kind} of this project's own", frozenset()
    after = recipe.grant_items()
    lines = []
    for item in sorted_grants(after | before):
        mark = "+" if item not in before else ("-" if item not in after else " ")
        lines.append(f"{mark} {describe_grant(item)}")
    return basis, lines


def describe(recipes: list[Recipe], record: TrustRecord, catalog: Catalog) -> list[str]:
    """The grants of `recipes` against what was trusted, as the lines refusals, prompts and
    `toolbox trust` print."""
    lines = []
    for recipe in sorted(recipes, key=lambda r: r.name):
        basis, diff = grant_diff(recipe, record, catalog)
        lines.append(f"  {recipe.name} ({basis}):")
        lines += [f"    {line}" for line in diff]
    return lines


def refusal(pins: Pins, recipes: list[Recipe], record: TrustRecord, catalog: Catalog,
            elsewhere: Iterable[str] = (), kind: str = "recipes") -> NotTrusted:
    """The NotTrusted error for using `recipes` (project recipes, or services: `kind`) whose
    grants are not trusted."""
    changed = any(recipe.name in record.recipes for recipe in recipes)
    what = "changed since you trusted them" if changed else "not trusted yet"
    hint = f"read {pins.path}, then run `toolbox trust` in {pins.directory}"
    if elsewhere:
        hint += f" (the same grants are trusted for {elsewhere[0]}: another checkout?)"
    hint += f"; in CI, {TRUST_ENV}={pins.directory}"
    return NotTrusted(f"{pins.path} defines {kind} {what}; using them would grant:\n"
                      + "\n".join(describe(recipes, record, catalog)), hint=hint)
