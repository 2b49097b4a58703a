"""The launch bundle: the compiled code of every module a shim or `toolbox run` loads before the
tool runs, in one file that the shim reads and runs in order (shims/preload.in) instead of
importing ~20 modules one by one. Python's import system costs ~50 us a module on top of running
it (finding the file, reading and checking its .pyc, the module's spec): the bundle gives the
launch path its layout in subpackages for ~1 ms less than plain imports.

It lives beside the package (`toolbox/__pycache__/launch.<python>.bundle`), as the .pyc files
do, and is trusted as they are: whoever can write it can write the sources. Each entry carries
its source file's mtime and size; the shim uses the bundle only when every one still matches
and the interpreter's bytecode version is the one it was compiled for, and imports normally
otherwise. The cold tier rewrites a stale bundle on a plan miss (ops/prepare.py) and
scripts/install writes it; where the package directory is not writable there is no bundle.

Docstrings are left out of the compiled code (as `python -OO` does, but asserts stay): the
launch path never reads them, and they are a fifth of what the shim would unmarshal."""

from __future__ import annotations

import ast
import marshal
import os
import sys
from importlib.util import MAGIC_NUMBER

import toolbox

# What a shim and `toolbox run` import, whatever the options; each brings the modules it imports
# at module level. Modules imported only on some paths (hot/options.py, runtime/fuse.py) are left
# to the import system.
LAUNCH_ROOTS = ("toolbox.entry", "toolbox.hot.shim", "toolbox.hot.launch", "toolbox.hot.argpaths")

# Set on each module the bundle ran (ModuleSpec.loader_state), for the tests.
LOADER_STATE = "toolbox launch bundle"


def bundle_path() -> str:
    package = os.path.dirname(os.path.abspath(toolbox.__file__))
    return os.path.join(package, "__pycache__", f"launch.{sys.implementation.cache_tag}.bundle")


def refresh() -> bool:
    """Write the bundle unless it is current. Best effort: an unwritable package directory (a
    system-wide install) or a full disk leaves the launch path on plain imports. Returns whether
    a current bundle is there."""
    path = bundle_path()
    if is_current(path):
        return True
    try:
        write(path)
    except (OSError, SyntaxError, UnicodeDecodeError):
        return False
    return True


def is_current(path: str) -> bool:
    """The shim's own test (shims/preload.in): same bytecode version, every source unchanged."""
    try:
        with open(path, "rb") as file:
            data = file.read()
        if data[:len(MAGIC_NUMBER)] != MAGIC_NUMBER:
            return False
        entries = marshal.loads(memoryview(data)[len(MAGIC_NUMBER):])
        return all(_stamp(source) == (mtime_ns, size) for _, source, mtime_ns, size, _ in entries)
    except (OSError, EOFError, ValueError, TypeError):
        return False


def write(path: str) -> None:
    from toolbox.fsutil import atomic_write

    entries = []
    for name, source in launch_modules():
        stamp = _stamp(source)
        with open(source, "rb") as file:
            text = file.read()
        code = compile(_without_docstrings(ast.parse(text, source)), source, "exec", dont_inherit=True)
        if _stamp(source) != stamp:
            return  # changed while read: the next plan miss tries again
        entries.append((name, source, *stamp, code))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, MAGIC_NUMBER + marshal.dumps(entries))


def launch_modules(roots: tuple[str, ...] = LAUNCH_ROOTS) -> list[tuple[str, str]]:
    """(module name, source file) of `roots` and what they import at module level, in the order
    Python would run them: a package before its modules, a module's imports before it."""
    base = os.path.dirname(os.path.dirname(os.path.abspath(toolbox.__file__)))
    ordered, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        parent = name.rpartition(".")[0]
        if parent:
            visit(parent)
        source = _source_file(base, name)
        with open(source, "rb") as file:
            tree = ast.parse(file.read(), source)
        for imported in _imports_when_run(tree.body):
            for candidate in imported:
                if _source_file(base, candidate, must_exist=False):
                    visit(candidate)
        ordered.append((name, source))

    for root in roots:
        visit(root)
    return ordered


def _source_file(base, name, must_exist=True):
    path = os.path.join(base, *name.split("."))
    for source in (os.path.join(path, "__init__.py"), path + ".py"):
        if os.path.isfile(source):
            return source
    if must_exist:
        raise FileNotFoundError(f"no source for {name} under {base}")
    return None


def _imports_when_run(statements):
    """For each import statement that runs when the module does (not in a function, not under
    `if TYPE_CHECKING:`), the toolbox modules it may name: `from a.b import c` names a.b and,
    if it is a module, a.b.c."""
    for node in statements:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "toolbox":
                    yield [alias.name]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.split(".")[0] == "toolbox":
                yield [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _imports_when_run(node.body)
            yield from _imports_when_run(node.orelse)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _imports_when_run(getattr(node, field, []))


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
            or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _without_docstrings(tree):
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            body[0].value.value = None  # a bare None: compiled to nothing, and no __doc__
    return tree


def _stamp(source):
    st = os.stat(source)
    return st.st_mtime_ns, st.st_size
