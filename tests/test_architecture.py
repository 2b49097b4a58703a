"""The package's structure holds (tests/support/architecture.py, README "Architecture"): imports
point one way between the layers, no modules import each other round in a circle, the launch
path's layers load nothing of the cold tier, and no module grows past what a reader takes in."""

import subprocess
import sys

from tests.support.architecture import (
    ALLOWED,
    LAUNCH_LAYERS,
    LAZY_EDGE,
    Import,
    all_imports,
    cycles,
    layer_of,
    module_lengths,
    modules,
    violations,
)

MAX_MODULE_LINES = 450
# Data and generated code: no reader is meant to take them in.
LONG_ON_PURPOSE = frozenset({"toolbox.runtime._sys"})


def test_every_module_has_a_layer():
    assert {layer_of(module) for module in modules()} <= set(ALLOWED)
    assert layer_of("toolbox.errors") == "leaves" and layer_of("toolbox.hot.launch") == "hot"
    assert layer_of("toolbox.entry") == "entry" and layer_of("toolbox.ops") == "ops"


def test_imports_point_one_way():
    assert violations(all_imports()) == []


def test_the_rule_is_checked_on_lazy_imports_too():
    upward = Import("toolbox.runtime.rootfs", "toolbox.store.unpack", 1, True)
    back = Import("toolbox.hot.launch", "toolbox.ops.tools", 2, True)
    assert len(violations([upward, back])) == 2
    assert violations([Import(*LAZY_EDGE, 3, True)]) == []
    # at the top, it would load the cold tier every launch
    assert len(violations([Import(*LAZY_EDGE, 3, False)])) == 1


def test_no_import_cycles():
    assert cycles(all_imports()) == []
    circle = [Import("toolbox.cli.app", "toolbox.cli.tools", 1, False),
              Import("toolbox.cli.tools", "toolbox.cli.app", 1, True)]
    assert cycles(circle) == [["toolbox.cli.app", "toolbox.cli.tools"]]


def test_the_launch_layers_reach_the_cold_tier_only_through_the_lazy_edge():
    cold = [edge for edge in all_imports()
            if layer_of(edge.source) in {"hot", "runtime"} and layer_of(edge.target) not in LAUNCH_LAYERS]
    assert {(edge.source, edge.target) for edge in cold} == {LAZY_EDGE}
    assert all(edge.lazy for edge in cold)


def test_the_cli_framework_stays_in_the_cli():
    """Use cases never import typer (STYLE.md): they are called from the CLI and from the shim's fallback."""
    outside = []
    for module, path in modules().items():
        if layer_of(module) == "cli":
            continue
        text = path.read_text()
        outside += [module for word in ("import typer", "from typer", "import click", "from click",
                                        "import rich") if word in text]
    assert outside == []


def test_every_subpackage_is_installed():
    """pyproject.toml lists the packages setuptools installs: one left out installs a toolbox
    that cannot import it (the checkout, where the suite runs, would not notice)."""
    import tomllib

    from tests.support.architecture import PACKAGE, REPO

    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    subpackages = {f"toolbox.{path.parent.name}" for path in PACKAGE.glob("*/__init__.py")}
    assert subpackages <= set(listed)
    assert {"toolbox", "toolbox.recipes", "toolbox.shims"} <= set(listed)


def test_no_module_is_too_long():
    long = {module: lines for module, lines in module_lengths().items()
            if lines > MAX_MODULE_LINES and module not in LONG_ON_PURPOSE}
    assert long == {}


def test_importing_every_module_works_without_a_cycle_at_import_time():
    """Each module imported first, in a fresh interpreter: an import cycle that the AST reading
    misses (a name imported from a half-initialised module) fails here."""
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    names = sorted(name for name in modules() if not name.endswith("__main__"))
    for name in names:
        done = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{name}: {done.stderr[-1500:]}"
