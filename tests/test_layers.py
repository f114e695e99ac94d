"""The package is a house of floors (docs/architecture.md): each module imports only from its
own floor or those below, there is no import circle, and no vaelab import hides inside a
function. The graph is read from the source with ``ast``, so the structure cannot decay
without this test failing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vaelab

PACKAGE = Path(vaelab.__file__).parent

# the floor of every top-level module or folder of src/vaelab: a module may import from its
# own floor and below, never above (docs/architecture.md says what each holds)
FLOORS = {
    "errors": 1,
    "files": 1,
    "device": 1,
    "ranks": 1,
    "progress": 1,
    "config": 1,
    "data": 2,
    "core": 3,
    "objectives": 4,
    "build": 5,
    "checkpoint": 5,
    "training": 6,
    "evaluate": 7,
    "plots": 8,
    "report": 8,
    "encode": 8,
    "explore": 8,
    "runs": 9,
    "cli": 10,
    "__main__": 11,
    "": 11,  # vaelab/__init__.py, the face: VAE, Config, train, load ...
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    return FLOORS[top]


def resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The vaelab modules an import statement in ``module`` loads (a name imported from a
    package counts as its submodule when there is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "vaelab"]
    if node.level:
        is_package = MODULES[module].name == "__init__.py"
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "vaelab":
        return []
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in MODULES else target)
    return found


def imports(module: str) -> tuple[set[str], list[str]]:
    """``(modules imported at module level, vaelab imports found inside functions)``."""
    tree = ast.parse(MODULES[module].read_text())
    top, hidden = set(), []
    for node in tree.body:  # module level, including `if` blocks at module level
        for inner in ast.walk(node):
            if isinstance(inner, (ast.Import, ast.ImportFrom)):
                inside = _inside_function(tree, inner)
                for target in resolve(module, inner):
                    (
                        hidden.append(f"{target} (line {inner.lineno})")
                        if inside
                        else top.add(target)
                    )
    return top, hidden


def _inside_function(tree: ast.Module, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if any(inner is target for inner in ast.walk(node)):
                return True
    return False


GRAPH = {m: imports(m)[0] for m in MODULES}


def test_every_module_has_a_floor():
    for module in MODULES:
        floor(module)  # a KeyError names a new top-level module missing from FLOORS


def test_no_module_imports_a_floor_above_its_own():
    above = [
        f"{m} (floor {floor(m)}) imports {t} (floor {floor(t)})"
        for m in sorted(GRAPH)
        for t in sorted(GRAPH[m])
        if floor(t) > floor(m)
    ]
    assert not above, "\n".join(above)


def test_no_vaelab_import_hides_inside_a_function():
    hidden = [f"{m}: {h}" for m in sorted(MODULES) for h in imports(m)[1]]
    assert not hidden, "imports inside functions:\n" + "\n".join(hidden)


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (circle := visit(target, [*path, target])):
                return circle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module, [module])):
            return circle
    return None


def test_the_import_graph_has_no_circle():
    circle = find_circle(GRAPH)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_checks_catch_a_circle_an_upward_import_and_a_hidden_import():
    """The checks themselves, on a made-up graph and source."""
    graph = {"vaelab.core.a": {"vaelab.core.b"}, "vaelab.core.b": {"vaelab.core.c"}}
    assert find_circle(graph) is None
    graph["vaelab.core.c"] = {"vaelab.core.a"}
    assert find_circle(graph) == [
        "vaelab.core.a",
        "vaelab.core.b",
        "vaelab.core.c",
        "vaelab.core.a",
    ]
    assert floor("vaelab.cli.main") > floor("vaelab.core.model")
    tree = ast.parse("import torch\n\ndef f():\n    from vaelab import core\n")
    assert not _inside_function(tree, tree.body[0])
    assert _inside_function(tree, tree.body[1].body[0])
