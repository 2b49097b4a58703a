"""What the hot tier (`toolbox run`, a shim) may import, judged from the module report the launch
path writes just before the runtime starts (TOOLBOX_REPORT_MODULES, toolbox/hot/launch.py).

Names are judged by top-level package: `typer.core` counts as `typer`, `json.decoder` as `json`.
A module the launch path adds is wrong when its top-level package is FORBIDDEN (each costs a
visible part of a ~20 ms launch: STYLE.md, MACHINE.md) or simply not LIGHT: a new import must be
added to LIGHT knowingly, never by accident.

Measured (Python 3.11, the suite's venv), what the launch path adds to what the interpreter loads
for `pass`: toolbox's own hot modules, _cffi_backend, fcntl and pwd; a shim also zlib (its tool
plan's file name is a crc32) and gc; `python -m toolbox` also runpy. The interpreter's own start
with site (no -S) already holds re, enum, pathlib, ipaddress and urllib.parse in an editable
install (setuptools' finder and _distutils_hack): that is the interpreter's cost, not toolbox's,
and the reason a shim starts with -IS.
"""

import subprocess

from tests.support.architecture import LAUNCH_LAYERS, layer_of

FORBIDDEN = frozenset({
    # The cold tier's dependencies.
    "typer", "click", "rich", "shellingham", "requests", "urllib3", "certifi", "charset_normalizer", "idna",
    "platformdirs", "tomli", "tomli_w", "cffi", "pycparser", "zstandard",
    # Standard modules the launch path does without (json, dataclasses and tomllib ~13-30 ms each,
    # hashlib ~3 ms).
    "tomllib", "json", "dataclasses", "hashlib", "tarfile", "gzip", "shutil", "tempfile", "subprocess",
    "logging", "pathlib", "typing", "threading", "concurrent", "socket", "ssl", "http", "email", "urllib",
    "datetime",
    "secrets", "random", "uuid", "base64", "argparse", "inspect", "ast", "dis", "traceback", "textwrap",
    "enum", "re", "importlib",
})

LIGHT = frozenset({
    # What the interpreter loads before any code runs (`python -IS -c pass`).
    "__main__", "builtins", "sys", "_frozen_importlib", "_frozen_importlib_external", "_imp", "_io", "io",
    "abc", "_abc", "codecs", "_codecs", "encodings", "_signal", "_thread", "_warnings", "_weakref", "marshal",
    "posix", "time", "zipimport",
    # Light standard modules, most of them built in.
    "os", "posixpath", "genericpath", "stat", "_stat", "_collections_abc", "errno", "fcntl", "pwd",
    "gc", "zlib",
    "runpy",  # `python -m toolbox` starts through it
    # toolbox itself, and the backend of its generated (out-of-line) cffi module.
    "toolbox", "_cffi_backend",
})

def top_level(name):
    return name.partition(".")[0]


def heavy_modules(loaded, baseline=()):
    """The modules in `loaded`, and not in `baseline`, that the launch path must not import."""
    added = set(loaded) - set(baseline)
    return sorted(name for name in added if top_level(name) in FORBIDDEN or top_level(name) not in LIGHT)


def cold_modules(loaded):
    """toolbox's modules in `loaded` that the launch path must not load: those of the cold tier's
    layers (cli, ops, oci, store, project: architecture.py), reached only when a plan is missing
    or stale."""
    return sorted(name for name in loaded
                  if top_level(name) == "toolbox" and layer_of(name) not in LAUNCH_LAYERS)


def interpreter_baseline(interpreter, env):
    """What `interpreter` (a command: the executable and its flags) loads to run `pass`."""
    listed = subprocess.run([*interpreter, "-c", "import sys; print(*sys.modules)"], env=env,
                            capture_output=True, text=True, check=True, timeout=60)
    return set(listed.stdout.split())


def read_report(path):
    """The names of the modules the launch path had loaded."""
    return set(read_loaders(path))


def read_loaders(path):
    """{module name: how its loader said it was loaded, or None}."""
    with open(path) as report:
        lines = report.read().splitlines()
    return {name: state or None for name, _, state in (line.partition("\t") for line in lines)}
