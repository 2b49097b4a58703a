"""The commands for tools by name: `recipes list|show|search`, `add`, `remove`, `lock`, `sync`,
`list`, `outdated`, `trust`, `untrust`. Registered on the main app by app.py."""

import json
import os
import sys

import typer

from toolbox.cli import support as complete
from toolbox.cli.support import HelpCommand
from toolbox.errors import ToolboxError

recipes_app = typer.Typer(help="The recipes that map tool names to images.", no_args_is_help=True)
shim_app = typer.Typer(help="Executables named after tools, so scripts, Makefiles and editors find them.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
GLOBAL_OPTION = typer.Option(False, "--global", help="Edit the pins of your config.toml, used outside any project.")


def register(app):
    app.add_typer(recipes_app, name="recipes")
    app.add_typer(shim_app, name="shim")
    for command in (add, remove, lock, sync, outdated, trust, untrust):
        app.command(cls=HelpCommand)(command)
    app.command(name="list", cls=HelpCommand)(list_tools)
    app.command(name="shell-init", cls=HelpCommand)(shell_init)


def _print_table(rows):
    from toolbox.cli.app import _print_table as print_table  # loaded: it registered these commands

    print_table(rows)


def _context(cwd=None, ask=False):
    """The tools context here; with `ask`, untrusted project recipes are offered for trust on
    the terminal (commands that use them: add, lock, sync)."""
    from toolbox.prompt import confirm_on_terminal
    from toolbox.ops.wiring import load_services
    from toolbox.ops.tools import Context

    return Context(load_services(), cwd, confirm_on_terminal if ask else None)


# -- recipes ---------------------------------------------------------------------------------------
@recipes_app.command("list", cls=HelpCommand)
def recipes_list(as_json: bool = JSON_OPTION):
    """Every recipe visible here (project, yours, built-in), by name; those that do not validate
    with their error."""
    catalog = _context().catalog
    names = sorted(set(catalog.recipes) | set(catalog.broken))
    if as_json:
        print(json.dumps([_recipe_json(catalog.recipes[n]) if n in catalog.recipes else _broken_json(catalog.broken[n]) for n in names],
                         indent=2, sort_keys=True))
        return
    rows = [("NAME", "DEFAULT", "SOURCE", "IMAGE", "ALIASES")]
    for name in names:
        recipe = catalog.recipes.get(name)
        if recipe is None:
            rows.append((name, "-", catalog.broken[name].source, "BROKEN: does not validate (below)", ""))
        else:
            rows.append((recipe.name, recipe.default_version, recipe.source, recipe.image, " ".join(sorted(recipe.aliases))))
    _print_table(rows)
    for name in sorted(catalog.broken):
        error = catalog.broken[name].error
        print(f"toolbox: warning: {error.message}" + (f" ({error.hint})" if error.hint else ""), file=sys.stderr)


def _broken_json(broken):
    return {"name": broken.name, "source": broken.source, "origin": broken.origin, "error": broken.error.message, "hint": broken.error.hint}


@recipes_app.command("show", cls=HelpCommand)
def recipes_show(name: str = typer.Argument(..., metavar="TOOL", help="A tool name or alias.", autocompletion=complete.tool_names)):
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
    print(f"version:  default {recipe.default_version}" + (f", pinned {pinned} by {owner.pins.path}" if pinned else ""))
    print(f"command:  {recipe.describe_command()}")
    print(f"tty:      {'yes (interactive)' if recipe.tty else 'no'}")
    if recipe.aliases:
        print(f"aliases:  {' '.join(sorted(recipe.aliases))}")
    print("grants:   " + "\n          ".join(recipe.grants()))


@recipes_app.command("search", cls=HelpCommand)
def recipes_search(word: str = typer.Argument(..., metavar="WORD", help="A word from a name, alias, image or description.")):
    """Recipes whose name, aliases, image or description contain WORD."""
    found = _context().catalog.search(word)
    if not found:
        raise ToolboxError(f"no recipe matches {word!r}", hint="`toolbox recipes list` shows them all")
    _print_table([("NAME", "IMAGE", "DESCRIPTION")] + [(r.name, r.image, r.description) for r in found])


def _recipe_json(recipe):
    return {"name": recipe.name, "error": None, "source": recipe.source, "origin": recipe.origin, "image": recipe.image, "tag": recipe.tag,
            "default_version": recipe.default_version, "command": list(recipe.command) if recipe.command else None,
            "default_command": list(recipe.default_command) if recipe.default_command else None,
            "aliases": sorted(recipe.aliases), "description": recipe.description, "tty": recipe.tty, "network": recipe.network,
            "env": recipe.env, "pass_env": list(recipe.pass_env),
            "mounts": [{"source": m.source, "target": m.target, "read_only": m.read_only} for m in recipe.mounts]}


# -- pins and the lock -------------------------------------------------------------------------------
def add(
    tools: list[str] = typer.Argument(..., metavar="TOOL[@VERSION]", help="An alias such as python3.11 pins its version.",
                                      autocompletion=complete.tool_specs),
    global_: bool = GLOBAL_OPTION,
):
    """Pin tools in this project's toolbox.toml (created here if there is none) and lock them."""
    context = _context(ask=True)
    versions = {}
    recipes = []
    for text in tools:
        recipe, version = _recipe_and_version(context, text)
        recipes.append(recipe)
        versions[recipe.name] = version or context.pins.versions.get(recipe.name) or recipe.default_version
    context.check_trusted(recipes)  # before the file is touched
    _edit_and_lock(context, _pins_file(context, global_), versions, ())
    for name, version in sorted(versions.items()):
        print(f"Pinned {name} {version}")
    _refresh_shims(context.layout, [text.partition("@")[0] for text in tools])


def remove(tools: list[str] = typer.Argument(..., metavar="TOOL", help="Pinned tool names.", autocompletion=complete.pinned_tools),
           global_: bool = GLOBAL_OPTION):
    """Unpin tools from this project's toolbox.toml and drop them from toolbox.lock."""
    context = _context()
    path = _pins_file(context, global_)
    if global_ or context.pins.is_project:
        missing = [t for t in tools if t not in context.pins.versions]
        if missing:
            raise ToolboxError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not pinned in {path}",
                               hint="`toolbox list` shows the pins that apply here, and the file that makes each")
    _edit_and_lock(context, path, {}, tuple(tools))
    for name in tools:
        print(f"Unpinned {name}")
    if path != context.layout.config_file and _drop_if_empty(path):
        print(f"Removed {path} and its lock: nothing was left in them (your global pins apply here)")
    _refresh_shims(context.layout, [])


