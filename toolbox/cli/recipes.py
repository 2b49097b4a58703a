"""`toolbox recipes list|show|search`: the recipes that map tool names to images, as they
apply in the current directory (the project's, yours, the built-in ones)."""

import sys

import typer

from toolbox.cli import common
from toolbox.cli import support as complete
from toolbox.cli.render import print_listing, print_table
from toolbox.cli.support import HelpCommand
from toolbox.errors import ToolboxError

recipes_app = typer.Typer(help="The recipes that map tool names to images.", no_args_is_help=True)


def _context():
    from toolbox.ops.context import context_here

    return context_here()


@recipes_app.command("list", cls=HelpCommand)
def recipes_list(as_json: bool = common.JSON_OPTION):
    """Every recipe visible here (project, yours, built-in), by name; those that do not validate
    with their error."""
    catalog = _context().catalog
    names = sorted(set(catalog.recipes) | set(catalog.broken))

    def row(name):
        recipe = catalog.recipes.get(name)
        if recipe is None:
            return name, "-", catalog.broken[name].source, "BROKEN: does not validate (below)", ""
        return (recipe.name, recipe.default_version, recipe.source, recipe.image,
                " ".join(sorted(recipe.aliases)))

    def to_json(name):
        return (_recipe_json(catalog.recipes[name]) if name in catalog.recipes
                else _broken_json(catalog.broken[name]))

    print_listing(names, as_json, ("NAME", "DEFAULT", "SOURCE", "IMAGE", "ALIASES"), row, to_json)
    if as_json:
        return
    for name in sorted(catalog.broken):
        error = catalog.broken[name].error
        print(f"toolbox: warning: {error.message}" + (f" ({error.hint})" if error.hint else ""),
              file=sys.stderr)


def _broken_json(broken):
    return {"name": broken.name, "source": broken.source, "origin": broken.origin,
            "error": broken.error.message, "hint": broken.error.hint}


def _recipe_json(recipe):
    return {"name": recipe.name, "error": None, "source": recipe.source, "origin": recipe.origin,
            "image": recipe.image, "tag": recipe.tag, "default_version": recipe.default_version,
            "command": list(recipe.command) if recipe.command else None,
            "default_command": list(recipe.default_command) if recipe.default_command else None,
            "aliases": sorted(recipe.aliases), "description": recipe.description, "tty": recipe.tty,
            "network": recipe.network, "env": recipe.env, "pass_env": list(recipe.pass_env),
            "mounts": [{"source": m.source, "target": m.target, "read_only": m.read_only}
                       for m in recipe.mounts]}


@recipes_app.command("show", cls=HelpCommand)
def recipes_show(name: str = typer.Argument(..., metavar="TOOL", help="A tool name or alias.",
                                            autocompletion=complete.tool_names)):
    """A recipe in full: image, tag scheme, command, and what it grants of your machine."""
    context = _context()
    recipe, alias = context.catalog.find(name)
    if alias:
        print(f"{name} is an alias of {recipe.name}" + (f", version {alias.version}" if alias.version else "")
              + (f", command {' '.join(alias.command)}" if alias.command else ""))
    pinned, owner = context.pinned(recipe)
    print(f"name:     {recipe.name}   ({recipe.source}: {recipe.origin})")
    if recipe.description:
        print(f"about:    {recipe.description}")
    print(f"image:    {recipe.image}:{recipe.tag}")
    print(f"version:  default {recipe.default_version}"
          + (f", pinned {pinned} by {owner.pins.path}" if pinned else ""))
    print(f"command:  {recipe.describe_command()}")
    print(f"tty:      {'yes (interactive)' if recipe.tty else 'no'}")
    if recipe.aliases:
        print(f"aliases:  {' '.join(sorted(recipe.aliases))}")
    print("grants:   " + "\n          ".join(recipe.grants()))


@recipes_app.command("search", cls=HelpCommand)
def recipes_search(word: str = typer.Argument(..., metavar="WORD",
                                              help="A word from a name, alias, image or description.")):
    """Recipes whose name, aliases, image or description contain WORD."""
    found = _context().catalog.search(word)
    if not found:
        raise ToolboxError(f"no recipe matches {word!r}", hint="`toolbox recipes list` shows them all")
    print_table([("NAME", "IMAGE", "DESCRIPTION")] + [(r.name, r.image, r.description) for r in found])
