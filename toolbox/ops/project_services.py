"""A project's services (toolbox.toml's [services.NAME], project/services.py): `toolbox up`,
`toolbox down`, `toolbox status`. Each runs as a service of its own (`toolbox run -d`:
hot/detach.py), named after the checkout and the service, so that two checkouts of one project
never share a database by accident: PROJECT-xxxxxx-NAME, xxxxxx from the checkout's path; its
named volumes are scoped the same way. A service whose definition changed is made again on
`up` (its volumes stay); one that is only stopped is started with its writable layer.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import dataclass

from toolbox.errors import ConfigError, ServiceError, ToolboxError
from toolbox.runtime import containers, services

READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServiceState:
    name: str  # the service's name in toolbox.toml
    container: str
    action: str  # what `up` did: "started", "restarted", "made anew", "already running"; `down`: "removed"
    ports: tuple = ()
    connect: str | None = None  # how to reach it, from a server recipe's `connect`


@dataclass(frozen=True)
class Resolved:
    """A service definition made concrete: its image, a server recipe's [service] (plain
    values, or None) and its volumes, the recipe's data directory among them."""

    image: str
    service: dict | None
    volumes: tuple


def resolve(context, definition) -> Resolved:
    """`tool = "postgres@16"` through the catalog (a project's recipe needs its trust), the
    version the project pins when none is given; the data directory of a server recipe gets
    the volume NAME-data unless the definition mounts one there."""
    from toolbox.ops.context import parse_tool_spec

    image, service = definition.image, None
    if definition.tool:
        name, version = parse_tool_spec(definition.tool)
        recipe, _ = context.catalog.find(name)
        context.check_trusted([recipe])
        image = recipe.reference_for(version or context.pins.versions.get(name) or recipe.default_version)
        service = recipe.service.values() if recipe.service else None
    volumes = tuple(definition.volumes)
    data = (service or {}).get("data")
    if data and data not in [target for _, target in volumes]:
        volumes += ((f"{definition.name}-data", data),)
    return Resolved(image, service, volumes)


def project_definitions(context, names=()):
    """(the project's Pins, its service definitions: all, or those `names` asks for)."""
    from toolbox.project.services import parse_services
    from toolbox.runtime.forward import parse_port

    pins = context.pins
    if not pins.is_project:
        raise ToolboxError("no toolbox.toml here or in any directory above", hint="run it in a project")
    if not pins.services:
        raise ToolboxError(f"{pins.path} defines no services",
                           hint='add one: [services.db] with image = "docker.io/library/postgres:16"')
    definitions = parse_services(pins.services, pins.path)
    for definition in definitions.values():
        for port in definition.ports:
            try:
                parse_port(port)
            except ValueError as err:
                raise ConfigError(f"{pins.path}: service {definition.name!r}: port {port!r}: {err}") from None
    unknown = [name for name in names if name not in definitions]
    if unknown:
        raise ToolboxError(f"{pins.path} defines no service {unknown[0]!r}",
                           hint=f"its services: {', '.join(sorted(definitions))}")
    return pins, [definitions[name] for name in (names or sorted(definitions))]


def checkout_prefix(pins) -> str:
    """PROJECT-xxxxxx: the project directory's name and a digest of its path."""
    directory = os.path.abspath(pins.directory)
    slug = "".join(c if c.isalnum() or c in "_.-" else "-" for c in os.path.basename(directory).lower())
    slug = slug.strip("-._")[:40] or "project"
    return f"{slug}-{hashlib.sha256(os.fsencode(directory)).hexdigest()[:6]}"


def require_trust(context, pins, definitions):
    """Refuse (NotTrusted) services whose grants are not trusted, after offering to trust them
    when the context can ask (a terminal); as for the project's recipes."""
    from toolbox.project.services import TrustedAs
    from toolbox.project.trust import TrustStore, refusal

    store = TrustStore(context.layout, context.environ)
    wrapped = [TrustedAs(definition) for definition in definitions]
    untrusted, record = store.untrusted(pins.path, wrapped)
    if not untrusted:
        return
    error = refusal(pins, untrusted, record, context.catalog, store.trusted_elsewhere(pins.path, untrusted),
                    kind="services")
    question = f"{error.message}\nTrust them (as `toolbox trust` in {pins.directory} would)?"
    if context.confirm is None or not context.confirm(question):
        raise error
    store.trust(pins.path, untrusted, keep=record)


def fingerprint(definition) -> str:
    """What the container was made from: a changed definition makes it anew."""
    items = sorted(repr(item) for item in definition.grant_items())
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def up(context, names=(), timeout=READY_TIMEOUT) -> list[ServiceState]:
    """Start the project's services (or `names`) and wait until each accepts connections on its
    published ports."""
    from toolbox.hot.detach import connection_hint
    from toolbox.ops import services as containers_ops

    pins, definitions = project_definitions(context, names)
    require_trust(context, pins, definitions)
    prefix = checkout_prefix(pins)
    done = []
    for definition in definitions:
        name = f"{prefix}-{definition.name}"
        path = os.path.join(context.layout.containers_dir, name)
        settings = services.read_service(path) if containers.read_record(path) is not None else None
        if settings is not None and settings.get("definition") != fingerprint(definition):
            containers_ops.remove(context.layout, name, force=True)  # its volumes stay
            settings, action = None, "made anew"
        elif settings is not None and containers.is_running(path):
            action = "already running"
        elif settings is not None:
            containers_ops.start(context.layout, name)
            action = "started"
        else:
            action = "started"
        resolved = resolve(context, definition)
        if settings is None:
            _run(context, pins, definition, resolved, name, prefix)
        ports = _ports(definition)
        _wait_until_ready(context.layout, name, definition, resolved, ports, timeout)
        done.append(ServiceState(definition.name, name, action, tuple(str(port) for port in ports),
                                 connection_hint(resolved.service, definition.env, ports)))
    return done