def _drop_if_empty(path):
    """Remove a toolbox.toml that holds nothing but an empty [tools] table (what `add` in a
    directory without one, then `remove`, leaves), and its lock: an empty file still made its
    directory a project. A file with anything else in it, a comment included, is kept."""
    from toolbox.fsutil import read_input, unlink_quietly
    from toolbox.project.lockfile import read_lock

    found = read_input(path, "project file")
    if found is None or found.data.decode("utf-8", "replace").strip() not in ("", "[tools]"):
        return False
    lock_path = os.path.join(os.path.dirname(path), "toolbox.lock")
    lock = read_lock(lock_path)
    if lock.entries or lock.broken:
        return False
    unlink_quietly(path)
    unlink_quietly(lock_path)
    return True


def _recipe_and_version(context, text):
    from toolbox.ops.tools import parse_tool_spec

    parsed = parse_tool_spec(text)
    if parsed is None:
        raise ToolboxError(f"{text!r} is not a tool name", hint="use TOOL or TOOL@VERSION, e.g. python@3.11")
    name, version = parsed
    recipe, alias = context.catalog.find(name)
    return recipe, version or (alias.version if alias else None)


def _pins_file(context, global_):
    if global_:
        return context.layout.config_file
    return context.pins.path if context.pins.is_project else os.path.join(os.getcwd(), "toolbox.toml")


def _edit_and_lock(context, path, versions, removed):
    """Edit the pins, then lock; if locking fails the file is put back as it was."""
    from toolbox.fsutil import atomic_write, unlink_quietly
    from toolbox.project.project import edit_pins

    try:
        with open(path, "rb") as file:
            before = file.read()
    except FileNotFoundError:
        before = None
    # The user's config.toml is theirs alone (it may name credential helpers and CA files).
    try:
        edit_pins(path, versions, removed, 0o600 if path == context.layout.config_file else 0o644)
    except OSError as err:
        raise _cannot_write(context, path, err) from None
    try:
        fresh = _context(ask=True)  # the pins as edited
        try:
            fresh.lock()
        finally:
            fresh.close()
            _print_warnings(fresh)
    except BaseException:
        if before is None:
            unlink_quietly(path)
        else:
            atomic_write(path, before, os.stat(path).st_mode & 0o777)
        raise
    finally:
        context.close()


def _cannot_write(context, path, err):
    from toolbox.errors import os_error_hint

    if path == context.layout.config_file:
        return ToolboxError(f"cannot write your config file {path}: {(err.strerror or str(err)).lower()}", hint=os_error_hint(err, path, context.layout))
    directory = os.path.dirname(path)
    return ToolboxError(f"cannot write {path}: {(err.strerror or str(err)).lower()}",
                        hint=f"this directory's pins live there: fix the permissions of {directory} (ls -ld {directory}), or run it in a "
                             "project of yours; pins of your own for every directory go in your config.toml with --global")


