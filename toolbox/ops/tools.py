"""The use cases of tools by name, besides `add` and `remove` (pinning.py) and the shims
(shims.py): `lock`, `lock --check`, `sync`, `list`, `outdated`, `trust` and `untrust`. Each
takes the command's options (with `confirm` and `warn` where it asks or warns) and returns a
value for the CLI to render; none prints. Cold tier."""

import os
from dataclasses import asdict, dataclass

from toolbox.errors import ToolboxError
from toolbox.ops.context import context_here
from toolbox.ops.locking import check_stored, check_with_registry, update_lock


# -- the lock ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LockRequest:
    tools: tuple = ()  # with `upgrade`: only these tools
    upgrade: bool = False  # resolve tags again even where the lock matches
    frozen: bool = False  # only check that the lock matches the pins; never resolve
    dry_run: bool = False  # resolve, and write nothing
    confirm: object = None  # confirm(question): whether to trust a project's recipes (a terminal prompt)
    warn: object = None  # warn(message): what did not stop the command


def lock_pins(request):
    """Bring the lock here up to date with the pins (a locking.LockUpdate). A lock with merge
    conflicts is resolved from the pins, keeping every entry that matches its pin. Nobody is
    asked to trust anything for a frozen lock or a dry run: they only check or show."""
    context = context_here(request.confirm if not (request.frozen or request.dry_run) else None)
    try:
        unknown = [t for t in request.tools if t not in context.pins.versions]
        if unknown:
            raise ToolboxError(f"not pinned in {context.pins.path}: {', '.join(unknown)}",
                               hint="`toolbox add TOOL` pins it")
        return update_lock(context, upgrade=tuple(request.tools) if request.upgrade else (),
                           frozen=request.frozen, upgrade_all=request.upgrade and not request.tools,
                           dry_run=request.dry_run, merge_conflicts=True)
    finally:
        context.close()
        context.report_warnings(request.warn)


@dataclass(frozen=True)
class LockCheck:
    """`toolbox lock --check`: each entry against the registry."""

    lock_path: str
    results: list  # [(tool, problem or None)]

    @property
    def failed(self):
        return [tool for tool, problem in self.results if problem is not None]


def check_lock():
    context = context_here()
    try:
        return LockCheck(context.pins.lock_path, check_with_registry(context))
    finally:
        context.close()


# -- sync ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncRequest:
    frozen: bool = False  # fail when the lock does not match the pins (CI=true asks for it too)
    confirm: object = None  # confirm(question): whether to trust a project's recipes (a terminal prompt)
    warn: object = None  # warn(message): what did not stop the command
    # Told as it happens, so that what is done is said before a later pull fails:
    on_locked: object = None  # on_locked(LockUpdate): the lock matches the pins, before anything is pulled
    on_pulled: object = None  # on_pulled(tool, LockEntry): an image the lock names was pulled


@dataclass(frozen=True)
class SyncResult:
    update: object  # locking.LockUpdate
    pulled: tuple  # the tools whose image was pulled
    shims_added: tuple  # the tools pinned here that got a shim (once shims are in use)


def sync(request):
    """Lock, then pull every image the lock names for this platform that is not stored."""
    from toolbox.errors import ImageNotStored
    from toolbox.ops import shimgen
    from toolbox.ops.prepare import ensure_plan
    from toolbox.prompt import frozen_requested

    is_frozen = frozen_requested(os.environ, request.frozen)
    context = context_here(request.confirm if not is_frozen else None)
    pulled = []
    try:
        update = update_lock(context, frozen=is_frozen)
        _tell(request.on_locked, update)
        for tool, entry in sorted(update.entries.items()):
            reference = entry.pinned_reference()
            try:
                context.services.store.get(reference)
            except ImageNotStored:
                ensure_plan(context.layout, reference, "missing")
                _tell(request.on_pulled, tool, entry)
                pulled.append(tool)
            check_stored(context, entry)
        added = shimgen.ensure(context.layout, context.pinned_tools())
    finally:
        context.close()
        context.report_warnings(request.warn)
    return SyncResult(update, tuple(pulled), tuple(added))


def _tell(callback, *args):
    if callback is not None:
        callback(*args)


# -- what is pinned here -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PinnedTool:
    tool: str
    version: str  # as pinned
    pinned_by: str  # the file that pins it
    locked: bool  # the lock has a current entry for the pin, and it checks out
    digest: str | None  # the locked digest (when locked)
    manifest: str | None  # this platform's manifest in it
    # why the lock entry cannot be used (a damaged lock, an entry that does not check out)
    problem: str | None
    image: str | None  # what runs: the locked reference, else the pinned version's tag
    source: str | None  # the recipe's source (project, user, builtin); None: no recipe

    def to_json(self):
        return asdict(self)


@dataclass(frozen=True)
class PinList:
    pins_path: str  # the pins file of this directory
    tools: list  # [PinnedTool]: the project's pins and the global ones that apply here


def list_pins():
    """The pins that apply here, each with its lock entry (checked against the store)."""
    from toolbox.oci.platform import host_platform

    context = context_here()
    locks = {}
    tools = []
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
                check_stored(owner, entry)
                manifest = entry.manifest_for(host_platform())
            except ToolboxError as err:
                problem, current = err.message, False
        tools.append(PinnedTool(tool=tool, version=version, pinned_by=owner.pins.path, locked=current,
                                digest=entry.digest if current else None, manifest=manifest, problem=problem,
                                image=(entry.reference if current
                                       else (recipe.reference_for(version) if recipe else None)),
                                source=recipe.source if recipe else None))
    return PinList(context.pins.path, tools)


@dataclass(frozen=True)
class OutdatedReport:
    pins_path: str  # the pins file of this directory
    is_project: bool  # it is a project's (else the global pins apply here)
    tools: list  # [outdated.OutdatedTool]


def outdated_tools(tools=(), warn=None):
    """`toolbox outdated`: what outdated.outdated says of the pins here (or of `tools`)."""
    from toolbox.ops.outdated import outdated

    context = context_here()
    try:
        rows = outdated(context, tools)
    finally:
        context.close()
        context.report_warnings(warn)
    return OutdatedReport(context.pins.path, context.pins.is_project, rows)


# -- trust ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trusted:
    path: str  # the project's toolbox.toml
    recipes: list  # its recipes, now trusted
    described: list  # lines: what each grants, and what changed since the last trust


def trust_project():
    """Trust this project's recipes and services as they are now. What is described and what
    is recorded come from the same read of toolbox.toml."""
    from toolbox.project.services import TrustedAs, parse_services
    from toolbox.project.trust import TrustStore, describe

    context = context_here()
    pins = _project_pins(context)
    recipes = sorted(pins.recipes.values(), key=lambda r: r.name)
    if pins.services:
        defined = parse_services(pins.services, pins.path)
        recipes += [TrustedAs(defined[name]) for name in sorted(defined)]
    store = TrustStore(context.layout)
    before = store.read(pins.path)
    store.trust(pins.path, recipes)
    return Trusted(pins.path, recipes, describe(recipes, before, context.catalog) if recipes else [])


def untrust_project():
    """Withdraw trust from this project's recipes; the project's toolbox.toml."""
    from toolbox.project.trust import TrustStore

    context = context_here()
    pins = _project_pins(context)
    TrustStore(context.layout).untrust(pins.path)
    return pins.path


def _project_pins(context):
    if not context.pins.is_project:
        raise ToolboxError("no toolbox.toml here or in any directory above", hint="run it in a project")
    return context.pins
