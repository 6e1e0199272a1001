"""Integration tier: the quickstart command itself, on its own embedded broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stratx.quix_apps.kit.broker import free_port

pytestmark = pytest.mark.integration
STRATX = str(Path(sys.executable).parent / "stratx")


def test_demo_replays_a_bundled_race_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "STRATX_FEAST_DATA_DIR": str(tmp_path / "feast")}
    done = subprocess.run(
        [STRATX, "demo", "--port", str(port), "--drivers", "VER,HAM", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert f"embedded broker at 127.0.0.1:{port}" in done.stderr
    assert "replay 7953 finished" in done.stderr
    assert "stratx.raw.laps" in done.stderr and "Traceback" not in done.stderr
    # the feature apps caught up: one lap-feature record per lap of the two drivers (57 + 57)
    assert re.search(r"stratx.features.lap\s+114\b", done.stderr), done.stderr
    assert re.search(r"stratx.features.lap_aggression\s+114\b", done.stderr), done.stderr
    windows = int(re.search(r"stratx.features.telemetry_window\s+(\d+)", done.stderr).group(1))
    assert windows > 2 * 9000 / 5 * 0.9  # ~2.7 h of car data per driver in 5 s windows
    # the Feast snapshot lists both drivers at the flag: VER won, HAM fifth
    assert re.search(r"VER\s+57\s+1\s", done.stderr) and re.search(r"HAM\s+57\s+2\s", done.stderr)


def test_topics_create_list_describe(broker_address: str) -> None:
    run = [STRATX, "topics"]
    created = subprocess.run(
        [*run, "create", "--broker", broker_address], capture_output=True, text=True, timeout=30
    )
    assert created.returncode == 0, created.stderr
    listed = subprocess.run(
        [*run, "list", "--broker", broker_address], capture_output=True, text=True, timeout=30
    )
    assert "stratx.raw.car_telemetry" in listed.stdout and "stratx.dead_letter" in listed.stdout
    described = subprocess.run(
        [*run, "describe", "stratx.raw.laps", "--broker", broker_address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "stratx.raw.laps: partitions=1" in described.stdout
    assert "retention.ms=" in described.stdout
