"""The Quickstart's main command, `stratx up --exit-when-done`, as a user runs it: a subprocess
that starts the broker, the five model services, the streaming apps and the dashboard, replays a
bundled real race (three drivers, to keep CI short) and prints the summary; then nothing is left
running. Champions: small real ones in a temp registry (tests/bentos_support.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests import bentos_support as support

pytestmark = pytest.mark.integration
DRIVERS = "VER,ALO,HAM"


@pytest.fixture(scope="module")
def champions(trained_champions: support.Champions) -> Iterator[tuple[support.Champions, Path]]:
    with support.bentoml_home(trained_champions.home) as home:
        yield trained_champions, home


def started_by(marker: str) -> set[int]:
    """PIDs of processes (other than this test process) whose environment carries ``marker``: every
    process `stratx up` starts inherits its environment, so this finds exactly its children and
    nothing that other jobs on the machine run."""
    found = set()
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if any(marker in value for value in proc.environ().values()):
                found.add(proc.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.timeout(1500)
def test_up_runs_the_whole_pipeline_and_stops_everything(
    champions: tuple[support.Champions, Path], tmp_path: Path
) -> None:
    registered, home = champions
    assert not registered.failed, registered.failed
    marker = f"up-test-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "STRATX_MLFLOW_URI": registered.settings.mlflow_uri,
        "BENTOML_HOME": str(home),
        "STRATX_STATE_DIR": str(tmp_path / "state"),
        "UP_TEST_MARKER": marker,  # inherited by every process `stratx up` starts
        "STRATX_SERVE_START_TIMEOUT_S": "300",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stratx.quix_apps.cli",
            "up",
            "--exit-when-done",
            "--no-progress",
            "--no-feast",
            "--drivers",
            DRIVERS,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    laps = int(re.search(r"(\d+) driver-laps replayed", out).group(1))  # type: ignore[union-attr]
    assert laps > 150  # 3 drivers x 57 laps
    for key in ("lap_time", "tyre_deg", "pit_window", "anomaly"):
        assert re.search(rf"stratx\.predictions\.{key}\s+{laps}\b", out), f"{key}: {out[-2000:]}"
        assert f"{key}:ok {laps}" in out
    assert re.search(r"stratx\.predictions\.overtake\s+\d+", out)
    assert "serving latency" in out and "dashboard: http://127.0.0.1:" in out
    assert f"drift: skipped ({laps} driver-laps < STRATX_DRIFT_MIN_ROWS 200)" in out  # 3 drivers: too few
    assert started_by(marker) == set(), "stratx up left processes running"