def _ports(definition):
    from toolbox.runtime.forward import parse_port

    return [parse_port(port) for port in definition.ports]


def _run(context, pins, definition, resolved, name, prefix):
    from toolbox.hot.detach import start_service
    from toolbox.hot.launch import load_plan
    from toolbox.hot.runargs import parse_args

    argv = ["-d", "--name", name, "--no-cwd", "--no-mount-args"]
    for key, value in sorted(definition.env.items()):
        argv += ["-e", f"{key}={value}"]
    for port in definition.ports:
        argv += ["-p", port]
    for volume, target in resolved.volumes:
        argv += ["-v", f"{prefix}-{volume}:{target}"]
    command = list(definition.command or ())
    if definition.entrypoint:  # compose's list: the first word is the entrypoint, the rest comes first
        argv += ["--entrypoint", definition.entrypoint[0]]
        command = list(definition.entrypoint[1:]) + command
    options = parse_args(argv + ["--", resolved.image] + command)
    options.tool_service = resolved.service  # its required variables are checked, as for run -d
    plan = load_plan(context.layout, options)
    start_service(context.layout, options, plan, definition.tool or resolved.image,
                  extra={"definition": fingerprint(definition), "project": pins.path,
                         "project_service": definition.name}, announce=False)


def _wait_until_ready(layout, name, definition, resolved, ports, timeout):
    """Until a server recipe's `ready` command succeeds in the service, and every published TCP
    port takes a connection and keeps it (the monitor accepts at once and closes what the server
    does not take yet); or the service has ended (an error with its last lines), or `timeout`
    seconds have passed."""
    from toolbox.ops import services as containers_ops

    path = os.path.join(layout.containers_dir, name)
    waiting = [port for port in ports if port.protocol == "tcp"]
    ready = (resolved.service or {}).get("ready")
    deadline = time.monotonic() + timeout
    while True:
        if not containers.is_running(path):
            lines = containers_ops.read_log(layout, name, tail=5)
            said = "\n".join(line.text.decode("utf-8", "replace") for line in lines)
            ended = containers_ops.describe(layout, name)["status"]
            message = f"service {definition.name} ({name}) ended: {ended}" + (f"\n{said}" if said else "")
            raise ServiceError(message, hint=f"toolbox logs {name}")
        if ready and _ready(name, ready):
            ready = None
        waiting = [port for port in waiting if not _accepts(port)]
        if not waiting and not ready:
            return
        if time.monotonic() > deadline:
            what = (f"`{' '.join(ready)}` does not succeed in it" if ready
                    else f"it refuses connections on {waiting[0]}")
            raise ServiceError(f"service {definition.name} ({name}) is not ready after {timeout:.0f} s: "
                               f"{what}", hint=f"toolbox logs {name}")
        time.sleep(0.1)


def _ready(name, command) -> bool:
    """A server recipe's readiness command, run in the service (`toolbox exec`, in a process of
    its own: joining the service's namespaces is for a process that ends)."""
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-m", "toolbox", "exec", name, *command],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def _accepts(port) -> bool:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(port.host_ip, port.host_ip)
    try:
        connection = socket.create_connection((host, port.host_port), timeout=1)
    except OSError:
        return False
    with connection:
        connection.settimeout(0.2)
        try:
            return connection.recv(1) != b""  # a greeting (MySQL's): ready; closed at once: not yet
        except socket.timeout:
            return True  # kept open: the server took it and waits for the client to speak
        except OSError:
            return False


def down(context, names=(), volumes=False, timeout=services.DEFAULT_STOP_TIMEOUT) -> list[ServiceState]:
    """Stop and remove the project's services (or `names`); with `volumes`, their volumes too."""
    from toolbox.ops import services as containers_ops
    from toolbox.store.volumes import remove_volume

    pins, definitions = project_definitions(context, names)
    prefix = checkout_prefix(pins)
    done = []
    for definition in definitions:
        name = f"{prefix}-{definition.name}"
        if containers_ops.exists(context.layout, name):
            containers_ops.stop(context.layout, name, timeout)
            containers_ops.remove(context.layout, name)
            done.append(ServiceState(definition.name, name, "removed"))
        if volumes:
            for volume, _ in resolve(context, definition).volumes:
                if os.path.isdir(context.layout.volume_data(f"{prefix}-{volume}")):
                    remove_volume(context.layout, f"{prefix}-{volume}")
    return done


def status(context) -> list[dict[str, object]]:
    """Each service of the project, as `toolbox ps` describes it (or "not created")."""
    from toolbox.ops import services as containers_ops

    pins, definitions = project_definitions(context)
    prefix = checkout_prefix(pins)
    found = []
    for definition in definitions:
        name = f"{prefix}-{definition.name}"
        if containers_ops.exists(context.layout, name):
            found.append(dict(containers_ops.describe(context.layout, name), service=definition.name))
        else:
            found.append({"service": definition.name, "name": name,
                          "image": definition.tool or definition.image,
                          "status": "not created", "running": False, "pid": None, "started": None,
                          "finished": None, "ports": list(definition.ports), "volumes": []})
    return found
