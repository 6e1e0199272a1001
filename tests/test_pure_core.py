"""The pure core (``functions/``) stands alone: it never imports the apps, the services or the
dashboard (they pass in what it needs, e.g. the data folder), and the model recipes stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "functions"
OUTSIDE = ("stratx.quix_apps", "stratx.bentos", "stratx.panel_app", "stratx.localstack", "stratx.bench")
MAX_LINES = 400


def imported(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (lazy imports inside functions too)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize(
    "path", sorted(FUNCTIONS_DIR.rglob("*.py")), ids=lambda p: str(p.relative_to(FUNCTIONS_DIR))
)
def test_functions_never_import_the_apps(path: Path) -> None:
    assert [n for n in imported(path) if n.startswith(OUTSIDE)] == []


@pytest.mark.parametrize(
    "path", sorted((FUNCTIONS_DIR / "models").rglob("*.py")), ids=lambda p: str(p.relative_to(FUNCTIONS_DIR))
)
def test_model_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES
