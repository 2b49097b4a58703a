"""Tools by name: `toolbox run jq`, `toolbox lock`, `sync`, `add`, `list`. Binds the recipes,
the pins (a project's toolbox.toml or the user's global ones), the lock file and trust, and
resolves tags to digests through the registry client. Cold tier.

Which version runs: `tool@VERSION` as typed; else an alias's version (python3.11); else the pin;
else the recipe's default. A pinned version runs by the digest its lock entry names, for this
platform; the lock is brought up to date first when the pins changed (not with --frozen or
CI=true, which fail instead). An unpinned version runs by tag.
"""

import os
import re
from dataclasses import dataclass

from .errors import NotFound, ToolboxError
from .lockfile import LockEntry, OutOfDate, disagreements, read_lock, write_lock
from .project import current_pins
from .recipes import Catalog

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

    def run_settings(self):
        """The recipe's part of the run, as the launch path takes it (plain values, no classes)."""
        recipe = self.recipe
        return {
            "pinned": self.pinned_by is not None,
            "image": self.image,
            "command": list(self.command) if self.command else None,
            "env": [f"{key}={value}" for key, value in sorted(recipe.env.items())],
            "pass_env": list(recipe.pass_env),
            "mounts": [(m.source, m.target, m.read_only) for m in recipe.mounts],
            "network": recipe.network,
        }


class Context:
    """The pins, catalog, lock and trust that apply in one directory."""

    def __init__(self, services, cwd=None):
        self.services = services
        self.layout = services.layout
        self.pins = current_pins(services.layout, cwd or os.getcwd(), services.config)
        self.catalog = Catalog.load(services.layout, self.pins if self.pins.is_project else None)
        self._client = None

    # -- which tool, which version --------------------------------------------------------------
    def tool_run(self, text, frozen=False):
        name, version = parse_tool_spec(text) or (None, None)
        if name is None:
            raise ToolboxError(f"{text!r} is not a tool name", hint="a tool is NAME or NAME@VERSION, e.g. python@3.11")
        recipe, alias = self.catalog.find(name)
        self.check_trusted([recipe])
        version = version or (alias.version if alias else None)
        pinned = self.pins.versions.get(recipe.name)
        command = alias.command if alias and alias.command else recipe.command
        if version is None or version == pinned:
            if pinned is not None:
                entry = self.locked_entry(recipe.name, frozen)
                from .platform import host_platform

                return ToolRun(name, recipe, pinned, entry.pinned_reference(host_platform()), command, self.pins.path)
            version = recipe.default_version
        return ToolRun(name, recipe, version, recipe.reference_for(version), command, None)

    def plan_inputs(self):
        """Every file a tool plan made here depends on (toolplan.py), present or not."""
        from . import recipes as recipes_module
        from .recipes import builtin_dir
        from .trust import TrustStore

        paths = [self.pins.path, self.layout.config_file, self.pins.lock_path, TrustStore(self.layout).record_path(self.pins)]
        for directory in (builtin_dir(), self.layout.user_recipes_dir):
            paths.append(directory)
            try:
                paths += sorted(os.path.join(directory, name) for name in os.listdir(directory) if name.endswith(".toml"))
            except FileNotFoundError:
                pass
        package = os.path.dirname(os.path.abspath(recipes_module.__file__))
        # toolbox itself: its version, and the modules that make plans (edited in a checkout).
        paths += [os.path.join(package, name) for name in ("__init__.py", "tools.py", "recipes.py", "lockfile.py", "project.py", "toolplan.py")]
        return list(dict.fromkeys(paths))

    def check_trusted(self, recipes):
        untrusted = [r for r in recipes if r.source == "project"]
        if untrusted:
            from .trust import TrustStore, refusal

            if not TrustStore(self.layout).is_trusted(self.pins):
                raise refusal(self.pins, untrusted, self.catalog)

    def check_pins(self, tools=None):
        """Every pin (or those of `tools`) names a recipe; an alias (python3.11) is refused,
        naming the recipe to pin."""
        for tool in sorted(tools or self.pins.versions):
            if tool not in self.catalog.recipes:
                self.catalog.find(tool)  # UnknownTool with suggestions
                raise ToolboxError(f"{self.pins.path}: [tools] {tool!r} is an alias of {self.catalog.aliases[tool][0].name}",
                                   hint=f"pin {self.catalog.aliases[tool][0].name} instead")

    # -- the lock --------------------------------------------------------------------------------
    def locked_entry(self, tool, frozen=False):
        """The lock entry to run `tool` by, locking it first if needed: only it, so that another
        pin that does not resolve (a typo, a version not published) does not stop this one."""
        return self.lock(frozen=frozen, only=tool)[tool]

    def lock(self, upgrade=(), frozen=False, upgrade_all=False, only=None):
        """The lock entries for the pins, resolving what is missing, stale or asked to be
        upgraded, and writing toolbox.lock when that changed it. With `frozen`, a lock that
        disagrees with the pins is an error instead. With `only`, that tool alone is checked
        and resolved; the other entries are kept as they are."""
        self.check_pins([only] if only else None)
        entries = read_lock(self.pins.lock_path)
        reasons = [reason for tool, reason in disagreements(self.pins, self.catalog, entries) if only in (None, tool)]
        if frozen and reasons:
            raise OutOfDate(f"{self.pins.lock_path} does not match {self.pins.path}: {'; '.join(reasons)}",
                            hint="run `toolbox lock` and commit toolbox.lock (--frozen and CI=true never resolve)")
        wanted = {}
        for tool, version in sorted(self.pins.versions.items()):
            entry = entries.get(tool)
            if only and tool != only:
                if entry is not None:
                    wanted[tool] = entry  # as it is: not this run's business
                continue
            recipe = self.catalog.recipes[tool]
            if entry is None or not entry.matches(recipe, version) or upgrade_all or tool in upgrade:
                self.check_trusted([recipe])
                entry = self.resolve(tool, recipe, version)
            wanted[tool] = entry
        if wanted != entries or not os.path.exists(self.pins.lock_path):
            write_lock(self.pins.lock_path, wanted)
        return wanted

    def resolve(self, tool, recipe, version):
        from .reference import ImageRef

        ref = ImageRef.parse(recipe.reference_for(version))
        try:
            digest, platforms = resolve_tag(self.client(), ref)
        except NotFound as err:
            raise NotFound(f"{tool} {version}: {recipe.reference_for(version)} does not exist ({err.message})",
                           hint=f"check the version; the recipe makes tags as {recipe.tag!r} from {recipe.image}") from None
        return LockEntry(tool, recipe.name, recipe.source, version, recipe.image, ref.tag, digest, platforms)

    def client(self):
        if self._client is None:
            self._client = self.services.registry_client()
        return self._client

    def close(self):
        if self._client is not None:
            self._client.close()


