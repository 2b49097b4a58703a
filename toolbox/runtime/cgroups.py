"""Resource limits (--memory, --cpus, --pids-limit) through cgroup v2 delegation.

An unprivileged user can only limit processes inside a cgroup v2 subtree delegated to them
(what systemd's user@.service gives, or `systemd-run --user --scope`). On any other host a
requested limit is refused with the reason and the fix: a limit is never dropped silently.
Standard library only: this runs on the launch path when a limit is asked for.
"""

import os

from toolbox.errors import LimitError

CONTROLLER_OF = {"memory": "memory", "cpus": "cpu", "pids": "pids"}
ENABLE_HINT = (
    "limits need a delegated cgroup v2: a host booted with the unified hierarchy "
    "(systemd.unified_cgroup_hierarchy=1) and a systemd user session; then run toolbox inside "
    "`systemd-run --user --scope -p Delegate=yes toolbox run ...`"
)


def parse_memory(text: str, option: str = "--memory") -> int:
    """A size as Docker writes it (512m, 2g, 1gb, 65536): bytes."""
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    value = text.strip().lower()
    factor = 1
    if value.endswith(("kb", "mb", "gb", "tb")):  # before the one-letter suffixes: "1gb" is not "1g" bytes
        factor, value = units[value[-2]], value[:-2]
    elif value and value[-1] in units:
        factor, value = units[value[-1]], value[:-1]
    if not value.isdigit() or int(value) * factor < 4096:
        raise LimitError(f"invalid {option} {text!r}: use a size such as 512m or 2g (at least 4k)")
    return int(value) * factor


def parse_cpus(text: str) -> str:
    try:
        cpus = float(text)
    except ValueError:
        cpus = 0.0
    if not 0.01 <= cpus <= 4096:
        raise LimitError(f"invalid --cpus {text!r}: use a number of CPUs such as 1.5")
    period = 100_000
    return f"{int(cpus * period)} {period}"


def parse_pids(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise LimitError(f"invalid --pids-limit {text!r}: use a positive whole number")
    return int(text)


def own_cgroup_v2() -> tuple[tuple[str, str] | None, str | None]:
    """(mount point of the cgroup2 hierarchy, our cgroup path in it) or a reason why there is none."""
    mount = None
    with open("/proc/self/mountinfo") as file:
        for line in file:
            fields = line.split()
            separator = fields.index("-")
            if fields[separator + 1] == "cgroup2":
                mount = fields[4]
                break
    if mount is None:
        return None, "this host has no cgroup v2 hierarchy"
    with open("/proc/self/cgroup") as file:
        for line in file:
            if line.startswith("0::"):
                return (mount, line[3:].strip()), None
    return None, "this process is in no cgroup v2 group"


def delegation_problem(wanted: list[str] | dict[str, object]) -> str | None:
    """Why the `wanted` controllers cannot be used here, or None when they can."""
    found, reason = own_cgroup_v2()
    if found is None:
        return reason
    mount, path = found
    directory = os.path.join(mount, path.lstrip("/"))
    try:
        with open(os.path.join(mount, "cgroup.controllers")) as file:
            available = set(file.read().split())
    except OSError:
        available = set()
    missing = sorted(CONTROLLER_OF[w] for w in wanted if CONTROLLER_OF[w] not in available)
    if missing:
        hybrid = " (a hybrid host: the v1 hierarchies own them)" if mount != "/sys/fs/cgroup" else ""
        return (f"the cgroup v2 hierarchy at {mount} has no {', '.join(missing)} "
                f"controller{'s' if len(missing) > 1 else ''}{hybrid}")
    if not os.access(directory, os.W_OK) or not os.access(os.path.join(directory, "cgroup.procs"), os.W_OK):
        return f"the cgroup {path} is not delegated to this user (it is not writable)"
    return None


def enter_limited_cgroup(limits: dict[str, int | str]) -> None:
    """Create a child of our cgroup with `limits` ({"memory": bytes, "cpus": "quota period",
    "pids": n}) and move this process into it, before the namespaces are made."""
    problem = delegation_problem(limits)
    if problem:
        raise LimitError(
            f"cannot apply {', '.join('--' + ('pids-limit' if k == 'pids' else k) for k in sorted(limits))}: "
            f"{problem}", hint=ENABLE_HINT)
    (mount, path), _ = own_cgroup_v2()
    parent = os.path.join(mount, path.lstrip("/"))
    controllers = " ".join(f"+{CONTROLLER_OF[k]}" for k in sorted(limits))
    child = os.path.join(parent, f"toolbox-{os.getpid()}")
    try:
        os.mkdir(child)
        # cgroup v2's "no internal processes" rule: controllers are enabled for children only
        # while the parent holds no process itself, as in a scope made for this run.
        with open(os.path.join(parent, "cgroup.subtree_control"), "w") as file:
            file.write(controllers)
        files = {"memory": ("memory.max", str(limits.get("memory"))), "cpus": ("cpu.max", limits.get("cpus")),
                 "pids": ("pids.max", str(limits.get("pids")))}
        for key in limits:
            name, value = files[key]
            with open(os.path.join(child, name), "w") as file:
                file.write(value)
        with open(os.path.join(child, "cgroup.procs"), "w") as file:
            file.write(str(os.getpid()))
    except OSError as err:
        raise LimitError(f"cannot set up the limits in {child}: {err.strerror}", hint=ENABLE_HINT) from None
