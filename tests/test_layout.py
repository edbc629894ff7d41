"""The package's layout holds: the engine never needs Datasette or click, nothing imports in a circle, a module's
``_private`` names stay in it, and docs/contributing.md's module map names every module.

Read from the source with ``ast``, so that an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "datasette_glyph"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
ENGINE = {name: path for name, path in MODULES.items() if name.startswith("datasette_glyph.engine")}


def imports(name: str):
    """(line, imported module, imported names) for every import statement of a module, relative ones resolved."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield node.lineno, module, [alias.name for alias in node.names]


def package_edges(name: str):
    """The package's modules that ``name`` imports: a ``from X import y`` names X, and X.y when y is a module."""
    for _, module, names in imports(name):
        if not module.startswith("datasette_glyph"):
            continue
        found = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
        if module in MODULES and (len(found) < len(names) or not names):
            found.append(module)
        yield from found


def test_the_layout_is_read_from_every_module():
    assert {"datasette_glyph.engine.importer", "datasette_glyph.web.routes", "datasette_glyph.cli"} <= set(MODULES)
    assert len(ENGINE) >= 15


@pytest.mark.parametrize("name", sorted(ENGINE))
def test_the_engine_imports_neither_datasette_nor_click_nor_the_rest_of_the_package(name):
    wrong = [
        f"line {line}: {module}"
        for line, module, _ in imports(name)
        if module.split(".")[0] in ("datasette", "click")
        or (module.startswith("datasette_glyph") and not module.startswith("datasette_glyph.engine"))
    ]
    assert wrong == []


def test_no_module_of_the_package_imports_in_a_circle():
    graph = {name: set(package_edges(name)) - {name} for name in MODULES}
    # A package's __init__ is imported before any of its modules, so an edge into it from inside is an edge to it.
    cycles = []
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_another_modules_private_names(name):
    private = [
        f"line {line}: {module}.{n}"
        for line, module, names in imports(name)
        if module.startswith("datasette_glyph")
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert private == []


def test_no_test_imports_another_test_module_or_a_private_name():
    found = []
    for path in sorted((REPO / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if module.split(".")[-1].startswith("test_"):
                    found.append(f"{path.name}:{node.lineno} imports {module}")
                if module.startswith("datasette_glyph"):
                    found += [
                        f"{path.name}:{node.lineno} imports {module}.{a.name}"
                        for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")
                    ]
    assert found == []


def test_the_contributing_guide_names_every_module():
    guide = (REPO / "docs" / "contributing.md").read_text(encoding="utf-8")
    layout = guide.split("## Where the code is", 1)[1].split("\n## ", 1)[0]
    missing = []
    for path in MODULES.values():
        relative = path.relative_to(REPO)
        if path.name == "__init__.py" and relative.parent.name in ("engine", "web"):
            shown = f"{relative.parent.name}/"  # the layer's line; its __init__.py has a line under it too
            if shown not in layout or "__init__.py" not in layout:
                missing.append(str(relative))
        elif str(relative) not in layout and f"  {path.name} " not in layout:
            missing.append(str(relative))
    assert missing == []
