"""The pins, recipes, lock and trust that apply in one directory (Context), and which tool and
version a name runs there (ToolRun). Cold tier.

Which version runs: `tool@VERSION` as typed; else an alias's version (python3.11); else the pin;
else the recipe's default. A project's pins come first; the user's global pins apply to the
tools it does not pin (Context.pinned). A pinned version runs by the digest its lock entry
names, the lock brought up to date first when the pins changed (locking.py; not with --frozen or
CI=true, which fail instead). An unpinned version runs by tag.

Every input is read once (fsutil.read_input) and the stamp of what was read is kept in
`Context.read_stamps`, so a tool plan made here names exactly the files it was made from.
A project's recipes are used for nothing — running, locking, pulling — until their grants are
trusted (project/trust.py).
"""

import os
import re
from dataclasses import dataclass

from toolbox.errors import ToolboxError, UnknownTool
from toolbox.ops.locking import locked_entry
from toolbox.project.catalog import Catalog
from toolbox.project.lockfile import LockEntry, read_lock
from toolbox.project.project import LOCK_FILE, check_owner, current_pins, global_pins

TOOL_SPEC = re.compile(r"([a-z0-9][a-z0-9._-]*)(?:@([A-Za-z0-9][A-Za-z0-9._+-]*))?\Z")


def parse_tool_spec(text):
    """(name, version or None) when `text` names a tool (`jq`, `python@3.11`), else None: an
    image reference has a registry, a path, a tag or a digest."""
    match = TOOL_SPEC.match(text)
    return (match.group(1), match.group(2)) if match else None


@dataclass(frozen=True)
class ToolRun:
    """What `toolbox run TOOL` runs: an image and the recipe's settings for it."""

    tool: str  # as typed, without the version
    recipe: object  # Recipe
    version: str
    image: str  # a reference toolbox run can pull: by digest when locked
    command: tuple | None
    pinned_by: str | None  # the file that pins the version, or None
    entry: LockEntry | None = None  # the lock entry it runs by
    default_command: tuple | None = None  # what runs when no arguments are given
    lock_path: str | None = None  # the lock that entry is from
    client_env: tuple = ()  # KEY=VALUE: how a client reaches the project's service (client_env_for)

    def run_settings(self):
        """The recipe's part of the run, as the launch path takes it (plain values, no classes)."""
        recipe = self.recipe
        return {
            "pinned": self.pinned_by is not None,
            "image": self.image,
            "command": list(self.command) if self.command else None,
            "default_command": list(self.default_command) if self.default_command else None,
            "env": [f"{key}={value}" for key, value in sorted(recipe.env.items())] + list(self.client_env),
            "pass_env": list(recipe.pass_env),
            "mounts": [(m.source, m.target, m.read_only) for m in recipe.mounts],
            "network": recipe.network,
            "service": recipe.service.values() if recipe.service else None,  # a server's (run -d)
        }