def resolve_tag(client, ref):
    """(the digest the tag names, {platform: manifest digest}). An index gives every runnable
    platform it lists; a lone manifest gives the one its config names."""
    from .manifest import MAX_CONFIG_SIZE, Index, parse_config, parse_manifest

    fetched = client.get_manifest(ref)
    document = parse_manifest(fetched.data, fetched.content_type, what=f"manifest of {ref}")
    if isinstance(document, Index):
        platforms = {str(entry.platform): str(entry.digest) for entry in document.runnable_entries()}
    else:
        config = parse_config(client.get_blob_bytes(ref, document.config, fetched.endpoint, MAX_CONFIG_SIZE), what=f"config of {ref}")
        platforms = {str(config.platform): str(fetched.digest)}
    if not platforms:
        raise NotFound(f"{ref} lists no image for any platform")
    return str(fetched.digest), platforms



def run_settings(text, frozen=False, cwd=None):
    """For the launch path: what `toolbox run TEXT` runs, as plain values (ToolRun.run_settings),
    also written as a tool plan (toolplan.py) so the next run reads it without this module."""
    import gc

    from . import toolplan
    from .services import load_services

    gc.enable()  # a shim turns it off for the launch path; resolving and pulling make cycles
    cwd = cwd or os.getcwd()
    services = load_services()
    pins_file = toolplan.pins_file(services.layout, cwd)
    context = Context(services, cwd)
    inputs = context.plan_inputs()
    before = {path: toolplan.stamp(path) for path in inputs if path != context.pins.lock_path}
    try:
        settings = context.tool_run(text, frozen).run_settings()
    finally:
        context.close()
    if all(toolplan.stamp(path) == recorded for path, recorded in before.items()):  # else: changed while read
        path = toolplan.plan_path(services.layout, pins_file, text)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with services.store.new_file(path) as file:
            file.write(toolplan.plan_bytes(pins_file, text, settings, inputs))
    return settings
