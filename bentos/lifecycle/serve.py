"""`stratx serve` (every model's BentoML service on its own port) and building the Bentos.

* :func:`serve_main`: imports each champion into the BentoML model store, starts one
  ``bentoml serve bentos/<key>`` process per model on its port, waits for ``/readyz``, then runs
  until Ctrl-C (or until a service dies) and stops every process it started.
* :func:`build_main`: the ``stratx_serving`` wheel (the serving modules only, see
  :data:`WHEEL_FILES`), the champions, then ``bentoml build`` per model, timed; with ``--export``
  each Bento is also unpacked as a Docker build context (:func:`export_context`): its generated
  ``env/docker/Dockerfile``, the wheel and the champion inside, for ``compose.bentos.yaml``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from stratx.functions import models
from stratx.functions.settings import REPO_ROOT, ServingSettings

BENTOS_DIR = REPO_ROOT / "bentos"
WHEEL_DIR = BENTOS_DIR / "dist"
CONTAINERS_DIR = WHEEL_DIR / "containers"  # bentos/dist/containers/<key>/: one build context per model
GENERATED_DOCKERFILE = "env/docker/Dockerfile"  # where `bentoml build` writes a Bento's Dockerfile
WHEEL_NAME = "stratx_serving"
WHEEL_VERSION = "0.1.0"
# The stratx modules a Bento runs (explicit: nothing else of the package ships in a Bento).
WHEEL_FILES: tuple[str, ...] = (
    "functions/__init__.py",
    "functions/schemas.py",
    "functions/models/*.py",
    "bentos/__init__.py",
    "bentos/kit/*.py",
)
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources make the same wheel


def served_keys() -> list[str]:
    """Model keys with both a recipe and a ``bentos/<key>/service.py``, in MODEL_KEYS order."""
    return [k for k in models.available() if (BENTOS_DIR / k / "service.py").is_file()]


def bento_env() -> dict[str, str]:
    """Environment of the ``bentoml`` subprocesses (no usage tracking: nothing leaves the machine)."""
    return {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}


# ------------------------------------------------------------------ wheel + bentoml build
def _wheel_sources(root: Path = REPO_ROOT) -> list[tuple[str, Path]]:
    """(path inside the wheel, source file) for :data:`WHEEL_FILES`, sorted."""
    found = {
        f"stratx/{p.relative_to(root).as_posix()}": p for pattern in WHEEL_FILES for p in root.glob(pattern)
    }
    return sorted(found.items())


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(out_dir: Path = WHEEL_DIR, root: Path = REPO_ROOT) -> Path:
    """A pure-Python wheel of the serving modules, without dependency metadata (each bentofile
    pins what the Bento installs). Built offline, without setuptools."""
    dist_info = f"{WHEEL_NAME}-{WHEEL_VERSION}.dist-info"
    files = [(name, path.read_bytes()) for name, path in _wheel_sources(root)]
    files.append(
        (
            f"{dist_info}/METADATA",
            f"Metadata-Version: 2.1\nName: {WHEEL_NAME.replace('_', '-')}\nVersion: {WHEEL_VERSION}\n"
            "Summary: StratX model recipes and serving code for the BentoML services\n"
            "Requires-Python: >=3.11,<3.12\n".encode(),
        )
    )
    files.append(
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: stratx.bentos.lifecycle.serve\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    record = "\n".join([*(_record_line(n, d) for n, d in files), f"{dist_info}/RECORD,,"]) + "\n"
    files.append((f"{dist_info}/RECORD", record.encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{WHEEL_NAME}-{WHEEL_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(zipfile.ZipInfo(name, _ZIP_DATE), data, zipfile.ZIP_DEFLATED)
    return wheel


def _bentoml(*args: str) -> str:
    """Run the BentoML CLI in the serving environment; its stdout, or RuntimeError with its output."""
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", *args], env=bento_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"bentoml {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def bentoml_build(key: str) -> tuple[str, float]:
    """``bentoml build bentos/<key>``: (the Bento tag, seconds). Needs the wheel and the champion."""
    started = time.perf_counter()
    out = _bentoml("build", str(BENTOS_DIR / key), "--output", "tag")
    tag = out.strip().splitlines()[-1].removeprefix("__tag__:")
    return tag, time.perf_counter() - started


def export_context(tag: str, key: str, out_dir: Path = CONTAINERS_DIR) -> Path:
    """``bentoml export`` the Bento ``tag`` (its model included) and unpack it to ``out_dir/<key>``:
    a Docker build context for the Dockerfile ``bentoml build`` generated (what ``bentoml
    containerize`` would build, without needing Docker here). Replaces an older export."""
    target = out_dir / key
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / f"{key}.bento"
        _bentoml("export", tag, str(archive))
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(target, filter="data")  # refuses absolute paths, links out of the folder
    if not (target / GENERATED_DOCKERFILE).is_file() or not any((target / "models").glob("*/*/model.yaml")):
        raise RuntimeError(f"{tag}: the export lacks {GENERATED_DOCKERFILE} or its model")
    return target


def build_main(args: argparse.Namespace, settings: ServingSettings | None = None) -> int:
    """`stratx bentos build [--model KEY ...] [--no-import]`: wheel, champions, one Bento per model."""
    from stratx.bentos.kit import serving

    settings = settings or ServingSettings()
    wheel = build_wheel()
    print(f"wheel {wheel.relative_to(REPO_ROOT)}")
    for key in getattr(args, "models", None) or served_keys():
        if not getattr(args, "no_import", False):
            print(f"{key}: imported {serving.import_champion(settings, key, settings.model_alias)}")
        tag, seconds = bentoml_build(key)
        print(f"{key}: built {tag} in {seconds:.1f} s")
        if getattr(args, "export", False):
            context = export_context(tag, key)
            print(f"{key}: build context {context.relative_to(REPO_ROOT)} ({GENERATED_DOCKERFILE})")
    return 0


# ------------------------------------------------------------------ serving processes
@dataclass
class Running:
    key: str
    url: str
    process: subprocess.Popen[bytes]


def start(key: str, host: str, port: int, log: Path | None = None) -> Running:
    """``bentoml serve bentos/<key>`` in its own process group (so it can be stopped as a whole)."""
    command = [sys.executable, "-m", "bentoml", "serve", ".", "--host", host, "--port", str(port)]
    with log.open("ab") if log else open(os.devnull, "wb") as out:  # the child keeps its own copy
        process = subprocess.Popen(
            command,
            cwd=BENTOS_DIR / key,
            env=bento_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Running(key, f"http://{host}:{port}", process)


def wait_ready(running: Sequence[Running], timeout_s: float) -> None:
    """Poll every service's ``/readyz`` until all answer 200; raise when one exits or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout_s
    pending = list(running)
    while pending:
        for r in list(pending):
            if r.process.poll() is not None:
                raise RuntimeError(f"{r.key} service exited with code {r.process.returncode}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{r.url}/readyz", timeout=1.0).status_code == 200:
                    pending.remove(r)
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout_s:.0f} s: {', '.join(r.key for r in pending)}")
        if pending:
            time.sleep(0.2)