class Context:
    """The pins, catalog, lock and trust that apply in one directory. `confirm(text)`, when
    given, is asked whether to trust recipes it shows (a terminal prompt); without it, or when
    it says no, untrusted recipes are an error."""

    def __init__(self, services, cwd=None, confirm=None, pins=None):
        self.services = services
        self.layout = services.layout
        self.environ = services.environ
        self.confirm = confirm
        self.pins = pins or current_pins(services.layout, cwd or os.getcwd(), services.config,
                                         services.environ)
        self.catalog = Catalog.load(services.layout, self.pins if self.pins.is_project else None)
        self.read_stamps = dict(self.catalog.stamps)  # path -> stamp of the bytes read
        if services.config.path:
            self.read_stamps[services.config.path] = services.config.stamp
        self.read_stamps[self.pins.path] = self.pins.stamp
        self.cacheable = True  # False when an input changed under us: no tool plan is written
        self.warnings = []  # for the edge to print: what did not stop the command
        self._client = None
        self._global = None

    # -- which pin applies: the project's, else the user's global one ----------------------------
    def global_context(self):
        """The user's global pins, which apply in a project to the tools it does not pin (as
        mise layers its configs); None outside a project, where they are this context's own."""
        if not self.pins.is_project:
            return None
        if self._global is None:
            self._global = Context(self.services, confirm=self.confirm,
                                   pins=global_pins(self.layout, self.services.config))
        return self._global

    def pinned(self, recipe):
        """(version, the context whose pins and lock it comes from) of the pin that applies to
        `recipe` here: the project's; else the global one, unless the project has a recipe of
        that name of its own (the global pin is a version of another recipe); (None, self) when
        nothing pins it."""
        version = self.pins.versions.get(recipe.name)
        outer = self.global_context() if version is None and recipe.source != "project" else None
        if (outer is not None and outer.catalog.recipes.get(recipe.name) == recipe
            and recipe.name in outer.pins.versions):
            return outer.pins.versions[recipe.name], outer
        return version, self

    def effective_pins(self):
        """{tool: (version, context)} for every pin that applies here (pinned())."""
        pins = {}
        outer = self.global_context()
        for tool in sorted(set(self.pins.versions) | set(outer.pins.versions if outer else ())):
            recipe = self.catalog.recipes.get(tool)
            if recipe is None:  # a pin without a recipe: shown, so that it can be fixed
                owner = self if tool in self.pins.versions else outer
                pins[tool] = (owner.pins.versions[tool], owner)
                continue
            version, owner = self.pinned(recipe)
            if version is not None:
                pins[tool] = (version, owner)
        return pins

    def pinned_tools(self):
        """The recipe names pinned here (project and global pins) that a shim can run."""
        return sorted(tool for tool in self.effective_pins() if tool in self.catalog.recipes)

    def _absorb(self, other):
        """What another context (the global one) read and said becomes this one's: a plan made
        here depends on the global lock and config too."""
        if other is not self:
            self.read_stamps.update(other.read_stamps)
            self.warnings += other.warnings
            other.warnings.clear()
            self.cacheable = self.cacheable and other.cacheable

    # -- which tool, which version --------------------------------------------------------------
    def tool_run(self, text, frozen=False):
        name, version = parse_tool_spec(text) or (None, None)
        if name is None:
            raise ToolboxError(f"{text!r} is not a tool name",
                               hint="a tool is NAME or NAME@VERSION, e.g. python@3.11")
        recipe, alias = self.catalog.find(name)
        self.check_trusted([recipe])
        version = version or (alias.version if alias else None)
        pinned, owner = self.pinned(recipe)
        command = alias.command if alias and alias.command else recipe.command
        # an alias's command is all of it
        default_command = None if alias and alias.command else recipe.default_command
        if pinned is None and version is None:  # the version would come from a pin: is one misspelt?
            self.check_misspelt_pin(recipe.name)
        client_env = self.client_env_for(recipe)
        if version is None or version == pinned:
            if pinned is not None:
                entry = locked_entry(owner, recipe.name, frozen)
                self._absorb(owner)
                return ToolRun(name, recipe, pinned, entry.pinned_reference(), command, owner.pins.path,
                               entry, default_command, owner.pins.lock_path, client_env)
            version = recipe.default_version
        return ToolRun(name, recipe, version, recipe.reference_for(version), command, None,
                       default_command=default_command, client_env=client_env)

    def client_env_for(self, recipe):
        """For a client recipe (psql: client_of = "postgres"), the variables that point it at the
        project's service of that server recipe, as its [service] client_env says (PGHOST,
        PGPORT): only for a service whose grants are trusted, so an untrusted toolbox.toml cannot
        send a client elsewhere. Variables set on the host (pass_env) or with -e still win."""
        if not recipe.client_of or not self.pins.is_project or not self.pins.services:
            return ()
        from toolbox.errors import ConfigError
        from toolbox.hot.detach import fill_template
        from toolbox.project.services import TrustedAs, parse_services
        from toolbox.project.trust import TrustStore
        from toolbox.runtime.forward import parse_port

        try:
            definitions = parse_services(self.pins.services, self.pins.path)
            server, _ = self.catalog.find(recipe.client_of)
        except (ConfigError, ToolboxError):
            return ()  # a broken [services] table stops `up`, not its clients
        spec = server.service
        for definition in sorted(definitions.values(), key=lambda d: d.name):
            if not definition.tool or parse_tool_spec(definition.tool)[0] != recipe.client_of:
                continue
            store = TrustStore(self.layout, self.environ)
            untrusted, _ = store.untrusted(self.pins.path, [TrustedAs(definition)])
            if untrusted or spec is None or not spec.port:
                return ()
            try:
                ports = [parse_port(port) for port in definition.ports]
            except ValueError:
                return ()
            values = {key: fill_template(text, spec.port, definition.env, ports, bracket=False)
                      for key, text in sorted(spec.client_env.items())}
            return tuple(f"{key}={value}" for key, value in values.items() if value is not None)
        return ()

    def plan_inputs(self):
        """Every file a tool plan made here depends on (hot/plans.py), present or not."""
        from toolbox.project.trust import TrustStore

        paths = [self.pins.path, self.layout.config_file, self.pins.lock_path,
                 TrustStore(self.layout).record_path(self.pins.path),
                 os.path.join(self.layout.config_dir, LOCK_FILE)]  # global pins apply in a project too
        paths += sorted(self.catalog.stamps)
        # toolbox itself: its version, and the code that makes plans (edited in a checkout).
        paths += plan_making_sources()
        return list(dict.fromkeys(paths))

    def plan_stamps(self):
        """{path: stamp} for a tool plan: the stamp of what was read, for the files read."""
        from toolbox.stamps import stamp

        return {path: self.read_stamps[path] if path in self.read_stamps else stamp(path)
                for path in self.plan_inputs()}

    def check_trusted(self, recipes):
        """Refuse (NotTrusted) to use project recipes whose grants are not trusted, after
        offering to trust them when `confirm` is there."""
        project = [r for r in recipes if r.source == "project"]
        if not project:
            return
        from toolbox.project.trust import TrustStore, refusal

        store = TrustStore(self.layout, self.environ)
        untrusted, record = store.untrusted(self.pins.path, project)
        self.read_stamps[record.path] = record.stamp
        if not untrusted:
            return
        error = refusal(self.pins, untrusted, record, self.catalog,
                        store.trusted_elsewhere(self.pins.path, untrusted))
        question = f"{error.message}\nTrust them (as `toolbox trust` in {self.pins.directory} would)?"
        if self.confirm is None or not self.confirm(question):
            raise error
        store.trust(self.pins.path, untrusted, keep=record)
        self.read_stamps[record.path] = store.read(self.pins.path).stamp

    def check_misspelt_pin(self, tool):
        """A project that pins a name no recipe knows, close to `tool` (`jqq` for jq), means
        `tool`: running the host's jq, or the recipe's default version, would be a silent surprise."""
        import difflib

        unknown = [name for name in self.pins.versions
                   if name not in self.catalog.recipes and name not in self.catalog.aliases]
        close = difflib.get_close_matches(tool, unknown, n=1, cutoff=0.75)
        if close:
            raise ToolboxError(f"{self.pins.path} pins {close[0]!r}, which no recipe knows: is it {tool}?",
                               hint=f"fix the name under [tools] in {self.pins.path} (toolbox remove "
                                    f"{close[0]}; toolbox add {tool})")

    def check_pins(self, tools=None):
        """Every pin (or those of `tools`) names a recipe; an alias (python3.11) is refused,
        naming the recipe to pin."""
        for tool in sorted(tools or self.pins.versions):
            if tool not in self.catalog.recipes:
                if tool not in self.catalog.aliases:  # a pin in a file the user may not have in mind: name it
                    raise UnknownTool(f"no recipe for {tool!r}, which {self.pins.path} pins",
                                      hint=f"{self.catalog.suggestion(tool)}; fix the name there, or unpin "
                                           "it with `toolbox remove "
                                           f"{'--global ' if not self.pins.is_project else ''}{tool}`")
                raise ToolboxError(f"{self.pins.path}: [tools] {tool!r} is an alias of "
                                   f"{self.catalog.aliases[tool][0].name}",
                                   hint=f"pin {self.catalog.aliases[tool][0].name} instead")

    # -- the lock file, and the registry ---------------------------------------------------------
    def read_lock(self, conflicts=False):
        """toolbox.lock (a LockFile), read once; a project's must be yours like toolbox.toml.
        One with merge conflicts is a LockConflict, or with `conflicts` a LockFile of its sides."""
        safe = self.services.config.safe_directories
        owner_check = (lambda found: check_owner(found, safe, self.environ)) if self.pins.is_project else None
        lock = read_lock(self.pins.lock_path, owner_check, conflicts)
        self.read_stamps[self.pins.lock_path] = lock.stamp
        if self.pins.is_project:  # for `prune --unused`, `df` and `images`: the locks used here
            from toolbox.ops.usage import remember_project

            remember_project(self.layout, self.pins.path)
        return lock

    def report_warnings(self, warn):
        """Hand what did not stop the command to `warn` (the edge prints it), once; with no
        `warn`, nobody is told."""
        for message in self.warnings:
            if warn is not None:
                warn(message)
        self.warnings.clear()

    def client(self):
        if self._client is None:
            self._client = self.services.registry_client()
        return self._client

    def close(self):
        if self._client is not None:
            self._client.close()
        if self._global is not None:
            self._global.close()


