"""`stratx` error paths, run as the real console script: one `stratx: error:` line, non-zero exit,
no traceback, within 10 s. No broker is started; 127.0.0.1:1 never answers."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratx.functions.settings import ENV_VARS
from stratx.quix_apps import cli

STRATX = Path(sys.executable).parent / "stratx"
DEAD_BROKER = "127.0.0.1:1"
COMMANDS = (
    "demo",
    "up",
    "broker",
    "topics",
    "replay",
    "races",
    "bundle",
    "features",
    "live",
    "record",
    "ingest",
    "train",
    "evaluate",
    "backtest",
    "predict",
    "alerts",
    "serve",
    "bentos",
    "dashboard",
    "drift",
    "config",
)


pytestmark = pytest.mark.slow  # a `stratx` subprocess per test


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STRATX_")}
    # any HTTP request would fail at once instead of reaching the network
    proxy = "http://127.0.0.1:9"
    env.update(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, https_proxy=proxy, NO_PROXY="")
    env["STRATX_FASTF1_CACHE"] = str(tmp_path / "default-ff1-cache")
    return env


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STRATX), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=_env(tmp_path)
    )


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("stratx: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_unknown_bundled_event(tmp_path: Path) -> None:
    proc = _run(tmp_path, "replay", "--year", "2023", "--event", "Atlantis", "--source", "bundled")
    assert "Atlantis" in _error_line(proc)


@pytest.mark.parametrize(
    "race",
    [
        ("--race-dir", "no-such-race"),
        ("--year", "2023", "--event", "Atlantis", "--source", "bundled"),
    ],
)
def test_backtest_race_it_cannot_load(tmp_path: Path, race: tuple[str, ...]) -> None:
    """(A FastF1 cache without the session gives the same kind of line once FastF1 has loaded,
    which can take over 10 s on a busy machine: checked by hand, see docs/backtest.md.)"""
    line = _error_line(_run(tmp_path, "backtest", *race))
    assert "stratx: error:" in line


def test_up_race_needs_year_and_event(tmp_path: Path) -> None:
    assert "--event" in _error_line(_run(tmp_path, "up", "--year", "2023"))


def test_unknown_driver(tmp_path: Path) -> None:
    proc = _run(
        tmp_path,
        "replay",
        "--year",
        "2023",
        "--event",
        "Bahrain",
        "--drivers",
        "ZZZ",
        "--broker",
        DEAD_BROKER,
    )
    line = _error_line(proc)
    assert "ZZZ" in line and "VER" in line


def test_unreachable_broker(tmp_path: Path) -> None:
    proc = _run(tmp_path, "topics", "list", "--broker", DEAD_BROKER)
    assert DEAD_BROKER in _error_line(proc)


def test_drift_unreachable_broker(tmp_path: Path) -> None:
    proc = _run(tmp_path, "drift", "--broker", DEAD_BROKER, "--reports-dir", str(tmp_path / "drift"))
    assert DEAD_BROKER in _error_line(proc)


def test_port_already_taken(tmp_path: Path, taken_port: int) -> None:
    proc = _run(tmp_path, "broker", "--port", str(taken_port))
    assert str(taken_port) in _error_line(proc)


def test_fastf1_unknown_event_offline_empty_cache(tmp_path: Path) -> None:
    cache = tmp_path / "ff1"
    cache.mkdir()
    proc = _run(
        tmp_path,
        "replay",
        "--year",
        "2023",
        "--event",
        "Atlantis",
        "--source",
        "fastf1",
        "--cache",
        str(cache),
        "--offline",
    )
    line = _error_line(proc)
    assert "2023" in line


def test_help_lists_every_command(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert f"    {command} " in proc.stdout, command


def test_parser_has_exactly_the_documented_commands() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMANDS)


def test_config_prints_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.command("models:cmd_config")(argparse.Namespace()) == 0
    printed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert printed == list(ENV_VARS)


def test_help_and_argument_errors_import_no_subsystem() -> None:
    """`stratx --help` and a bad flag answer from the parser alone: no pandas, Quix, MLflow, Feast,
    BentoML or Panel is imported (each subcommand imports what it needs when it runs)."""
    import subprocess
    import sys

    heavy = ("pandas", "quixstreams", "mlflow", "feast", "bentoml", "panel", "kafka", "lightgbm")
    probe = (
        "import sys\n"
        "from stratx.quix_apps import cli\n"
        "for argv in (['--help'], ['replay', '--speed', 'fast'], ['nonsense']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout + run.stderr
