"""The catalog: every recipe visible from here — a project's, the user's (the config directory's
recipes/) and the built-ins (recipes/ at the top of the checkout, installed in the package) — by
precedence, with the aliases resolved and the recipes that do not validate kept apart."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from toolbox.errors import RecipeError, UnknownTool
from toolbox.project.recipes import SOURCES, Alias, BrokenRecipe, Recipe, parse_recipe
from toolbox.project.tomlinput import parse_toml_bytes

if TYPE_CHECKING:  # names for the annotations only
    from toolbox.layout import Layout
    from toolbox.project.project import Pins


def builtin_dir() -> str:
    from toolbox.layout import shipped_dir

    return shipped_dir("recipes")


def load_directory(path: str, source: str, stamps: dict[str, tuple | None] | None = None,
                   broken: dict[str, BrokenRecipe] | None = None) -> dict[str, Recipe]:
    """{name: Recipe} from every NAME.toml in `path` (none when it does not exist). `stamps`,
    when given, receives the stamp of the directory (taken before it is listed: a file added
    later changes it) and of each file as read. A file that does not make a recipe raises
    RecipeError, or with `broken` (a dict) is put there as a BrokenRecipe."""
    from toolbox.fsutil import read_input
    from toolbox.stamps import stamp

    if stamps is not None:
        stamps[path] = stamp(path)
    try:
        names = sorted(entry for entry in os.listdir(path) if entry.endswith(".toml"))
    except FileNotFoundError:
        return {}
    recipes = {}
    for entry in names:
        origin, name = os.path.join(path, entry), entry[:-5]
        try:
            found = read_input(origin, "file", error=RecipeError)
            if stamps is not None:
                stamps[origin] = found.stamp if found is not None else None
            if found is not None:
                recipes[name] = parse_recipe(name, parse_toml_bytes(found.data, origin), source, origin)
        except RecipeError as err:
            if broken is None:
                raise
            if stamps is not None and origin not in stamps:
                stamps[origin] = stamp(origin)  # refused unread (too big, not a file): its stamp still counts
            broken[name] = BrokenRecipe(name, source, origin, err)
    return recipes


class Catalog:
    """Every recipe visible from here, by precedence, with the aliases resolved; the names
    whose recipe (of the highest source that has one) does not validate are in `broken`."""

    def __init__(self, by_source: dict[str, dict[str, Recipe]], stamps: dict[str, tuple | None] | None = None,
                 broken_by_source: dict[str, dict[str, BrokenRecipe]] | None = None) -> None:
        self.by_source = by_source  # source -> {name: Recipe}
        self.stamps = stamps or {}  # every recipe file and directory read: path -> stamp
        self.recipes = {}
        self.broken = {}  # name -> BrokenRecipe
        for source in reversed(SOURCES):  # higher precedence overwrites
            for name, recipe in by_source.get(source, {}).items():
                self.recipes[name] = recipe
                self.broken.pop(name, None)
            for name, broken in (broken_by_source or {}).get(source, {}).items():
                self.broken[name] = broken
                self.recipes.pop(name, None)
        self.aliases = {}  # alias name -> (recipe, Alias)
        for recipe in self.recipes.values():
            for alias in recipe.aliases.values():
                if alias.name not in self.recipes and alias.name not in self.broken:
                    self.aliases.setdefault(alias.name, (recipe, alias))

    @classmethod
    def load(cls, layout: Layout, project: Pins | None = None) -> Catalog:
        stamps = {}
        broken = {"builtin": {}, "user": {}}
        by_source = {"builtin": load_directory(builtin_dir(), "builtin", stamps, broken["builtin"]),
                     "user": load_directory(layout.user_recipes_dir, "user", stamps, broken["user"])}
        if project is not None:
            by_source["project"] = project.recipes
            broken["project"] = project.broken_recipes
        return cls(by_source, stamps, broken)

    def check_usable(self, names: Iterable[str]) -> None:
        """Raise the error of the first of `names` whose recipe does not validate."""
        for name in sorted(names):
            if name in self.broken:
                raise self.broken[name].error

    def shadowed(self, name: str) -> Recipe | None:
        """The recipe of this name a higher source replaces (for the trust diff), or None."""
        found = [self.by_source[source][name] for source in SOURCES if name in self.by_source.get(source, {})]
        return found[1] if len(found) > 1 else None

    def find(self, name: str) -> tuple[Recipe, Alias | None]:
        """(Recipe, Alias or None) for a tool name or alias; UnknownTool suggests close names."""
        if name in self.recipes:
            return self.recipes[name], None
        if name in self.aliases:
            return self.aliases[name]
        self.check_usable([name])
        raise UnknownTool(f"no recipe for {name!r}", hint=self.suggestion(name))

    def suggestion(self, name: str) -> str:
        import difflib

        close = difflib.get_close_matches(name, list(self.recipes) + list(self.aliases) + list(self.broken),
                                          n=3, cutoff=0.6)
        if close:
            return f"did you mean {' or '.join(close)}? (`toolbox recipes list` shows them all)"
        return ("`toolbox recipes search WORD` finds recipes; an image reference needs a registry or tag, "
                "e.g. docker.io/library/NAME:TAG")

    def search(self, word: str) -> list[Recipe]:
        word = word.lower()
        return [r for r in sorted(self.recipes.values(), key=lambda r: r.name) if word in r.name
                or word in r.description.lower() or word in r.image or any(word in a for a in r.aliases)]
