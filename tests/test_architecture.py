"""The package's import graph: no circles, and imports only run down the layers (ARCHITECTURE.md).

Every import counts, at module level or inside a function: a function-level import is still a
dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Lowest first. A module may import its own layer and the layers below; the vocabulary is the language
# both sides of the spec boundary speak, importable from anywhere, and imports only itself.
LAYERS = ("vocabulary", "state", "engine", "adapters", "cli")
VOCABULARY = {"beamray.exceptions", "beamray.specs", "beamray.context", "beamray.env", "beamray.drop_in",
              "beamray.gpus", "beamray.adapters.types", "beamray.adapters.parsing"}
STATE = {"beamray.config", "beamray.locations", "beamray.head", "beamray.cluster", "beamray.store",
         "beamray.registry", "beamray.secrets", "beamray.storage", "beamray.volumes", "beamray.ray_private",
         "beamray.private_files"}
ADAPTERS = {"beamray", "beamray.experimental"}


def layer(module: str) -> str:
    if module in VOCABULARY:
        return "vocabulary"
    if module in STATE:
        return "state"
    if module.startswith("beamray.cli"):
        return "cli"
    if module in ADAPTERS or module.startswith("beamray.adapters"):
        return "adapters"
    return "engine"  # runtime/, serve_bridge/, tasks/, deploy, callbacks, k8s, remote


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((REPO / "beamray").rglob("*.py")) + sorted((REPO / "cli").rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[0] == "cli":
            parts = ["beamray", *parts]  # cli/ installs as beamray.cli
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the beamray modules it imports (``from pkg import name`` counts ``pkg.name`` when a module)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        graph[name] = {target for target in targets if target in known and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if module == "beamray" and target.startswith("beamray.") and layer(target) != "cli":
                continue  # the package's __init__ re-exports Beam's names from every layer below the CLI
            if layer(module) == "vocabulary" and layer(target) != "vocabulary":
                found.append(f"{module} ({layer(module)}) → {target} ({layer(target)})")
            elif LAYERS.index(layer(target)) > LAYERS.index(layer(module)):
                found.append(f"{module} ({layer(module)}) → {target} ({layer(target)})")
    return found


def test_the_graph_reads_every_module_and_its_imports() -> None:
    graph = import_graph()
    assert "beamray.runtime.container" in graph and "beamray.cli.main" in graph
    assert "beamray.runtime.container" in graph["beamray.serve_bridge.replica"]


def test_every_module_imports() -> None:
    """A moved name that a module still imports fails here, not in a user's first command."""
    import importlib

    for name in sorted(modules()):
        if name != "beamray.cli.__main__":  # running it is the CLI itself
            importlib.import_module(name)


def test_the_package_has_no_import_circles() -> None:
    assert cycles(import_graph()) == []


def test_imports_only_run_down_the_layers_and_nothing_imports_the_cli() -> None:
    assert upward_imports(import_graph()) == []
