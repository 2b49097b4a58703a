"""`toolbox run -d`: the run made a service. The options and the plan give the same RunSpec a
foreground run would have, on a kept writable layer (a named container, its name generated when
none is given) and in a pid namespace of its own; a monitor then runs it in the background
(runtime/monitor.py) and this process prints the name and returns. Loaded only for -d.
"""

import os

from toolbox.errors import ServiceError, say
from toolbox.runtime import containers, services
from toolbox.runtime.spec import own_user, spec_to_values

SERVICE_SHM_SIZE = 64 * 1024 * 1024  # Docker's default /dev/shm: a server sized for it expects no more


def start_service(layout, options, plan, requested, extra=None, announce=True):
    """Start the service `options` describe (`requested`: the image or tool as typed, what
    `toolbox ps` shows; `extra`: more to keep in its settings); returns its name. With
    `announce`, a server recipe's connection string is said on stderr (`up` prints its own)."""
    from toolbox.hot.runspec import environment, make_spec

    ports = published_ports(options.ports)
    name = options.name or generated_name(layout, requested)
    service = options.tool_service or {}
    given = [volume.split(":")[1:2] for volume in options.volumes]
    if service.get("data") and [service["data"]] not in given:
        options.volumes.append(f"{name}-data:{service['data']}")  # a server recipe's data outlives `rm`
    if service.get("required_env"):  # the environment make_spec will give it, before a container is made
        require_env(requested, service, environment(plan, options, own_user()))
    use_subordinate_ids(options, plan)
    container = containers.claim(layout, name, options.image, plan)
    try:
        notes = []
        spec = make_spec(layout, plan, options, container, notes)
        spec.pid_namespace = True
        if spec.shm_size is None:
            spec.shm_size = SERVICE_SHM_SIZE
        if ports:
            spec.network = "private"
            notes.append("note: with published ports, the service has a network of its own with no way "
                         "out (nothing outside but what -p forwards to it)")
        for note in notes:
            say(note)
        services.signal_number(plan.get("stop_signal"))  # an image's bad StopSignal: said now, not at stop
        services.write_service(container.path, {
            "spec": spec_to_values(spec), "stop_signal": plan.get("stop_signal"), "remove": options.remove,
            "requested": requested, "reference": plan["reference"],
            "ports": [port.values() for port in ports], "service": service or None, **(extra or {})})
        if options.limits:
            from toolbox.hot.options import apply_limits

            apply_limits(options.limits)  # the monitor and the tool inherit the cgroup
        services.start_monitor(container.path, container.lock_fd)
    finally:
        os.close(container.lock_fd)
    hint = connection_hint(service, spec.env, ports) if announce else None
    if hint:
        say(f"connect: {hint}")
    return name


def require_env(requested, service, env):
    missing = [name for name in service.get("required_env", ()) if not env.get(name)]
    if missing:
        raise ServiceError(f"{requested} needs {', '.join(missing)}",
                           hint=f"set it: toolbox run -d -e {missing[0]}=... {requested}")


def connection_hint(service, env, ports):
    """The recipe's `connect` template filled in (fill_template)."""
    if not service or not service.get("connect") or not service.get("port"):
        return None
    return fill_template(service["connect"], service["port"], env, ports)


def fill_template(template, server_port, env, ports, bracket=True):
    """A server recipe's template (`connect`, `client_env`) filled in: {host} and {port} as the
    host reaches `server_port` (its published port, else the same on the host's network), and
    the service's variables ({POSTGRES_PASSWORD}). None when it names what is not there."""
    host, port = "127.0.0.1", server_port
    for published in ports:
        if published.container_port == server_port and published.protocol == "tcp":
            host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(published.host_ip, published.host_ip)
            host, port = (f"[{host}]" if ":" in host and bracket else host), published.host_port
    try:
        return template.format(host=host, port=port, **env)
    except (KeyError, IndexError, ValueError, AttributeError):
        return None  # a template naming what is not there: no hint, never an error


def published_ports(texts):
    """The -p values, each port checked free on the host now, before anything starts."""
    from toolbox.errors import UsageError
    from toolbox.runtime.forward import Forwarder, parse_port

    ports = []
    for text in texts:
        try:
            port = parse_port(text)
        except ValueError as err:
            raise UsageError(f"-p {text}: {err}") from None
        ports.append(port)
    Forwarder(ports).close()  # each one free now, or the error naming it
    return ports


def use_subordinate_ids(options, plan):
    """Run a service as Docker would, as the image's user (root when it names none), with the
    user's subordinate ids mapped: the official database images start as root, chown their data
    to a service user and switch to it. Without subordinate ids, it runs as you, and one line
    says so (postgres's image, for one, runs as any uid)."""
    if options.subids or options.user is not None:
        return
    from toolbox.errors import ToolboxError
    from toolbox.runtime.spec import user_name
    from toolbox.runtime.subids import plan_maps

    try:
        plan_maps(user_name(), 0, 0)
    except ToolboxError as err:
        say(f"note: the service runs as you, not as the image's user ({err.message})", hint=err.hint)
        return
    options.subids = True
    options.user = plan.get("user") or "0"


def generated_name(layout, requested):
    """IMAGE-xxxx: the image's or tool's last name and four random hex digits (docker picks two
    random words; a name that says what runs reads better in `toolbox ps`)."""
    base = requested.rpartition("/")[2].partition("@")[0].partition(":")[0]
    base = "".join(c if c.isalnum() or c in "_.-" else "-" for c in base).strip("-._") or "service"
    while True:
        name = f"{base[:100]}-{os.urandom(2).hex()}"
        if not os.path.exists(os.path.join(layout.containers_dir, name)):
            return name
