"""`toolbox run`: the launch path. Light by design — standard library and the generated cffi
module only, no typer, requests, json, dataclasses or platformdirs — because it runs before every
tool. It parses the options (runargs.py), reads the image's run plan (made by the cold tier on
first use), builds a RunSpec (runspec.py) and hands this process over to the runtime, which
becomes the tool.

Exit status: the tool's own; 125 when toolbox fails; 126 when the command cannot be executed;
127 when it is not found in the image.
"""

import os
import sys

from toolbox.errors import EXIT_TOOLBOX_FAILED, RuntimeStepError, UsageError, report, say
from toolbox.hot.plans import read_current_plan
from toolbox.hot.runargs import HELP, USAGE, parse_args
from toolbox.hot.runspec import make_spec
from toolbox.layout import Layout
from toolbox.runtime.container import exec_container
from toolbox.runtime.inuse import claim as claim_layers

# Set by tests to check what the launch path imported, just before it execs.
MODULES_REPORT_ENV = "TOOLBOX_REPORT_MODULES"


def tool_settings(layout, text, frozen, pull="missing", platform=None):
    """What the recipe and the pins say of `toolbox run TEXT`: from the tool plan when it is
    current, else from the cold tier (which writes the plan). In a terminal, the cold tier may
    ask whether to trust a project's recipes."""
    from toolbox.hot.plans import pins_file, read_tool_plan

    settings = read_tool_plan(layout, pins_file(layout, os.getcwd()), text)
    if settings is None:
        from toolbox.ops.prepare import run_settings
        from toolbox.prompt import confirm_on_terminal, frozen_requested, tell, warn

        settings = run_settings(text, frozen_requested(os.environ, frozen), pull=pull, platform=platform,
                                confirm=confirm_on_terminal, warn=warn, tell=tell)
    return settings


def apply_tool(options, settings):
    """`toolbox run TOOL`: the image and the recipe's command, environment, mounts, network."""
    options.image = settings["image"]
    options.tool_command = settings["command"]
    options.tool_default_command = settings.get("default_command")  # absent from plans of older toolboxes
    passed = [name for name in sorted(os.environ) if any(_matches(name, p) for p in settings["pass_env"])]
    options.env = settings["env"] + passed + options.env  # -e wins over the recipe
    options.tool_mounts = settings["mounts"]
    options.network = options.network or settings["network"]
    options.tool_service = settings.get("service")  # absent from plans of older toolboxes


def _matches(name, pattern):
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def is_tool(text):
    """A bare name, maybe with @VERSION: no registry, path, tag or digest."""
    return "/" not in text and ":" not in text


def load_plan(layout, options):
    """The image's run plan: read from the cache, or made by the cold tier when missing or stale,
    or when --pull or --platform ask for more than the cache can say."""
    if options.pull == "missing" and options.platform is None:
        plan = read_current_plan(layout.run_plan_path(options.image))
        if plan is not None:
            return plan
    from toolbox.ops.prepare import ensure_plan  # the cold tier, once per image and spelling

    return ensure_plan(layout, options.image, options.pull, options.platform)


def _report_modules():
    """One line a module: its name, and how it was loaded when the loader said (the launch
    bundle does, ops/bundle.py)."""
    path = os.environ.get(MODULES_REPORT_ENV)
    if path:
        lines = []
        for name, module in sorted(sys.modules.items()):
            state = getattr(getattr(module, "__spec__", None), "loader_state", None)
            lines.append(f"{name}\t{state}" if isinstance(state, str) else name)
        with open(path, "w") as file:
            file.write("\n".join(lines))


def main(argv, layout=None, settings=None):
    """`settings`: a tool's, already looked up (shims)."""
    try:
        options = parse_args(argv)
        layout = layout or Layout.from_env()
        requested = options.image
        if settings is not None or is_tool(options.image):
            apply_tool(options, settings or tool_settings(layout, options.image, options.frozen, options.pull,
                                                          options.platform))
        plan = load_plan(layout, options)
        if options.detach:
            from toolbox.hot.detach import start_service

            print(start_service(layout, options, plan, requested), flush=True)
            return 0
        container = None
        if options.name is not None:
            from toolbox.hot.options import claim_container

            container = claim_container(layout, options, plan)
        notes = []
        spec = make_spec(layout, plan, options, container, notes)
        for note in notes:
            say(note)
        claim_layers(layout, spec.layers)  # held by the tool until it exits
        if options.limits:
            from toolbox.hot.options import apply_limits

            apply_limits(options.limits)
        _report_modules()
        exec_container(spec)
    except UsageError as err:
        if err.message is None:
            print(HELP)
            return 0
        err.hint = err.hint or USAGE
        return report(err)
    except RuntimeStepError as err:
        err.hint = _runtime_hint(err)
        return report(err)
    except KeyboardInterrupt:
        from toolbox.runtime.signals import die_of_interrupt

        return die_of_interrupt()
    except Exception as err:  # noqa: BLE001 — whatever it is, one line and an exit status (report)
        return report(err, layout)
    return EXIT_TOOLBOX_FAILED  # not reached: exec_container does not return


def _runtime_hint(err):
    try:
        from toolbox.runtime.host import hint_for_run_failure  # a failure path: it may probe
    except ImportError:
        return None  # failed after pivot_root: the host's files, toolbox's among them, are gone
    return hint_for_run_failure(err.step, err.errno)
