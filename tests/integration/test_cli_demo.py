"""Integration tier: the quickstart command itself, on its own embedded broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stratx.quix_apps.broker import free_port

pytestmark = pytest.mark.integration
STRATX = str(Path(sys.executable).parent / "stratx")


def test_demo_replays_a_bundled_race_end_to_end() -> None:
    port = free_port()
    done = subprocess.run(
        [STRATX, "demo", "--port", str(port), "--drivers", "VER", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert f"embedded broker at 127.0.0.1:{port}" in done.stderr
    assert "replay 7953 finished" in done.stderr
    assert "stratx.raw.laps" in done.stderr and "Traceback" not in done.stderr


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
