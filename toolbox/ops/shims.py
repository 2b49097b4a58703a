"""Which shims to have: `toolbox shim install|list|remove`, and the shims that follow the pins
after `add` and `remove`. shimgen.py writes the files; this module decides which, from the
recipes and pins that apply here. Cold tier; the CLI renders what these return."""

import os
from dataclasses import dataclass

from toolbox.errors import ToolboxError
from toolbox.ops import shimgen
from toolbox.ops.context import context_here


@dataclass(frozen=True)
class ShimsInstalled:
    names: tuple  # the shims written
    directory: str  # where: the shims directory
    # {name: (project files)}: names no recipe here knows, run by a trusted project's recipe there
    elsewhere: dict


@dataclass(frozen=True)
class ShimTarget:
    """What an installed shim runs in the current directory."""

    name: str
    recipe: str | None  # the recipe it names here; None: no recipe, it runs the next one on PATH
    version: str | None  # the version it runs (an alias's own, else the pin's)
    pinned_by: str | None  # the file that pins it; None: not pinned, it runs the next one on PATH


def install_shims(tools=(), pinned=False):
    """Write the shims of `tools`, and with `pinned` of every tool pinned here (project and
    global pins). Every name is checked before anything is written."""
    context = context_here()
    names = sorted(set(tools or ()) | (set(context.pinned_tools()) if pinned else set()))
    if not names:
        raise ToolboxError("no tools to install shims for",
                           hint="name them (toolbox shim install jq), or --pinned for every tool pinned here")
    elsewhere = {}
    for name in names:
        projects = _projects_defining(context, name)
        if projects:
            elsewhere[name] = projects
    shimgen.install(context.layout, names)
    return ShimsInstalled(tuple(names), context.layout.shims_dir, elsewhere)


def _projects_defining(context, name):
    """() when `name` is a recipe or alias here; else the projects whose trusted recipes
    define it (its shim runs it there; elsewhere the next program on PATH); else UnknownTool."""
    from toolbox.errors import UnknownTool
    from toolbox.project.trust import TrustStore

    try:
        context.catalog.find(name)
        return ()
    except UnknownTool as err:
        projects = TrustStore(context.layout).projects_defining(name)
        if not projects:
            raise err from None
    return tuple(projects)


def shim_targets():
    """[ShimTarget] for every installed shim."""
    context = context_here()
    targets = []
    for name in shimgen.installed(context.layout):
        try:
            recipe, alias = context.catalog.find(name)
        except ToolboxError:
            targets.append(ShimTarget(name, None, None, None))
            continue
        pinned, owner = context.pinned(recipe)
        version = alias.version if alias and alias.version else pinned
        targets.append(ShimTarget(name, recipe.name, version, owner.pins.path if pinned else None))
    return targets


def remove_shims(names):
    shimgen.remove(context_here().layout, names)


def refresh_shims(added=()):
    """After `add` and `remove`: rewrite the installed shims, and once shims are in use install
    those of every tool pinned here (`added`, the names just pinned, among them)."""
    from toolbox.layout import Layout

    layout = Layout.from_env()
    if not os.path.isdir(layout.shims_dir):
        return
    present = shimgen.installed(layout)
    context = context_here()
    shimgen.install(layout, sorted(set(present) | set(added) | set(context.pinned_tools())))
