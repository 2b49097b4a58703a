"""A project's services: the databases and other servers its toolbox.toml asks for, started
together by `toolbox up` (ops/project_services.py).

    [services.db]
    tool = "postgres@16"                          # a server recipe (recipes/postgres.toml), or
    # image = "docker.io/library/postgres:16"     # a full reference: registry, repository, tag
    ports = ["5433:5432"]                          # as -p: [IP:]HOST:CONTAINER[/tcp|/udp]
    env = { POSTGRES_PASSWORD = "dev" }
    volumes = ["data:/var/lib/postgresql/data"]    # named volumes, scoped to this checkout
    command = ["postgres", "-c", "fsync=off"]      # optional: replaces the image's command
    entrypoint = ["sh", "-c"]                      # optional: replaces the image's entrypoint

A service chooses an image that runs as you, with the environment, ports and volumes it
names, so a project's services need trust as its recipes do (trust.py): what is trusted is each
service's grants (ServiceDefinition.grant_items), recorded beside the recipes' under the name
`service NAME`, which no recipe can have. Host paths as volumes are not offered: a project
file cannot mount your files into a server. A table that does not validate stops only `up`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from toolbox.errors import ConfigError, ToolboxError
from toolbox.project.recipes import ENV_NAME, NAME_PATTERN, check_table

KEYS = {"image", "tool", "ports", "env", "volumes", "command", "entrypoint"}
VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
TOOL = re.compile(r"[a-z0-9][a-z0-9._-]*(@[A-Za-z0-9][A-Za-z0-9._+-]*)?\Z")


@dataclass(frozen=True)
class ServiceDefinition:
    name: str  # [services.NAME]
    image: str | None  # this, or `tool`
    origin: str  # the toolbox.toml it is in
    tool: str | None = None  # a recipe's name, maybe @VERSION (ops resolves it through the catalog)
    command: tuple | None = None
    entrypoint: tuple | None = None
    env: dict = field(default_factory=dict)
    ports: tuple = ()  # -p values
    volumes: tuple = ()  # (volume name, target inside)
    source: str = "project"

    @property
    def trust_name(self) -> str:
        return f"service {self.name}"

    def grant_items(self) -> frozenset[tuple]:
        """What the service is given of the machine, as trust records and compares it."""
        items = {("tool", self.tool) if self.tool else ("image", self.image)}
        if self.command:
            items.add(("command", *self.command))
        if self.entrypoint:
            items.add(("entrypoint", *self.entrypoint))
        items.update(("env", key, value) for key, value in self.env.items())
        items.update(("port", port) for port in self.ports)
        items.update(("volume", name, target) for name, target in self.volumes)
        return frozenset(items)


class TrustedAs:
    """A service as trust.py's records and descriptions take a recipe: a name and its grants."""

    __slots__ = ("service", "name")

    def __init__(self, service: ServiceDefinition) -> None:
        self.service = service
        self.name = service.trust_name

    def grant_items(self) -> frozenset[tuple]:
        return self.service.grant_items()


def parse_services(table: object, origin: str) -> dict[str, ServiceDefinition]:
    """The [services.NAME] tables of `origin`, or ConfigError naming the service and the key."""
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: 'services' must hold [services.NAME] tables")
    return {name: parse_service(name, value, origin) for name, value in table.items()}


def parse_service(name: str, table: object, origin: str) -> ServiceDefinition:
    from toolbox.oci.reference import ImageRef

    where = f"{origin}: service {name!r}"
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"{where}: the name must be lowercase letters, digits, '.', '_' or '-'")
    check_table(table, KEYS, where, ConfigError)
    image, tool = table.get("image"), table.get("tool")
    if (image is None) == (tool is None):
        raise ConfigError(f"{where}: give either 'tool' (a recipe: \"postgres@16\") or 'image' (a reference "
                          "such as docker.io/library/postgres:16)")
    if tool is not None and (not isinstance(tool, str) or not TOOL.match(tool)):
        raise ConfigError(f"{where}: 'tool' {tool!r} must be a recipe's name, maybe @VERSION (postgres@16)")
    if image is not None:
        try:
            ImageRef.parse(image if isinstance(image, str) else "")
        except ToolboxError as err:
            raise ConfigError(f"{where}: 'image' {image!r}: {err}") from None
    ports = _strings(table.get("ports", []), f"{where}: 'ports'")  # read as -p by `up` (ops)
    volumes = _strings(table.get("volumes", []), f"{where}: 'volumes'")
    return ServiceDefinition(name=name, image=image, tool=tool, origin=origin,
                             command=_command(table.get("command"), where),
                             entrypoint=_command(table.get("entrypoint"), where, "entrypoint"),
                             env=_env(table.get("env", {}), where), ports=tuple(ports),
                             volumes=tuple(_volume(volume, where) for volume in volumes))


def _strings(value, where):
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigError(f"{where} must be a list of strings")
    return value


def _command(value, where, key="command"):
    if value is None:
        return None
    return tuple(_strings(value, f"{where}: '{key}'")) or None


def _env(value, where):
    if not isinstance(value, dict) or not all(ENV_NAME.match(key) and isinstance(text, str)
                                              for key, text in value.items()):
        raise ConfigError(f"{where}: 'env' must be a table of NAME = \"value\" (strings)")
    return dict(value)


def _volume(text, where):
    name, colon, target = text.partition(":")
    if not colon or not VOLUME_NAME.match(name) or not target.startswith("/") or target == "/":
        raise ConfigError(f"{where}: volume {text!r} must be NAME:/path inside (a named volume)",
                          hint="host paths cannot be mounted by a project's services")
    return name, target
