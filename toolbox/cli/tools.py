"""The commands for tools by name: `add`, `remove`, `lock`, `sync`, `outdated`, `trust`,
`untrust`, `list`. The use cases are in ops (pinning.py, tools.py, shims.py); these parse the
options, ask and warn on the terminal for them, and render what they return."""

import os
import sys

import typer

from toolbox.cli import common
from toolbox.cli import support as complete
from toolbox.cli.render import print_listing
from toolbox.errors import ToolboxError
from toolbox.prompt import confirm_on_terminal, warn


def register(app):
    common.add_commands(app, add, remove, lock, sync, outdated, trust, untrust)
    common.add_command(app, list_tools, "list")


# -- pins and the lock -------------------------------------------------------------------------------
def add(
    tools: list[str] = typer.Argument(..., metavar="TOOL[@VERSION]",
                                      help="An alias such as python3.11 pins its version.",
                                      autocompletion=complete.tool_specs),
    global_: bool = common.GLOBAL_OPTION,
):
    """Pin tools in this project's toolbox.toml (created here if there is none) and lock them."""
    from toolbox.ops.pinning import PinRequest, add_tools
    from toolbox.ops.shims import refresh_shims

    edit = add_tools(PinRequest(tuple(tools), global_, confirm=confirm_on_terminal, warn=warn))
    for name, version in sorted(edit.pinned.items()):
        print(f"Pinned {name} {version}")
    # after saying what is pinned: it stands if this fails
    refresh_shims([text.partition("@")[0] for text in tools])


def remove(tools: list[str] = typer.Argument(..., metavar="TOOL", help="Pinned tool names.",
                                             autocompletion=complete.pinned_tools),
           global_: bool = common.GLOBAL_OPTION):
    """Unpin tools from this project's toolbox.toml and drop them from toolbox.lock."""
    from toolbox.ops.pinning import PinRequest, remove_tools
    from toolbox.ops.shims import refresh_shims

    edit = remove_tools(PinRequest(tuple(tools), global_, confirm=confirm_on_terminal, warn=warn))
    for name in edit.unpinned:
        print(f"Unpinned {name}")
    if edit.dropped:
        print(f"Removed {edit.path} and its lock: nothing was left in them (your global pins apply here)")
    refresh_shims()


