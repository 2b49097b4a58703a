"""`toolbox exec`: a command in a running service (runtime/join.py joins its namespaces), with
the service's environment, working directory and user unless told otherwise. Like `toolbox run`,
reached from the entry point without the CLI: a `psql` in a database service starts as fast
as a tool. Standard library only.
"""

import os

from toolbox.errors import ImageFileError, ToolboxError, UsageError, report
from toolbox.layout import Layout

USAGE = "usage: toolbox exec [OPTIONS] NAME COMMAND [ARG...]"
HELP = USAGE + """

Run a command in a running service (toolbox run -d), in its namespaces: its root, its
processes, its network. Its stdin, stdout, stderr and exit status are the command's.

Options:
  -e, --env KEY[=VALUE]   set a variable (KEY alone passes the host's value); the service's
                          environment otherwise
  -w, --workdir DIR       working directory inside (default: the service's)
  -u, --user USER         who runs it: root, UID[:GID] or a name from the container's
                          /etc/passwd (default: the service's user)
  -i, -t                  accepted, for muscle memory: stdin and the terminal are always the command's
"""

_WITH_VALUE = {"-e": "env", "--env": "env", "-w": "workdir", "--workdir": "workdir", "-u": "user",
               "--user": "user"}


class ExecOptions:
    __slots__ = ("env", "workdir", "user", "name", "command")

    def __init__(self):
        self.env = []
        self.workdir = None
        self.user = None
        self.name = None
        self.command = []


def parse_args(argv):
    options = ExecOptions()
    args = list(argv)
    while args and args[0].startswith("-") and args[0] != "-":
        arg = args.pop(0)
        if arg == "--":
            break
        if arg in ("-h", "--help"):
            raise UsageError(None)
        name, has_value, value = arg.partition("=") if arg.startswith("--") else (arg, False, None)
        if name in _WITH_VALUE:
            if not has_value:
                if not args:
                    raise UsageError(f"option {name} needs a value")
                value = args.pop(0)
            if _WITH_VALUE[name] == "env":
                options.env.append(value)
            else:
                setattr(options, _WITH_VALUE[name], value)
        elif name in ("--interactive", "--tty") or set(arg[1:]) <= set("it"):
            continue
        elif set(arg[1:]) <= set("dit") or name == "--detach":
            raise UsageError("-d: a command in a service runs in the foreground; start another service "
                             "instead")
        else:
            raise UsageError(f"unknown option {arg}")
    if len(args) < 2:
        raise UsageError("give the service's name and a command")
    options.name, options.command = args[0], args[1:]
    return options


def main(argv, layout=None):
    try:
        options = parse_args(argv)
        return run_in_service(layout or Layout.from_env(), options)
    except UsageError as err:
        if err.message is None:
            print(HELP)
            return 0
        err.hint = err.hint or USAGE
        return report(err)
    except KeyboardInterrupt:
        from toolbox.runtime.signals import die_of_interrupt

        return die_of_interrupt()
    except Exception as err:  # noqa: BLE001 - one line and an exit status (report)
        return report(err, layout)


def run_in_service(layout, options):
    from toolbox.runtime import containers, services
    from toolbox.runtime.join import join_and_run, open_process

    path = os.path.join(layout.containers_dir, containers.check_name(options.name))
    settings = services.read_service(path) if containers.read_record(path) is not None else None
    if settings is None:
        raise ToolboxError(f"no service named {options.name!r}",
                           hint="`toolbox ps` lists the running ones; `toolbox run -d IMAGE` starts one")
    state = services.read_state(path)
    process = None
    if state.get("status") == services.RUNNING and containers.is_running(path):
        process = open_process(int(state["pid"]), state.get("pid_start", ""))
    if process is None:
        raise ToolboxError(f"{options.name} is not running",
                           hint=f"start it first: toolbox start {options.name}")
    spec = settings["spec"]
    env = dict(spec["env"])
    for entry in options.env:
        key, has_value, value = entry.partition("=")
        if has_value:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return join_and_run(process, options.command, env, options.workdir or spec["cwd"], _who(options.user))


def _who(requested):
    """What tells the ids for -u once the container's namespaces are joined: (uid, gid) looked up
    in the container's own /etc; None without -u (the service's own ids). Everything it needs is
    imported here: the host's files are out of reach after the join."""
    if requested is None:
        return lambda: None
    from toolbox.hot.options import account_entry, user_inside
    from toolbox.runtime.imagefs import ACCOUNTS_LIMIT, FileTooBig, NotRegularFile, read_regular

    def lookup(database, key):
        try:
            return account_entry(read_regular(f"/etc/{database}", ACCOUNTS_LIMIT), database, key)
        except (NotRegularFile, FileTooBig, OSError) as err:
            raise ImageFileError(f"/etc/{database} of the service cannot be read: {err}") from None

    def who():
        user = user_inside(requested, lookup)
        return user.uid, user.gid

    return who