def stop(running: Sequence[Running], grace_s: float = 10.0) -> None:
    """SIGINT each service's process group, then SIGKILL what is left after ``grace_s``."""
    for r in running:
        if r.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(r.process.pid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for r in running:
        try:
            r.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(r.process.pid, signal.SIGKILL)
            r.process.wait()


@contextmanager
def services(
    keys: Sequence[str], settings: ServingSettings, log_dir: Path | None = None
) -> Iterator[list[Running]]:
    """Every service of ``keys`` started and ready; all stopped on exit (also on errors)."""
    running: list[Running] = []
    try:
        for key in keys:
            log = log_dir / f"{key}.log" if log_dir else None
            running.append(start(key, settings.serve_host, settings.port(key), log))
        wait_ready(running, settings.serve_start_timeout_s)
        yield running
    finally:
        stop(running)


def serve_main(args: argparse.Namespace, settings: ServingSettings | None = None) -> int:
    """`stratx serve [--model KEY ...] [--no-import]`: import the champions, serve until Ctrl-C."""
    from stratx.bentos.kit import serving

    settings = settings or ServingSettings()
    keys = list(getattr(args, "models", None) or served_keys())
    if not getattr(args, "no_import", False):
        for key in list(keys):
            try:
                print(f"{key}: {serving.import_champion(settings, key, settings.model_alias)}")
            except ValueError as exc:  # no champion registered yet
                print(f"{key}: skipped ({exc})", file=sys.stderr)
                keys.remove(key)
    if not keys:
        print("no model to serve: train one with `stratx train` first", file=sys.stderr)
        return 1
    with services(keys, settings) as running:
        for r in running:
            print(f"{r.key:<11} {r.url}  (POST /predict, /predict_rows; GET /readyz /livez /metrics)")
        print("serving; Ctrl-C stops every service")
        try:
            while all(r.process.poll() is None for r in running):
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
    dead = [r.key for r in running if r.process.returncode not in (None, 0)]
    print(f"service exited: {', '.join(dead) or 'unknown'}", file=sys.stderr)
    return 1


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m stratx.bentos.lifecycle.serve {serve,build}`` until ``stratx`` wires the commands."""
    parser = argparse.ArgumentParser(prog="python -m stratx.bentos.lifecycle.serve")
    parser.add_argument("command", choices=("serve", "build"))
    parser.add_argument("--model", dest="models", action="append", choices=models.MODEL_KEYS)
    parser.add_argument("--no-import", action="store_true", help="use the BentoML store as it is")
    args = parser.parse_args(argv)
    return serve_main(args) if args.command == "serve" else build_main(args)


if __name__ == "__main__":
    sys.exit(_main())
