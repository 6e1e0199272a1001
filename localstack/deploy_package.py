"""Packaging of the ingest handler for Lambda: the ``stratx`` modules it imports, found by importing
it in a child interpreter, in a deterministic zip (the same modules give the same CodeSha256), and
its pinned third-party dependencies with the pip command that builds their layer.
Re-exported by :mod:`stratx.localstack.deploy`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same modules give the same CodeSha256
# ------------------------------------------------------------------ packaging
LAZY_IMPORTS = ("kafka",)
"""Top-level modules the handler imports only when it runs (kafka-python: the output sink); boto3
is left out, the Lambda runtime has it."""
_PROBE = """
import importlib, importlib.metadata as md, json, sys
before = set(sys.modules)
importlib.import_module(sys.argv[1])
mods = {n: m.__file__ for n, m in list(sys.modules.items()) if n.split(".")[0] == "stratx" and getattr(m, "__file__", None)}
tops = {n.split(".")[0] for n in set(sys.modules) - before} - set(sys.stdlib_module_names) - {"stratx"}
dists = md.packages_distributions()
pins = sorted({f"{d}=={md.version(d)}" for t in tops | set(sys.argv[2:]) for d in dists.get(t, [])})
print(json.dumps({"modules": mods, "requirements": pins}))
"""


@dataclass(frozen=True)
class Package:
    """What the handler needs: the stratx files in the zip, the pinned third-party distributions."""

    files: dict[str, Path]
    requirements: list[str]


def handler_package(handler: str) -> Package:
    """Import the handler's module in a child interpreter and list what it loaded."""
    module = handler.rsplit(".", 1)[0]
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *LAZY_IMPORTS], capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"cannot import the handler module {module}: {last}")
    found = json.loads(run.stdout.strip().splitlines()[-1])
    files: dict[str, Path] = {}
    for name, file in found["modules"].items():
        path = Path(file)
        if path.suffix != ".py":
            continue
        parts = name.split(".")
        arcname = "/".join(parts) + ("/__init__.py" if path.name == "__init__.py" else ".py")
        files[arcname] = path
    return Package(dict(sorted(files.items())), list(found["requirements"]))


def build_zip(files: dict[str, Path]) -> bytes:
    """A deterministic zip (sorted entries, fixed times) of ``{arcname: file}``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in sorted(files.items()):
            info = zipfile.ZipInfo(arcname, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def code_sha256(blob: bytes) -> str:
    """Lambda's CodeSha256 of a zip."""
    return base64.b64encode(hashlib.sha256(blob).digest()).decode()


def layer_command(requirements_file: Path, target: Path) -> list[str]:
    """pip command that installs the handler's dependencies for Lambda's python3.11 x86_64 runtime."""
    return [
        sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.11",
        "--target", str(target / "python"), "-r", str(requirements_file),
    ]  # fmt: skip
