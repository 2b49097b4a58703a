"""Every public function and method of the domain and the runtime (oci/, store/, project/,
runtime/) says what it takes and gives (read with ast, so nothing is imported)."""

import ast

from tests.support.architecture import PACKAGE

ANNOTATED = ("oci", "store", "project", "runtime")
GENERATED = frozenset({"_sys.py"})  # by runtime/_sys_build.py


def _is_public(name):
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def _public_functions(tree):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_public(node.name):
            yield node.name, node, False
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_public(member.name):
                    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod"
                                    for d in member.decorator_list)
                    yield f"{node.name}.{member.name}", member, not is_static


def _missing_annotations(function, is_method):
    args = function.args
    positional = args.posonlyargs + args.args
    if is_method:
        positional = positional[1:]  # self or cls
    missing = [arg.arg for arg in positional + args.kwonlyargs if arg.annotation is None]
    missing += [f"*{arg.arg}" for arg in (args.vararg, args.kwarg)
                if arg is not None and arg.annotation is None]
    if function.returns is None:
        missing.append("return")
    return missing


def test_every_public_function_is_annotated():
    unannotated = []
    for package in ANNOTATED:
        for path in sorted((PACKAGE / package).glob("*.py")):
            if path.name in GENERATED:
                continue
            tree = ast.parse(path.read_text(), str(path))
            for name, function, is_method in _public_functions(tree):
                missing = _missing_annotations(function, is_method)
                if missing:
                    unannotated.append(f"{package}/{path.name}: {name} ({', '.join(missing)})")
    assert unannotated == []


def test_a_function_without_annotations_is_found():
    tree = ast.parse("def lock(pins, frozen=False):\n    pass\n"
                     "class Store:\n    def get(self, ref: str) -> str:\n        pass\n")
    found = {name: _missing_annotations(function, is_method)
             for name, function, is_method in _public_functions(tree)}
    assert found == {"lock": ["pins", "frozen", "return"], "Store.get": []}
