"""toolbox's package structure, as the tests hold the code to it (README, "Architecture").

Each module belongs to a layer: a subpackage of toolbox, or "leaves" (the modules at the top of
the package, standard library only), or "entry" (the command's entry points). A layer may import
itself and the layers ALLOWED names for it, nothing else, lazily or not: dependencies point one
way, from the edges (cli, the shim) to the leaves. The hot path (hot/ and runtime/) reaches the
cold tier through exactly one edge, LAZY_EDGE, when a plan is missing or stale.

Imports are read from the source with ast, so this needs no user namespaces and sees the imports
inside functions too.
"""

import ast
import collections

from tests.support.installation import REPO

PACKAGE = REPO / "toolbox"

ALLOWED = {
    "leaves": set(),
    "runtime": {"leaves"},
    "hot": {"leaves", "runtime"},
    "oci": {"leaves"},
    "store": {"leaves", "oci", "runtime"},
    "project": {"leaves", "oci", "hot"},
    "ops": {"leaves", "runtime", "hot", "oci", "store", "project"},
    "cli": {"leaves", "runtime", "hot", "oci", "store", "project", "ops"},
    "entry": {"leaves", "hot", "cli"},
}
# The layers a launch (`toolbox run`, a shim) may load while its plans are current.
LAUNCH_LAYERS = frozenset({"leaves", "entry", "hot", "runtime"})
# The one way from the hot path into the cold tier: on a plan miss, the launch prepares one.
LAZY_EDGE = ("toolbox.hot.launch", "toolbox.ops.prepare")
ENTRY_MODULES = frozenset({"toolbox.entry", "toolbox.__main__"})


def layer_of(module):
    """The layer of a module name (toolbox.ops.pull → "ops", toolbox.errors → "leaves"); None
    for a name outside toolbox."""
    parts = module.split(".")
    if parts[0] != "toolbox":
        return None
    if module in ENTRY_MODULES:
        return "entry"
    if len(parts) <= 2 and not (PACKAGE / parts[-1]).is_dir():
        return "leaves"
    return parts[1]


def modules():
    """{module name: source path} of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


Import = collections.namedtuple("Import", "source target line lazy")


def imports_of(module, path, known):
    """The toolbox modules `module` imports, at the top or inside functions (lazy), each resolved
    to a module of `known` (`from toolbox.store import unpack` imports toolbox.store.unpack)."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = set(map(id, tree.body))
    for_annotations = {id(inner) for node in ast.walk(tree) if _is_type_checking_block(node)
                       for inner in ast.walk(node)}
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if id(node) in for_annotations:
            continue  # `if TYPE_CHECKING:` never runs: names for annotations, not a dependency
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name not in known and "." in name:
                name = name.rpartition(".")[0]
            if name in known and name != module:
                yield Import(module, name, node.lineno, id(node) not in top_level)


def _is_type_checking_block(node):
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def all_imports():
    known = modules()
    return [found for module, path in known.items() for found in imports_of(module, path, known)]


def violations(found):
    """The imports that break the layer rule, as readable lines."""
    bad = []
    for edge in found:
        source, target = layer_of(edge.source), layer_of(edge.target)
        if source == target or target in ALLOWED[source]:
            continue
        if (edge.source, edge.target) == LAZY_EDGE and edge.lazy:
            continue
        bad.append(f"{edge.source}:{edge.line} imports {edge.target} ({source} → {target})")
    return bad


def cycles(found):
    """Groups of modules that import each other, directly or not (the lazy edge aside: it is
    the hot path's way back into the cold tier, on purpose)."""
    graph = collections.defaultdict(set)
    for edge in found:
        if (edge.source, edge.target) != LAZY_EDGE:
            graph[edge.source].add(edge.target)
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components, iteratively
        work = [(node, iter(sorted(graph[node])))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[current] = min(low[current], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[current])
                if low[current] == index[current]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == current:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    for node in sorted(set(graph) | {edge.target for edge in found}):
        if node not in index:
            visit(node)
    return groups


def module_lengths():
    return {module: len(path.read_text().splitlines()) for module, path in modules().items()}
