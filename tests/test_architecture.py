"""The house rules, checked on the source: which folder may import which (docs/architecture.md).

Dependencies point one way. ``functions/`` is the pure core and imports no other StratX folder;
the model services and their kit (``bentos/<key>/``, ``bentos/kit/``) ship alone in a Bento and
import only the core and the kit; nothing under ``bentos/`` imports the streaming apps; the
dashboard and the serverless adapters never import each other. The CLI
(``quix_apps/cli``) dispatches to every part and is the one exception. Lazy imports inside functions
count too: the rules read every ``import`` statement of the module, wherever it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("functions", "quix_apps", "bentos", "panel_app", "localstack")

# folder (as a path prefix) -> StratX packages it must never import, anywhere in the module
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "functions": ("stratx.quix_apps", "stratx.bentos", "stratx.panel_app", "stratx.localstack"),
    "bentos": ("stratx.quix_apps", "stratx.panel_app", "stratx.localstack"),
    "quix_apps": ("stratx.panel_app", "stratx.localstack"),
    "panel_app": ("stratx.localstack",),
    "localstack": ("stratx.panel_app", "stratx.bentos"),
}
# the CLI only parses and dispatches: each subcommand imports the part it runs
DISPATCHERS = ("quix_apps/cli",)
# what a Bento ships (bentos/lifecycle/serve.py WHEEL_FILES): its modules' top-level imports stay inside it
BENTO_ALLOWED = ("stratx.functions.schemas", "stratx.functions.models", "stratx.bentos.kit")


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "dist" not in p.parts)


def _imports(tree: ast.AST, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, imported module) of every absolute import; ``from x import y`` gives x.y and x."""
    nodes = tree.body if top_level_only and isinstance(tree, ast.Module) else list(ast.walk(tree))
    found: list[tuple[int, str]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def violations(folder: str) -> list[str]:
    bad = []
    for path in _sources(folder):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(DISPATCHERS):
            continue
        for line, module in _imports(tree):
            if _under(module, FORBIDDEN[folder]):
                bad.append(f"{rel}:{line} imports {module}")
        if folder == "bentos" and not rel.startswith("bentos/lifecycle/"):
            for line, module in _imports(tree, top_level_only=True):
                if module.startswith("stratx.") and not _under(module, BENTO_ALLOWED):
                    if module in {"stratx.functions", "stratx.bentos"}:  # `from stratx.functions import x`
                        continue
                    bad.append(f"{rel}:{line} imports {module} (not shipped in a Bento)")
    return bad


@pytest.mark.parametrize("folder", FOLDERS)
def test_dependencies_point_one_way(folder: str) -> None:
    assert violations(folder) == []


def test_the_pure_core_reads_no_environment() -> None:
    readers = []
    for path in _sources("functions"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
                readers.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert readers == []


def test_the_rules_catch_a_back_edge(tmp_path: Path) -> None:
    """The checker itself: an import of the apps from the core is reported, a lazy one too."""
    tree = ast.parse("def f():\n    from stratx.quix_apps.kit import admin\n")
    modules = [m for _, m in _imports(tree)]
    assert _under("stratx.quix_apps.kit.admin", FORBIDDEN["functions"])
    assert "stratx.quix_apps.kit.admin" in modules
    assert [m for _, m in _imports(tree, top_level_only=True)] == []


MAX_LINES = 400


def test_no_source_module_is_over_400_lines() -> None:
    """One concern per module (STYLE.md): a module that grows past this is split by concern."""
    sizes = {
        p.relative_to(REPO).as_posix(): len(p.read_text().splitlines())
        for folder in (*FOLDERS, "feature_repo")
        for p in _sources(folder)
    }
    long = {path: n for path, n in sizes.items() if n > MAX_LINES}
    assert long == {}
