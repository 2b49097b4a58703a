"""`toolbox add` and `toolbox remove`: edit the pins (a project's toolbox.toml, or with --global
the user's config.toml), then lock them. The edit and the lock are one transaction: when locking
fails, or is interrupted, the pins file is put back as it was, so a pin that does not resolve
(a typo, a version not published) never stays behind without its lock entry. Cold tier; the
CLI renders what these return."""

import os
from dataclasses import dataclass, field

from toolbox.errors import ToolboxError
from toolbox.ops.context import context_here, parse_tool_spec


@dataclass(frozen=True)
class PinRequest:
    """What to pin (`add`: TOOL or TOOL@VERSION as typed) or unpin (`remove`: pinned names)."""

    tools: tuple
    global_: bool = False  # the user's global pins in config.toml, not the project's
    confirm: object = None  # confirm(question): whether to trust a project's recipes (a terminal prompt)
    warn: object = None  # warn(message): what did not stop the command


@dataclass(frozen=True)
class PinsEdit:
    """What `add` or `remove` did: the pins file edited and locked again."""

    path: str  # the pins file
    pinned: dict = field(default_factory=dict)  # `add`: {tool: version} pinned
    unpinned: tuple = ()  # `remove`: the tools unpinned
    dropped: bool = False  # `remove` left nothing in the project's file: it and its lock are gone


def add_tools(request):
    """Pin `request.tools` (an alias such as python3.11 pins its version; a tool without a
    version keeps its pin, else gets its recipe's default) and lock them. A project's recipes
    are trusted first (asked through `confirm`), before the file is touched."""
    context = context_here(request.confirm)
    versions = {}
    recipes = []
    for text in request.tools:
        recipe, version = _recipe_and_version(context, text)
        recipes.append(recipe)
        versions[recipe.name] = version or context.pins.versions.get(recipe.name) or recipe.default_version
    context.check_trusted(recipes)  # before the file is touched
    path = _pins_file(context, request.global_)
    _edit_and_lock(context, path, versions, (), request)
    return PinsEdit(path, pinned=versions)


def remove_tools(request):
    """Unpin `request.tools` and lock again. A project file left with nothing in it is removed
    with its lock (_drop_if_empty)."""
    context = context_here()
    path = _pins_file(context, request.global_)
    if request.global_ or context.pins.is_project:
        missing = [t for t in request.tools if t not in context.pins.versions]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise ToolboxError(f"{', '.join(missing)} {verb} not pinned in {path}",
                               hint="`toolbox list` shows the pins that apply here, and the file that "
                                    "makes each")
    _edit_and_lock(context, path, {}, tuple(request.tools), request)
    dropped = path != context.layout.config_file and _drop_if_empty(path)
    return PinsEdit(path, unpinned=tuple(request.tools), dropped=dropped)


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


def _edit_and_lock(context, path, versions, removed, request):
    """Edit the pins, then lock; if locking fails the file is put back as it was."""
    from toolbox.fsutil import atomic_write, unlink_quietly
    from toolbox.ops.locking import locked_entries
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
        fresh = context_here(request.confirm)  # the pins as edited
        try:
            locked_entries(fresh)
        finally:
            fresh.close()
            fresh.report_warnings(request.warn)
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
        return ToolboxError(f"cannot write your config file {path}: {(err.strerror or str(err)).lower()}",
                            hint=os_error_hint(err, path, context.layout))
    directory = os.path.dirname(path)
    return ToolboxError(f"cannot write {path}: {(err.strerror or str(err)).lower()}",
                        hint=f"this directory's pins live there: fix the permissions of {directory} "
                             f"(ls -ld {directory}), or run it in a project of yours; pins of your own for "
                             "every directory go in your config.toml with --global")
