"""Recipes: what a tool name means — which upstream image, how a version becomes its tag, the
command, and what of the host the tool gets (environment, mounts, network).

A recipe is a TOML table; the built-ins are one file each in recipes/ (the file's name is the
tool's), a user's live in the config directory's recipes/ the same way, and a project's
toolbox.toml may define its own under [recipes.NAME]. Looked up in that order of precedence:
project, user, built-in. The schema, with every key:

    description = "Command-line JSON processor"
    image = "ghcr.io/jqlang/jq"           # repository, no tag
    tag = "{version}"                     # how a version becomes a tag; {version} is replaced
    default_version = "1.7.1"             # when neither the project nor the user pins one
    command = ["jq"]                      # replaces the image's entrypoint and cmd (optional)
    default_command = ["bash"]            # only when no arguments are given; arguments replace it
    env = { JQ_COLORS = "1;30" }          # set inside
    pass_env = ["AWS_*", "PGHOST"]        # host variables passed through (NAME or PREFIX*)
    mounts = [{ source = "~/.aws", target = "~/.aws", read_only = true }]
    network = "host"                      # or "none"
    tty = false                           # interactive (a REPL or shell): for shims and `show`
    [aliases]                             # other names for the tool
    "jq1.6" = { version = "1.6" }         # a version of it
    jq-raw = { command = ["jq", "-r"] }   # another command in the same image
    [service]                             # a server (`toolbox run -d`, a project's services)
    port = 5432                           # the port it listens on
    data = "/var/lib/postgresql/data"     # gets a named volume unless one is given
    required_env = ["POSTGRES_PASSWORD"]  # refused without them
    ready = ["pg_isready", "-U", "postgres"]   # run inside: exit status 0 once it takes connections
    connect = "postgresql://postgres:{POSTGRES_PASSWORD}@{host}:{port}/postgres"
    client_env = { PGHOST = "{host}", PGPORT = "{port}" }   # for its clients (below), in a project
    client_of = "postgres"                # a client (psql): in a project that runs a postgres
                                          # service, it gets that service's client_env

What runs: `command` (if any), then the arguments given, or `default_command` when there are none;
as Docker's Entrypoint and Cmd, so `toolbox run ubuntu` starts bash and `toolbox run ubuntu ls /`
runs ls. With either key the image's own entrypoint and cmd are not used; with neither, they are
(Docker's rules). An alias with a command runs that command and no default_command.

Mount sources are host paths (`~` is your home); targets are paths inside (`~` is the home
inside). A source that does not exist is skipped. Cold tier: tomllib and dataclasses are fine.

A recipe that does not validate (a file that is not TOML, an unknown key) stops only its own
name: the catalog keeps it apart (Catalog.broken), using that name fails with the recipe's
error, and every other tool works. It still hides a recipe of the same name from a source of
lower precedence: a project that meant to replace jq never silently runs the built-in one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from toolbox.errors import RecipeError, ToolboxError

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
PASS_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\*?\Z")
NETWORKS = ("host", "none")
NOT_GRANTED_NETWORKS = ("none",)  # a restriction, not access: never listed nor recorded as a grant
SOURCES = ("project", "user", "builtin")  # precedence, highest first
KEYS = {"description", "image", "tag", "default_version", "command", "default_command", "env", "pass_env",
        "mounts", "network", "tty", "aliases", "service", "client_of"}
SERVICE_KEYS = {"port", "data", "required_env", "ready", "connect", "client_env"}
ALIAS_KEYS = {"version", "command"}
MOUNT_KEYS = {"source", "target", "read_only"}


@dataclass(frozen=True)
class BrokenRecipe:
    """A recipe that does not validate, kept so that only its own name fails."""

    name: str
    source: str  # one of SOURCES
    origin: str  # the file it came from
    error: RecipeError


@dataclass(frozen=True)
class Mount:
    source: str  # host path, `~` for the user's home
    target: str  # path inside, `~` for the home inside
    read_only: bool = False


@dataclass(frozen=True)
class Alias:
    name: str
    version: str | None = None
    command: tuple | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """What a server recipe says of the service it runs: none of it is a grant (it gives the
    image nothing of the host)."""

    port: int | None = None
    data: str | None = None
    required_env: tuple = ()
    ready: tuple | None = None
    connect: str | None = None
    client_env: dict = field(default_factory=dict)  # templates, as `connect`

    def values(self) -> dict[str, object]:
        """As the launch path takes it (plain values)."""
        return {"port": self.port, "data": self.data, "required_env": list(self.required_env),
                "ready": list(self.ready) if self.ready else None, "connect": self.connect}


@dataclass(frozen=True)
class Recipe:
    name: str
    image: str
    default_version: str
    source: str  # one of SOURCES
    origin: str  # the file it came from
    tag: str = "{version}"
    description: str = ""
    command: tuple | None = None
    default_command: tuple | None = None  # run when no arguments are given
    env: dict = field(default_factory=dict)
    pass_env: tuple = ()
    mounts: tuple = ()
    network: str = "host"
    tty: bool = False
    aliases: dict = field(default_factory=dict)  # name -> Alias
    service: ServiceSpec | None = None
    client_of: str | None = None  # the server recipe whose project service it reaches by default

    def tag_for(self, version: str) -> str:
        return self.tag.replace("{version}", version)

    def reference_for(self, version: str) -> str:
        return f"{self.image}:{self.tag_for(version)}"

    def grant_items(self) -> frozenset[tuple]:
        """What the recipe gives the tool of the user's machine, normalized, as a set of
        tuples: what trust records and compares. Pins and versions are not grants (any version
        of a trusted recipe runs the same command with the same access), nor are the
        description and tty; an alias's command is, and so is the default command. The host's
        network is a grant; `network = "none"` is a restriction and grants nothing (so host →
        none shows as a dropped grant, none → host as a new one)."""
        items = {("image", self.image), ("tag", self.tag)}
        if self.network not in NOT_GRANTED_NETWORKS:
            items.add(("network", self.network))
        if self.command:
            items.add(("command", *self.command))
        if self.default_command:
            items.add(("default_command", *self.default_command))
        for alias in self.aliases.values():
            if alias.command:
                items.add(("alias", alias.name, *alias.command))
        items.update(("mount", _normal_path(m.source), _normal_path(m.target), "ro" if m.read_only else "rw")
                     for m in self.mounts)
        items.update(("pass_env", pattern) for pattern in self.pass_env)
        items.update(("env", key, value) for key, value in self.env.items())
        return frozenset(items)

    def describe_command(self) -> str:
        """What runs, for people: `bash`, or the arguments when there are some."""
        if not self.command and not self.default_command:
            return "(the image's entrypoint and cmd)"
        head = _shell_words(self.command) + " " if self.command else ""
        if not self.default_command:
            return head + "ARGUMENTS..."
        return f"{head}{_shell_words(self.default_command)} without arguments, else {head}ARGUMENTS..."

    def grants(self) -> list[str]:
        """The grants as lines, for people: what `toolbox trust` and `recipes show` print."""
        return [describe_grant(item) for item in sorted_grants(self.grant_items())]


_GRANT_ORDER = ("image", "tool", "tag", "entrypoint", "command", "default_command", "alias", "mount",
                "pass_env", "env", "network", "port", "volume")


def sorted_grants(items: Iterable[tuple]) -> list[tuple]:
    return sorted(items, key=lambda item: (
        _GRANT_ORDER.index(item[0]) if item[0] in _GRANT_ORDER else len(_GRANT_ORDER), item))


_DESCRIPTIONS = {"image": "image {0}", "pass_env": "host variable {0}", "env": "variable {0}={1}",
                 "network": "network {0}", "port": "publish port {0}", "volume": "volume {0} at {1}"}


def describe_grant(item: tuple) -> str:
    kind, *values = item
    if kind == "command":
        return f"command {_shell_words(values)}"
    if kind == "entrypoint":
        return f"entrypoint {_shell_words(values)}"
    if kind == "default_command":
        return f"without arguments, command {_shell_words(values)}"
    if kind == "alias":
        return f"alias {values[0]} runs {_shell_words(values[1:])}"
    if kind == "mount":
        return f"mount {values[0]} at {values[1]} {'read-only' if values[2] == 'ro' else 'read-write'}"
    if kind == "tag":  # the scheme, with the placeholder as a word people read: "tags VERSION-slim"
        scheme = values[0]
        return (f"tags {scheme.replace('{version}', 'VERSION')}" if "{version}" in scheme
                else f"tag {scheme} for every version")
    return _DESCRIPTIONS[kind].format(*values) if kind in _DESCRIPTIONS else " ".join(item)


def _shell_words(words):
    import shlex

    return " ".join(shlex.quote(word) for word in words)


def _normal_path(path):
    import posixpath

    return posixpath.normpath(path) if path not in ("~",) else path


# -- parsing and validation ---------------------------------------------------------------------
def parse_recipe(name: str, table: object, source: str, origin: str) -> Recipe:
    """A Recipe from a TOML table, or RecipeError naming `origin`, the key and what is allowed."""
    where = f"{origin}: recipe {name!r}"
    if not NAME_PATTERN.match(name):
        raise RecipeError(f"{where}: the name must be lowercase letters, digits, '.', '_' or '-'",
                          hint="rename the file or table")
    check_table(table, KEYS, where)
    image = _string(table, "image", where, required=True)
    if ":" in image.rpartition("/")[2] or "@" in image:
        raise RecipeError(f"{where}: 'image' is a repository without tag or digest, e.g. ghcr.io/jqlang/jq",
                          hint="put the tag scheme in 'tag'")
    from toolbox.oci.reference import ImageRef  # the same rules as `toolbox pull`

    tag = _string(table, "tag", where, default="{version}")
    default_version = _version(_string(table, "default_version", where, required=True),
                               f"{where}: 'default_version'")
    try:
        ImageRef.parse(f"{image}:{tag.replace('{version}', default_version)}")
    except ToolboxError as err:
        raise RecipeError(f"{where}: 'image' and 'tag' do not make a valid reference: {err}") from None
    network = _string(table, "network", where, default="host")
    if network not in NETWORKS:
        raise RecipeError(f"{where}: 'network' must be one of {', '.join(NETWORKS)}, not {network!r}")
    tty = table.get("tty", False)
    if not isinstance(tty, bool):
        raise RecipeError(f"{where}: 'tty' must be true or false")
    return Recipe(
        name=name,
        image=image,
        default_version=default_version,
        source=source,
        origin=origin,
        tag=tag,
        description=_string(table, "description", where, default=""),
        command=_command(table.get("command"), f"{where}: 'command'"),
        default_command=_command(table.get("default_command"), f"{where}: 'default_command'"),
        env=_env(table.get("env", {}), where),
        pass_env=_pass_env(table.get("pass_env", []), where),
        mounts=tuple(_mount(m, f"{where}: 'mounts'")
                     for m in _list(table.get("mounts", []), f"{where}: 'mounts'")),
        network=network,
        tty=tty,
        aliases=_aliases(table.get("aliases", {}), where),
        service=_service(table.get("service"), where),
        client_of=_client_of(table.get("client_of"), where),
    )


def check_table(table: object, keys: set[str], where: str, error: type[ToolboxError] = RecipeError) -> None:
    """`table` is a TOML table with only `keys`, or `error` naming the first other key."""
    if not isinstance(table, dict):
        raise error(f"{where} must be a table")
    unknown = sorted(set(table) - keys)
    if unknown:
        raise error(f"{where}: unknown key {unknown[0]!r}", hint=f"allowed keys: {', '.join(sorted(keys))}")


def _service(value, where):
    if value is None:
        return None
    where = f"{where}: [service]"
    check_table(value, SERVICE_KEYS, where)
    port = value.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        raise RecipeError(f"{where}: 'port' must be a port number")
    data = value.get("data")
    if data is not None and (not isinstance(data, str) or not data.startswith("/") or data == "/"):
        raise RecipeError(f"{where}: 'data' must be an absolute path inside, not /")
    required = _list(value.get("required_env", []), f"{where}: 'required_env'")
    if not all(isinstance(name, str) and ENV_NAME.match(name) for name in required):
        raise RecipeError(f"{where}: 'required_env' must list variable names")
    connect = value.get("connect")
    if connect is not None and not isinstance(connect, str):
        raise RecipeError(f"{where}: 'connect' must be a string")
    client_env = value.get("client_env", {})
    if not isinstance(client_env, dict) or not all(ENV_NAME.match(key) and isinstance(text, str)
                                                   for key, text in client_env.items()):
        raise RecipeError(f"{where}: 'client_env' must be a table of NAME = \"template\"")
    return ServiceSpec(port=port, data=data, required_env=tuple(required),
                       ready=_command(value.get("ready"), f"{where}: 'ready'"), connect=connect,
                       client_env=dict(client_env))


def _client_of(value, where):
    if value is not None and (not isinstance(value, str) or not NAME_PATTERN.match(value)):
        raise RecipeError(f"{where}: 'client_of' must be a recipe's name")
    return value


def _string(table, key, where, required=False, default=None):
    if key not in table:
        if required:
            raise RecipeError(f"{where}: missing {key!r}")
        return default
    value = table[key]
    if not isinstance(value, str) or not value:
        raise RecipeError(f"{where}: {key!r} must be a non-empty string")
    return value


def _version(value, where):
    if not VERSION_PATTERN.match(value):
        raise RecipeError(f"{where}: {value!r} is not a version (letters, digits, '.', '_', '+', '-')")
    return value


def _list(value, where):
    if not isinstance(value, list):
        raise RecipeError(f"{where} must be a list")
    return value


def _command(value, where):
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(part, str) and part for part in value):
        raise RecipeError(f"{where} must be a non-empty list of strings, e.g. [\"jq\"]")
    return tuple(value)


def _env(value, where):
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: 'env' must be a table of NAME = \"value\"")
    for key, text in value.items():
        if not ENV_NAME.match(key) or not isinstance(text, str):
            raise RecipeError(f"{where}: 'env' entry {key!r} must be NAME = \"value\" (a string)")
    return dict(value)


def _pass_env(value, where):
    for pattern in _list(value, f"{where}: 'pass_env'"):
        if not isinstance(pattern, str) or not PASS_ENV.match(pattern) or pattern == "*":
            raise RecipeError(f"{where}: 'pass_env' entry {pattern!r} must be a variable name or a PREFIX* "
                              "pattern")
    return tuple(value)


def _mount(value, where):
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: each mount is a table {{ source = \"~/.aws\", target = \"~/.aws\", "
                          f"read_only = true }}")
    unknown = sorted(set(value) - MOUNT_KEYS)
    if unknown:
        raise RecipeError(f"{where}: unknown mount key {unknown[0]!r}",
                          hint=f"allowed: {', '.join(sorted(MOUNT_KEYS))}")
    source, target = value.get("source"), value.get("target")
    for key, path in (("source", source), ("target", target)):
        if not isinstance(path, str) or not (path.startswith("/") or path == "~" or path.startswith("~/")):
            raise RecipeError(f"{where}: mount {key} {path!r} must be an absolute path or start with ~/")
        if "/../" in path + "/" or path in ("/", "~"):
            raise RecipeError(f"{where}: mount {key} {path!r} must name a directory or file below / or ~, "
                              "without '..'")
    read_only = value.get("read_only", False)
    if not isinstance(read_only, bool):
        raise RecipeError(f"{where}: mount 'read_only' must be true or false")
    return Mount(source, target, read_only)


def _aliases(value, where):
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: 'aliases' must be a table of NAME = {{ version = \"...\", command = "
                          f"[...] }}")
    aliases = {}
    for name, table in value.items():
        alias_where = f"{where}: alias {name!r}"
        if not NAME_PATTERN.match(name):
            raise RecipeError(f"{alias_where}: a name is lowercase letters, digits, '.', '_' or '-'")
        if not isinstance(table, dict) or set(table) - ALIAS_KEYS:
            raise RecipeError(f"{alias_where} must be a table with 'version' and/or 'command'")
        version = table.get("version")
        if version is not None:
            if not isinstance(version, str):
                raise RecipeError(f"{alias_where}: 'version' must be a string")
            _version(version, f"{alias_where}: 'version'")
        aliases[name] = Alias(name, version, _command(table.get("command"), f"{alias_where}: 'command'"))
    return aliases