# -- tool names where image names are expected ---------------------------------------------------------
def context_here(confirm=None):
    """The Context of the current directory, with the services the environment names."""
    from toolbox.ops.wiring import load_services

    return Context(load_services(), confirm=confirm)


def image_for_word(context, text, resolve=False):
    """What a word given to `pull`, `inspect` or `rmi` names. A tool first: a recipe's name or
    alias, maybe with @VERSION, is the image that tool runs here (pinned: by the lock's digest,
    locked first only when `resolve`; else by the version's tag). Anything else is an image
    reference, a bare word no recipe knows included (docker.io/library/NAME); an explicit
    `docker.io/library/jq` always means the image."""
    parsed = parse_tool_spec(text)
    if parsed is None:
        return text
    try:
        context.catalog.find(parsed[0])
    except UnknownTool:
        return text
    return context.tool_run(text, frozen=not resolve).image


# The code whose edits change what a tool plan says: the version, the project package (recipes,
# pins, lock, trust), the plan format, and the use cases that build plans.
PLAN_MAKERS = ("toolbox", "toolbox.fsutil", "toolbox.stamps", "toolbox.hot.plans", "toolbox.ops.context",
               "toolbox.ops.locking", "toolbox.ops.prepare",)


def plan_making_sources():
    """The source files of PLAN_MAKERS and of every module of toolbox.project, found from the
    modules themselves, so a module moved or added there is followed."""
    import importlib

    import toolbox.project

    project_dir = os.path.dirname(toolbox.project.__file__)
    files = [importlib.import_module(name).__file__ for name in PLAN_MAKERS]
    files += sorted(os.path.join(project_dir, name) for name in os.listdir(project_dir)
                    if name.endswith(".py"))
    return files