def lock(
    tools: list[str] = typer.Argument(None, metavar="TOOL", help="With --upgrade: only these tools.", autocompletion=complete.pinned_tools),
    upgrade: bool = typer.Option(False, "--upgrade", help="Resolve tags again even where the lock matches (all tools, or those named)."),
    frozen: bool = typer.Option(False, "--frozen", help="Only check that toolbox.lock matches toolbox.toml; never resolve."),
    check: bool = typer.Option(False, "--check", help="Verify every entry against the registry: digest, platforms, and that the tag still names it."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Resolve and print what would change; write nothing."),
):
    """Resolve the pinned versions to digests and write toolbox.lock; print what changed. A lock
    with merge conflicts is resolved from toolbox.toml, keeping every entry that matches its pin."""
    if check:
        if dry_run:
            raise ToolboxError("--check and --dry-run: --check writes nothing anyway", hint="use one of them")
        return _lock_check()
    context = _context(ask=not (frozen or dry_run))
    try:
        unknown = [t for t in tools or () if t not in context.pins.versions]
        if unknown:
            raise ToolboxError(f"not pinned in {context.pins.path}: {', '.join(unknown)}", hint="`toolbox add TOOL` pins it")
        update = context.update_lock(upgrade=tuple(tools or ()) if upgrade else (), frozen=frozen, upgrade_all=upgrade and not tools,
                                     dry_run=dry_run, merge_conflicts=True)
    finally:
        context.close()
        _print_warnings(context)
    name = _shown_path(update.path)
    if update.merged is not None:
        print(f"{name} had merge conflicts: kept the entries that match their pins ({', '.join(update.merged) or 'none'}); "
              f"resolved {', '.join(update.resolved) or 'nothing'}")
    for change in update.changes:
        print(change.describe())
    if dry_run:
        print(f"dry run: {name} not written" if update.changes or update.merged is not None else f"{name} is up to date")
    elif not update.changes and update.merged is None:
        print(f"{name} is up to date")


def _shown_path(path):
    """A path as people read it: `toolbox.lock` in its own directory, else in full."""
    return os.path.basename(path) if os.path.dirname(path) == os.getcwd() else path


def _lock_check():
    context = _context()
    try:
        results = context.check_with_registry()
    finally:
        context.close()
    for tool, problem in results:
        print(f"ok    {tool}" if problem is None else f"FAIL  {problem}")
    failed = [tool for tool, problem in results if problem is not None]
    if failed:
        raise ToolboxError(f"{context.pins.lock_path}: {len(failed)} of {len(results)} entries do not match the registry",
                           hint="see above; `toolbox lock --upgrade TOOL` writes an entry again from the registry")
    print(f"{context.pins.lock_path}: {len(results)} entr{'ies' if len(results) != 1 else 'y'} match the registry")


def _print_warnings(context):
    from toolbox.prompt import warn

    for message in context.warnings:
        warn(message)
    context.warnings.clear()


def sync(frozen: bool = typer.Option(False, "--frozen", help="Fail when toolbox.lock does not match toolbox.toml (also when CI=true).")):
    """Pull every image toolbox.lock names for this platform (what is stored already is kept)."""
    from toolbox.prompt import frozen_requested
    from toolbox.ops.prepare import ensure_plan

    from toolbox.errors import ImageNotStored
    from toolbox.project.lockfile import short_digest

    is_frozen = frozen_requested(os.environ, frozen)
    context = _context(ask=not is_frozen)
    pulled = 0
    try:
        update = context.update_lock(frozen=is_frozen)
        for change in update.changes:  # what changed, not every tool
            print(change.describe())
        for tool, entry in sorted(update.entries.items()):
            reference = entry.pinned_reference()
            try:
                context.services.store.get(reference)
            except ImageNotStored:
                ensure_plan(context.layout, reference, "missing")
                print(f"pulled {tool} {entry.version} ({short_digest(entry.digest)})")
                pulled += 1
            context.check_stored(entry)
        _ensure_pinned_shims(context)
    finally:
        context.close()
        _print_warnings(context)
    if not update.changes and not pulled:
        print(f"{_shown_path(update.path)} is up to date, and every image it names is stored")


def outdated(tools: list[str] = typer.Argument(None, metavar="TOOL", help="Only these pinned tools.", autocompletion=complete.pinned_tools),
             as_json: bool = JSON_OPTION):
    """For each pinned tool: the locked digest, the newest version its recipe's tags allow, and
    whether the pinned tag names another digest upstream now. Asks the registries; writes nothing."""
    from toolbox.project.lockfile import short_digest
    from toolbox.ops.outdated import outdated as find_outdated

    context = _context()
    try:
        rows = find_outdated(context, tools)
    finally:
        context.close()
        _print_warnings(context)
    if as_json:
        print(json.dumps([row.to_json() for row in rows], indent=2, sort_keys=True))
    elif not rows:
        print(f"No tools pinned ({context.pins.path}); `toolbox add TOOL` pins one")
    else:
        _print_table([("TOOL", "PINNED", "LOCKED", "NEWEST", "TAG UPSTREAM")] +
                     [(r.tool, r.version, short_digest(r.locked_digest) if r.locked_digest else "not locked",
                       (r.newest or "?") + (" (newer)" if r.newer else ""), _tag_upstream(r)) for r in rows])
        for r in rows:
            where = "" if context.pins.is_project and r.pinned_by == context.pins.path else "--global "
            if r.newer:
                print(f"{r.tool}: {r.newest} is out: `toolbox add {where}{r.tool}@{r.newest}` pins it")
            if r.tag_moved:
                print(f"{r.tool}: the tag {r.tag} moved upstream: `toolbox lock --upgrade {r.tool}` takes it (review the change)")
            if r.note:
                print(f"{r.tool}: {r.note}")
    for r in rows:
        if r.problem:
            print(f"toolbox: warning: {r.tool}: {r.problem}", file=sys.stderr)
    failed = [r.tool for r in rows if r.problem]
    if failed:
        raise ToolboxError(f"could not check {', '.join(failed)} ({len(failed)} of {len(rows)} pinned tools)",
                           hint="see the warnings above: a registry that cannot be reached or refuses, or a recipe to fix")


def _tag_upstream(row):
    from toolbox.project.lockfile import short_digest

    if row.tag_moved:
        return f"moved (now {short_digest(row.tag_digest)})"
    if row.tag_moved is False:
        return "unchanged"
    return f"names {short_digest(row.tag_digest)}" if row.tag_digest else "?"


def list_tools(as_json: bool = JSON_OPTION):
    """The tools pinned here: version, locked digest, and the file that pins them."""
    from toolbox.oci.platform import host_platform

    context = _context()
    locks = {}
    rows = []
    for tool, (version, owner) in context.effective_pins().items():
        if owner.pins.path not in locks:
            locks[owner.pins.path] = owner.read_lock()
        lock = locks[owner.pins.path]
        entry = lock.entries.get(tool)
        recipe = context.catalog.recipes.get(tool)
        current = entry is not None and recipe is not None and entry.matches(recipe, version)
        manifest = problem = None
        if tool in lock.broken:
            problem = lock.broken[tool][1]
        if current:
            try:
                owner.check_stored(entry)
                manifest = entry.manifest_for(host_platform())
            except ToolboxError as err:
                problem, current = err.message, False
        rows.append({"tool": tool, "version": version, "pinned_by": owner.pins.path, "locked": current,
                     "digest": entry.digest if current else None, "manifest": manifest, "problem": problem,
                     "image": entry.reference if current else (recipe.reference_for(version) if recipe else None),
                     "source": recipe.source if recipe else None})
    if as_json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return
    if not rows:
        print(f"No tools pinned ({context.pins.path}); `toolbox add TOOL` pins one, `toolbox recipes list` shows them")
        return
    _print_table([("TOOL", "VERSION", "IMAGE", "DIGEST", "PINNED BY")] +
                 [(r["tool"], r["version"], r["image"] or "?",
                   "LOCK DAMAGED" if r["problem"] else (r["manifest"] or r["digest"] or "not locked")[:19], r["pinned_by"]) for r in rows])
    for row in rows:
        if row["problem"]:
            print(f"toolbox: warning: {row['problem']}", file=sys.stderr)


def trust():
    """Trust this project's recipes as they are now: what they grant (image, command, mounts,
    host variables, network) may be used until a recipe's grants change."""
    from toolbox.project.trust import TrustStore, describe

    context = _context()
    pins = _project_pins(context)
    recipes = sorted(pins.recipes.values(), key=lambda r: r.name)
    store = TrustStore(context.layout)
    before = store.read(pins.path)
    # What is printed and what is recorded come from the same read of toolbox.toml.
    store.trust(pins.path, recipes)
    if not recipes:
        print(f"{pins.path} defines no recipes of its own: nothing to trust (its pins need none)")
        return
    print(f"Trusted the recipes of {pins.path}:")
    for line in describe(recipes, before, context.catalog):
        print(line)


def untrust():
    """Withdraw trust from this project's recipes."""
    from toolbox.project.trust import TrustStore

    context = _context()
    pins = _project_pins(context)
    TrustStore(context.layout).untrust(pins.path)
    print(f"No longer trusted: the recipes of {pins.path}")


def _project_pins(context):
    if not context.pins.is_project:
        raise ToolboxError("no toolbox.toml here or in any directory above", hint="run it in a project")
    return context.pins


# -- shims and shell integration ------------------------------------------------------------------
@shim_app.command("install", cls=HelpCommand)
def shim_install(tools: list[str] = typer.Argument(None, metavar="TOOL", help="Tool names or aliases, e.g. jq python3.11 node.",
                                                   autocompletion=complete.tool_names),
                 pinned: bool = typer.Option(False, "--pinned", help="Every tool pinned here: by the project and by your global pins.")):
    """Write executables for these tools in the shims directory (first on PATH after shell-init)."""
    from toolbox.ops import shimgen as shims

    context = _context()
    tools = sorted(set(tools or ()) | (set(pinned_tools(context)) if pinned else set()))
    if not tools:
        raise ToolboxError("no tools to install shims for", hint="name them (toolbox shim install jq), or --pinned for every tool pinned here")
    for name in tools:
        _check_shim_name(context, name)  # every name checked before anything is written
    shims.install(context.layout, tools)
    print(f"Installed {', '.join(tools)} in {context.layout.shims_dir}")
    if context.layout.shims_dir not in os.environ.get("PATH", "").split(os.pathsep):
        print(f"To put them first on PATH, {shims.rc_advice()}")


@shim_app.command("list", cls=HelpCommand)
def shim_list():
    """The installed shims, and what each runs here."""
    from toolbox.ops import shimgen as shims

    context = _context()
    rows = [("SHIM", "HERE")]
    for name in shims.installed(context.layout):
        try:
            recipe, alias = context.catalog.find(name)
        except ToolboxError:
            rows.append((name, "no recipe: runs the next one on PATH"))
            continue
        pinned, owner = context.pinned(recipe)
        version = alias.version if alias and alias.version else pinned
        rows.append((name, f"{recipe.name} {version} (pinned by {owner.pins.path})" if pinned else "not pinned: runs the next one on PATH"))
    _print_table(rows)


@shim_app.command("remove", cls=HelpCommand)
def shim_remove(tools: list[str] = typer.Argument(..., metavar="TOOL", help="Installed shims.", autocompletion=complete.shim_names)):
    """Remove shims."""
    from toolbox.ops import shimgen as shims

    shims.remove(_context().layout, tools)
    print(f"Removed {', '.join(tools)}")


def shell_init(shell: str = typer.Argument(..., metavar="SHELL", help="bash, zsh or fish.", autocompletion=complete.shell_names)):
    """Print the shell code for your rc file: eval "$(toolbox shell-init bash)"."""
    from toolbox.ops import shimgen as shims
    from toolbox.layout import Layout

    print(shims.shell_init(Layout.from_env(), shell, complete.completion_script), end="")


def _refresh_shims(layout, added):
    """`add` and `remove` rewrite the installed shims, and once shims are in use install those of
    every tool pinned here (the ones just added among them)."""
    from toolbox.ops import shimgen as shims

    if not os.path.isdir(layout.shims_dir):
        return
    present = shims.installed(layout)
    context = _context()
    shims.install(layout, sorted(set(present) | set(added) | set(pinned_tools(context))))


def _ensure_pinned_shims(context):
    from toolbox.ops import shimgen as shims

    added = shims.ensure(context.layout, pinned_tools(context))
    if added:
        print(f"Installed shims for {', '.join(added)} (pinned here)")


def pinned_tools(context):
    """The recipe names pinned here (project and global pins) that a shim can run."""
    return sorted(tool for tool in context.effective_pins() if tool in context.catalog.recipes)


def _check_shim_name(context, name):
    """A name a shim may be installed for: a recipe or alias here, or a recipe of a project
    whose recipes you trusted (the shim runs it there; elsewhere the next program on PATH)."""
    from toolbox.project.recipes import UnknownTool
    from toolbox.project.trust import TrustStore

    try:
        context.catalog.find(name)
        return
    except UnknownTool as err:
        projects = TrustStore(context.layout).projects_defining(name)
        if not projects:
            raise err from None
    print(f"{name}: a recipe of {', '.join(projects)}: its shim runs it there (elsewhere, the next {name} on PATH)")
