"""The launch bundle (toolbox/ops/bundle.py, shims/preload.in): the launch path's modules in the
order Python runs them, used only while every source is as it was compiled."""

import os
import shutil
import subprocess
import sys

import _cffi_backend
import pytest

from toolbox.ops import bundle
from toolbox.ops.shimgen import render

from tests.support.architecture import LAUNCH_LAYERS, layer_of
from tests.support.installation import REPO

CFFI_DIR = os.path.dirname(_cffi_backend.__file__)


def run_python(base, code):
    """`code` in a fresh interpreter that imports toolbox from `base` (as a shim does: -IS, the
    package's directory and cffi's named)."""
    script = f"import sys; sys.path[:0] = [{str(base)!r}, {CFFI_DIR!r}]\n{code}"
    return subprocess.run([sys.executable, "-IS", "-c", script], capture_output=True, text=True,
                          check=True).stdout


def python_imports(roots, base=REPO):
    """The toolbox modules a fresh interpreter has loaded after importing `roots`, in the order
    their import finished (sys.modules keeps that order)."""
    listing = "print(*[name for name in sys.modules if name.split('.')[0] == 'toolbox'])"
    return run_python(base, f"for name in {list(roots)!r}: __import__(name)\n{listing}").split()


def test_the_bundle_runs_the_launch_path_in_the_order_python_imports_it():
    names = [name for name, _ in bundle.launch_modules()]
    assert names == python_imports(bundle.LAUNCH_ROOTS)
    assert {"toolbox.hot.launch", "toolbox.runtime.container", "toolbox.runtime._sys",
            "toolbox.errors"} <= set(names)
    assert {layer_of(name) for name in names} <= LAUNCH_LAYERS, names


def test_imports_inside_functions_and_for_type_checkers_are_left_out(tmp_path):
    package = tmp_path / "toolbox"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toolbox import cold\n"
        "try:\n    from toolbox import b\nexcept ImportError:\n    pass\n"
        "def later():\n    from toolbox import cold\n"
        "class C:\n    from toolbox.d import thing\n")
    (package / "b.py").write_text("from toolbox import c\n")
    (package / "c.py").write_text("")
    (package / "d.py").write_text("thing = 1\n")
    (package / "cold.py").write_text("raise SystemExit('a cold module ran')\n")
    listed = run_python(REPO, "import toolbox.ops.bundle as bundle, toolbox\n"
                              f"toolbox.__file__ = {str(package / '__init__.py')!r}\n"
                              "print(*[name for name, _ in bundle.launch_modules(('toolbox.a',))])").split()
    assert listed == ["toolbox", "toolbox.c", "toolbox.b", "toolbox.d", "toolbox.a"]
    assert python_imports(["toolbox.a"], base=tmp_path) == listed


def test_docstrings_are_left_out_and_asserts_kept():
    import ast

    source = '"""module"""\nclass C:\n    """class"""\ndef f(x):\n    """function"""\n    assert x, "kept"\n'
    namespace = {}
    exec(compile(bundle._without_docstrings(ast.parse(source)), "<test>", "exec"), namespace)
    assert [namespace.get("__doc__"), namespace["C"].__doc__, namespace["f"].__doc__] == [None] * 3
    with pytest.raises(AssertionError, match="kept"):
        namespace["f"](0)


@pytest.fixture
def package_copy(tmp_path):
    """A copy of toolbox's package, its own bundle beside it, and a script that loads the
    launch path as a shim does and prints how toolbox.hot.launch was loaded."""
    shutil.copytree(REPO / "toolbox", tmp_path / "toolbox", ignore=shutil.ignore_patterns("__pycache__"))
    path = run_python(tmp_path, "from toolbox.ops import bundle; print(bundle.bundle_path())").strip()
    script = tmp_path / "loads"
    script.write_text(f"import sys\nsys.path[:0] = [{str(tmp_path)!r}, {CFFI_DIR!r}]\n"
                      + render("preload.in", STATE=repr(bundle.LOADER_STATE))
                      + f"_preload({path!r})\nimport toolbox.hot.shim, toolbox.hot.launch as launch\n"
                      "print(launch.__spec__.loader_state, launch.__file__, launch.__name__ in sys.modules,\n"
                      "      sep='\\t')\n")

    class Copy:
        root = tmp_path
        bundle_path = path

        @staticmethod
        def refresh():
            written = run_python(tmp_path, "from toolbox.ops import bundle; print(bundle.refresh())")
            return written.strip() == "True"

        @staticmethod
        def loaded_by():
            done = subprocess.run([sys.executable, "-IS", str(script)], capture_output=True, text=True,
                                  check=True)
            state, file, registered = done.stdout.rstrip("\n").split("\t")
            assert file == str(tmp_path / "toolbox" / "hot" / "launch.py") and registered == "True"
            return state

    return Copy


def test_a_shim_uses_the_bundle_only_while_every_source_is_unchanged(package_copy):
    assert package_copy.loaded_by() == "None"  # no bundle yet: plain imports
    assert package_copy.refresh()
    assert package_copy.loaded_by() == bundle.LOADER_STATE
    source = package_copy.root / "toolbox" / "runtime" / "mounts.py"
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert package_copy.loaded_by() == "None"
    assert not bundle.is_current(package_copy.bundle_path)
    assert package_copy.refresh()  # what a plan miss does (ops/prepare.py)
    assert package_copy.loaded_by() == bundle.LOADER_STATE
    assert bundle.is_current(package_copy.bundle_path)


def test_a_damaged_or_foreign_bundle_is_ignored(package_copy):
    assert package_copy.refresh()
    with open(package_copy.bundle_path, "rb") as file:
        data = file.read()
    for damaged in (data[:len(data) // 2], b"\0\0\r\n" + data[4:], b""):
        with open(package_copy.bundle_path, "wb") as file:
            file.write(damaged)
        assert package_copy.loaded_by() == "None"
        assert not bundle.is_current(package_copy.bundle_path)
    assert package_copy.refresh()


@pytest.mark.not_as_root
def test_without_a_writable_package_there_is_no_bundle_and_no_error(package_copy):
    """As in a system-wide installation: the package and its __pycache__ are someone else's."""
    package = package_copy.root / "toolbox"
    read_only = [package, package / "__pycache__"]
    for directory in read_only:
        directory.chmod(0o555)
    try:
        assert not package_copy.refresh()
        assert package_copy.loaded_by() == "None"
    finally:
        for directory in read_only:
            directory.chmod(0o755)
