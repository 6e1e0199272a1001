"""The README is the front door and the details live in docs/: check that they stay linked and honest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"```.*?```", re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.*)$", FENCE.sub("", markdown), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def section(markdown: str, title: str) -> str:
    return markdown.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_is_the_front_door() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    assert "![dashboard](docs/dashboard_live.png)" in text
    quickstart = section(text, "Quickstart")
    commands = re.findall(r"^make \w+", quickstart.split("```bash", 1)[1].split("```", 1)[0], flags=re.M)
    assert commands == ["make up", "make test"]
    for title in ("Commands", "Headline figures", "Architecture"):
        assert section(text, title).strip(), title


def test_every_docs_page_is_linked_from_the_readme_and_starts_with_its_folder() -> None:
    text = README.read_text()
    assert PAGES
    for page in PAGES:
        assert f"(docs/{page.name})" in text, page.name
        first = page.read_text().splitlines()[0]
        assert first.startswith("# `") and "/`" in first, (page.name, first)


def test_every_headline_figure_has_its_command() -> None:
    rows = [
        line for line in section(README.read_text(), "Headline figures").splitlines() if line.startswith("| ")
    ]
    assert len(rows) > 2
    for row in rows[2:]:
        command = [cell.strip() for cell in row.strip("|").split("|")][3]
        assert command.startswith("`") and command.endswith("`"), row


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    for link in LINK.findall(FENCE.sub("", path.read_text())):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        target, _, fragment = link.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        assert resolved.exists(), (path.name, link)
        if fragment and resolved.suffix == ".md":
            assert fragment in anchors(resolved.read_text()), (path.name, link)
