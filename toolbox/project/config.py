"""The user's configuration file (TOML): registry mirrors, insecure registries, CA files, and
the tool versions pinned outside any project.

    # ~/.config/toolbox/config.toml (or $TOOLBOX_CONFIG)
    [tools]
    jq = "1.7.1"               # as in a project's toolbox.toml (project.py)

    [registries."docker.io"]
    mirrors = ["mirror.corp.example", "https://cache.example:5000/dockerhub"]

    [registries."registry.local:5000"]
    insecure = true            # plain HTTP, and no certificate check when HTTPS is tried
    ca_file = "/etc/corp/ca.pem"

    # Project files (toolbox.toml, toolbox.lock) owned by another user are refused, as git
    # refuses a repository it does not own; these directories are allowed ("*": all).
    safe_directories = ["/srv/team/project"]

A mirror is tried first and the registry itself when every mirror fails. A mirror may carry a
path prefix (`host/dockerhub` serves `dockerhub/library/jq`). Settings for a mirror's own host
(insecure, ca_file) come from that host's own [registries."host"] table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolbox.errors import ConfigError

_REGISTRY_KEYS = {"mirrors", "insecure", "ca_file"}


@dataclass(frozen=True)
class Mirror:
    host: str
    path_prefix: str = ""
    scheme: str | None = None  # from an explicit http:// or https:// in the config

    @classmethod
    def parse(cls, text: str, where: str) -> Mirror:
        scheme = None
        for prefix in ("https://", "http://"):
            if text.startswith(prefix):
                scheme, text = prefix[:-3], text[len(prefix):]
        host, _, path = text.strip("/").partition("/")
        if not host:
            raise ConfigError(f"{where}: empty mirror",
                              hint="a mirror is host[:port][/path], e.g. mirror.example.com")
        return cls(host.lower(), path, scheme)


@dataclass(frozen=True)
class RegistrySettings:
    mirrors: tuple = ()
    insecure: bool = False
    ca_file: str | None = None


@dataclass(frozen=True)
class UserConfig:
    path: str | None = None
    registries: dict = field(default_factory=dict)
    tools: dict = field(default_factory=dict)  # global pins: tool name -> version
    safe_directories: tuple = ()
    stamp: tuple | None = None  # of the bytes read (stamps.stamp_of); None: no file

    def registry(self, host: str) -> RegistrySettings:
        return self.registries.get(host.lower(), RegistrySettings())

    @classmethod
    def load(cls, path: str) -> UserConfig:
        from toolbox.project.tomlinput import read_toml_input

        doc, stamp = read_toml_input(path, ConfigError, "config file")
        if doc is None:
            return cls(path)
        from toolbox.project.project import parse_pins

        return cls(path, _parse_registries(doc, path), parse_pins(doc.get("tools", {}), path),
                   _safe_directories(doc, path), stamp)


def _safe_directories(doc, path):
    value = doc.get("safe_directories", [])
    if (not isinstance(value, list)
        or not all(isinstance(d, str) and (d == "*" or d.startswith("/")) for d in value)):
        raise ConfigError(f"{path}: 'safe_directories' must be a list of absolute directory paths (or \"*\")")
    return tuple(value)


def _parse_registries(doc, path):
    unknown = set(doc) - {"registries", "tools", "safe_directories"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {sorted(unknown)[0]!r}",
                          hint="allowed: [registries.\"host\"] tables, [tools] and safe_directories")
    tables = doc.get("registries", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: 'registries' must be a table of hosts")
    return {host.lower(): _parse_registry(host, table, path) for host, table in tables.items()}


def _parse_registry(host, table, path):
    where = f'{path}: [registries."{host}"]'
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(table) - _REGISTRY_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}",
                          hint=f"allowed keys: {', '.join(sorted(_REGISTRY_KEYS))}")
    mirrors = table.get("mirrors", [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        raise ConfigError(f"{where}: 'mirrors' must be a list of strings")
    insecure = table.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"{where}: 'insecure' must be true or false")
    ca_file = table.get("ca_file")
    if ca_file is not None and not isinstance(ca_file, str):
        raise ConfigError(f"{where}: 'ca_file' must be a path string")
    return RegistrySettings(tuple(Mirror.parse(m, f"{where} mirrors") for m in mirrors), insecure, ca_file)
