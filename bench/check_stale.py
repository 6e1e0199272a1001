"""Which benchmark results are stale: measured on a commit older than the code they measure.

    python bench/check_stale.py [--strict]        (make bench-check)

Every result under bench/results/ records the commit it was measured on (``machine.git_commit``).
The code a result measures is derived, not listed: the benchmark script, every StratX module it
imports, directly or through other StratX modules (imports inside functions count, and so do
module names written as strings, which is how the apps are started as subprocesses; a benchmark
that reaches the CLI measures every command and every streaming app under quix_apps/, one that
starts model services every ``bentos/*/service.py``), and
``uv.lock`` (the library versions). A result is stale when any of those files differs between its
commit and the working tree. The README's figures are then listed by the result they cite (the
``bench/NAME.py`` of their row). ``--strict`` exits 1 when a result the README cites is stale or
has no commit.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ALWAYS = ("uv.lock",)
# `stratx` subcommands and apps are imported by computed names (`importlib.import_module`): a
# benchmark that runs the CLI measures every command module and every streaming app
CLI_PACKAGE = REPO_ROOT / "quix_apps" / "cli"
SERVE = REPO_ROOT / "bentos" / "lifecycle" / "serve.py"
MODULE_STRING = re.compile(r"\bstratx(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
README_BENCH = re.compile(r"bench/([a-z_]+)\.py")
# NAME_<commit>.json: a before -> after reference kept on purpose (docs/benchmarks.md cites it)
REFERENCE = re.compile(r"_[0-9a-f]{7,40}\.json$")


def module_file(name: str) -> Path | None:
    """The source file of a StratX module, from the package folders in pyproject.toml (nothing is
    imported), or None: not StratX, or no such module (e.g. a ``module.function`` name)."""
    for package, folder in _package_dirs().items():
        if name == package or name.startswith(f"{package}."):
            rest = name[len(package) :].lstrip(".").split(".") if name != package else []
            base = folder.joinpath(*rest)
            for candidate in (base.with_suffix(".py") if rest else None, base / "__init__.py"):
                if candidate is not None and candidate.is_file():
                    return candidate.resolve()
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module name ``path`` may import: import statements anywhere in the file (for
    ``from a import b`` both ``a`` and ``a.b``) and string constants that are a ``stratx.*``
    module name and nothing else (``[python, "-m", "stratx.quix_apps.cli"]``; prose in docstrings
    that mentions a module is not an import)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    package = _package_of(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and MODULE_STRING.fullmatch(node.value.strip())  # a module named by a value, not prose
        ):
            names.add(node.value.strip())
    return names


def _package_of(path: Path) -> str:
    """The dotted package a StratX source file belongs to ('' outside the packages)."""
    for name, folder in _package_dirs().items():
        try:
            relative = path.resolve().relative_to(folder)
        except ValueError:
            continue
        return ".".join([name, *relative.parent.parts]) if relative.parent.parts else name
    return ""


@functools.cache
def _package_dirs() -> dict[str, Path]:
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    dirs = project["tool"]["setuptools"]["package-dir"]
    return {name: (REPO_ROOT / folder).resolve() for name, folder in dirs.items() if name}


def measured_files(script: Path) -> set[Path]:
    """The files a benchmark measures: the script, the StratX modules it reaches, ``uv.lock``."""
    seen: set[Path] = set()
    todo = [script.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            found = module_file(name)
            if found is not None and found not in seen and found.is_relative_to(REPO_ROOT):
                todo.append(found)
        if path.parent == CLI_PACKAGE:  # the CLI imports its commands and apps by computed names
            todo.extend([*CLI_PACKAGE.glob("*.py"), *CLI_PACKAGE.parent.glob("*.py")])
        if path == SERVE:  # `bentoml serve` runs each model's bentos/KEY/service.py by its folder
            todo.extend(SERVE.parents[1].glob("*/service.py"))
    return {p.relative_to(REPO_ROOT) for p in seen} | {Path(p) for p in ALWAYS}


def changed_since(repo: Path, commit: str, files: set[Path]) -> list[str] | None:
    """The files of ``files`` that differ between ``commit`` and the working tree (None: git
    does not know the commit)."""
    known = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True
    )
    if known.returncode != 0:
        return None
    out = subprocess.run(
        ["git", "-C", str(repo), "diff", "--name-only", commit, "--", *sorted(map(str, files))],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(line for line in out.stdout.splitlines() if line)


@dataclass
class Verdict:
    result: str
    bench: str | None
    commit: str | None
    date: str | None
    changed: list[str] | None = None
    cited_by: int = 0

    @property
    def status(self) -> str:
        if REFERENCE.search(self.result):
            return "reference: an older commit on purpose"
        if self.bench is None:
            return "no benchmark script"
        if self.commit is None:
            return "no commit recorded"
        if self.changed is None:
            return "unknown commit"
        return f"stale: {len(self.changed)} file(s) changed" if self.changed else "fresh"

    @property
    def fresh(self) -> bool:
        return self.status == "fresh"


def bench_of(result: Path, scripts: dict[str, Path]) -> str | None:
    """The benchmark that writes ``result``: the longest script name its file name starts with."""
    names = [n for n in scripts if result.stem == n or result.stem.startswith(f"{n}_")]
    return max(names, key=len) if names else None


def make_bench_scripts(repo: Path) -> list[str]:
    """The benchmarks `make bench` runs (the Makefile's recipe lines of its ``bench`` target)."""
    lines = (repo / "Makefile").read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("bench:")), None)
    if start is None:
        return []
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.extend(README_BENCH.findall(line))
    return recipe


def check(repo: Path = REPO_ROOT) -> list[Verdict]:
    scripts = {p.stem: p for p in (repo / "bench").glob("*.py") if p.stem != "check_stale"}
    text = (repo / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    cited = [m for line in rows for m in README_BENCH.findall(line)]
    cited += [m for line in rows if "`make bench`" in line for m in make_bench_scripts(repo)]
    files_of: dict[str, set[Path]] = {}
    verdicts = []
    for result in sorted((repo / "bench" / "results").glob("*.json")):
        machine = json.loads(result.read_text()).get("machine") or {}
        bench = bench_of(result, scripts)
        verdict = Verdict(result.name, bench, machine.get("git_commit"), machine.get("date"))
        if bench is not None:
            verdict.cited_by = 0 if REFERENCE.search(result.name) else cited.count(bench)
            if verdict.commit:
                files = files_of.setdefault(bench, measured_files(scripts[bench]))
                verdict.changed = changed_since(repo, verdict.commit, files)
        verdicts.append(verdict)
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if a result the README cites is not fresh"
    )
    args = parser.parse_args(argv)
    verdicts = check()
    print(f"{'result':40s} {'commit':10s} {'date':11s} {'README rows':>11s}  status")
    for v in verdicts:
        print(
            f"{v.result:40s} {(v.commit or '-')[:10]:10s} {(v.date or '-')[:10]:11s} {v.cited_by:>11d}  {v.status}"
        )
        for name in (v.changed or [])[:5]:
            print(f"{'':40s} {'':10s} {'':11s} {'':>11s}    {name}")
        if v.changed and len(v.changed) > 5:
            print(f"{'':40s} {'':10s} {'':11s} {'':>11s}    ... and {len(v.changed) - 5} more")
    bad = [v for v in verdicts if v.cited_by and not v.fresh]
    print(f"\n{len(bad)} of {sum(1 for v in verdicts if v.cited_by)} results the README cites are not fresh")
    return 1 if args.strict and bad else 0


if __name__ == "__main__":
    sys.exit(main())