def lock(
    tools: list[str] = typer.Argument(None, metavar="TOOL", help="With --upgrade: only these tools.",
                                      autocompletion=complete.pinned_tools),
    upgrade: bool = typer.Option(False, "--upgrade", help="Resolve tags again even where the lock matches "
                                                          "(all tools, or those named)."),
    frozen: bool = typer.Option(False, "--frozen",
                                help="Only check that toolbox.lock matches toolbox.toml; never resolve."),
    check: bool = typer.Option(False, "--check", help="Verify every entry against the registry: digest, "
                                                      "platforms, and that the tag still names it."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Resolve and print what would change; write nothing."),
):
    """Resolve the pinned versions to digests and write toolbox.lock; print what changed. A lock
    with merge conflicts is resolved from toolbox.toml, keeping every entry that matches its pin."""
    from toolbox.ops.tools import LockRequest, lock_pins

    if check:
        if dry_run:
            raise ToolboxError("--check and --dry-run: --check writes nothing anyway", hint="use one of them")
        return _lock_check()
    update = lock_pins(LockRequest(tuple(tools or ()), upgrade, frozen, dry_run, confirm=confirm_on_terminal,
                                   warn=warn))
    name = _shown_path(update.path)
    if update.merged is not None:
        print(f"{name} had merge conflicts: kept the entries that match their pins "
              f"({', '.join(update.merged) or 'none'}); "
              f"resolved {', '.join(update.resolved) or 'nothing'}")
    for change in update.changes:
        print(change.describe())
    if dry_run:
        print(f"dry run: {name} not written" if update.changes or update.merged is not None
              else f"{name} is up to date")
    elif not update.changes and update.merged is None:
        print(f"{name} is up to date")


def _shown_path(path):
    """A path as people read it: `toolbox.lock` in its own directory, else in full."""
    return os.path.basename(path) if os.path.dirname(path) == os.getcwd() else path


def _lock_check():
    from toolbox.ops.tools import check_lock

    checked = check_lock()
    for tool, problem in checked.results:
        print(f"ok    {tool}" if problem is None else f"FAIL  {problem}")
    if checked.failed:
        raise ToolboxError(f"{checked.lock_path}: {len(checked.failed)} of {len(checked.results)} entries do "
                           "not match the registry",
                           hint="see above; `toolbox lock --upgrade TOOL` writes an entry again from the "
                                "registry")
    print(f"{checked.lock_path}: {len(checked.results)} entr{'ies' if len(checked.results) != 1 else 'y'} "
          "match the registry")


def sync(frozen: bool = typer.Option(
        False, "--frozen", help="Fail when toolbox.lock does not match toolbox.toml (also when CI=true).")):
    """Pull every image toolbox.lock names for this platform (what is stored already is kept)."""
    from toolbox.ops.tools import SyncRequest
    from toolbox.ops.tools import sync as sync_images
    from toolbox.project.lockfile import short_digest

    def locked(update):
        for change in update.changes:  # what changed, not every tool
            print(change.describe())

    def pulled(tool, entry):
        print(f"pulled {tool} {entry.version} ({short_digest(entry.digest)})")

    done = sync_images(SyncRequest(frozen, confirm=confirm_on_terminal, warn=warn, on_locked=locked,
                                   on_pulled=pulled))
    if done.shims_added:
        print(f"Installed shims for {', '.join(done.shims_added)} (pinned here)")
    if not done.update.changes and not done.pulled:
        print(f"{_shown_path(done.update.path)} is up to date, and every image it names is stored")


def outdated(tools: list[str] = typer.Argument(None, metavar="TOOL", help="Only these pinned tools.",
                                               autocompletion=complete.pinned_tools),
             as_json: bool = common.JSON_OPTION):
    """For each pinned tool: the locked digest, the newest version its recipe's tags allow, and
    whether the pinned tag names another digest upstream now. Asks the registries; writes nothing."""
    from toolbox.ops.tools import outdated_tools

    report = outdated_tools(tools or (), warn)
    rows = report.tools
    if not rows and not as_json:
        print(f"No tools pinned ({report.pins_path}); `toolbox add TOOL` pins one")
    else:
        print_listing(rows, as_json, ("TOOL", "PINNED", "LOCKED", "NEWEST", "TAG UPSTREAM"), _outdated_row)
        if not as_json:
            _print_what_to_do(report)
    for r in rows:
        if r.problem:
            print(f"toolbox: warning: {r.tool}: {r.problem}", file=sys.stderr)
    failed = [r.tool for r in rows if r.problem]
    if failed:
        raise ToolboxError(f"could not check {', '.join(failed)} ({len(failed)} of {len(rows)} pinned tools)",
                           hint="see the warnings above: a registry that cannot be reached or refuses, or a "
                                "recipe to fix")


def _print_what_to_do(report):
    for r in report.tools:
        where = "" if report.is_project and r.pinned_by == report.pins_path else "--global "
        if r.newer:
            print(f"{r.tool}: {r.newest} is out: `toolbox add {where}{r.tool}@{r.newest}` pins it")
        if r.tag_moved:
            print(f"{r.tool}: the tag {r.tag} moved upstream: `toolbox lock --upgrade {r.tool}` takes it "
                  "(review the change)")
        if r.note:
            print(f"{r.tool}: {r.note}")


def _outdated_row(row):
    from toolbox.project.lockfile import short_digest

    return (row.tool, row.version, short_digest(row.locked_digest) if row.locked_digest else "not locked",
            (row.newest or "?") + (" (newer)" if row.newer else ""), _tag_upstream(row))


def _tag_upstream(row):
    from toolbox.project.lockfile import short_digest

    if row.tag_moved:
        return f"moved (now {short_digest(row.tag_digest)})"
    if row.tag_moved is False:
        return "unchanged"
    return f"names {short_digest(row.tag_digest)}" if row.tag_digest else "?"


def list_tools(as_json: bool = common.JSON_OPTION):
    """The tools pinned here: version, locked digest, and the file that pins them."""
    from toolbox.ops.tools import list_pins

    pins = list_pins()
    if not pins.tools and not as_json:
        print(f"No tools pinned ({pins.pins_path}); `toolbox add TOOL` pins one, `toolbox recipes list` "
              "shows them")
        return
    print_listing(pins.tools, as_json, ("TOOL", "VERSION", "IMAGE", "DIGEST", "PINNED BY"),
                  lambda r: (r.tool, r.version, r.image or "?",
                             "LOCK DAMAGED" if r.problem else (r.manifest or r.digest or "not locked")[:19],
                             r.pinned_by))
    if as_json:
        return
    for row in pins.tools:
        if row.problem:
            print(f"toolbox: warning: {row.problem}", file=sys.stderr)


# -- trust ---------------------------------------------------------------------------------------------
def trust():
    """Trust this project's recipes and services as they are now: what they grant (image, command,
    mounts, host variables, network, ports, volumes) may be used until their grants change."""
    from toolbox.ops.tools import trust_project

    trusted = trust_project()
    if not trusted.recipes:
        print(f"{trusted.path} defines no recipes or services of its own: nothing to trust "
              "(its pins need none)")
        return
    print(f"Trusted the recipes and services of {trusted.path}:")
    for line in trusted.described:
        print(line)


def untrust():
    """Withdraw trust from this project's recipes."""
    from toolbox.ops.tools import untrust_project

    print(f"No longer trusted: the recipes of {untrust_project()}")
