"""Integration tier: a replay stopped part-way (or by Ctrl-C) resumes without duplicates or gaps."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from stratx.functions import catalog
from stratx.functions.ingest import TABLE_TOPICS
from stratx.functions.racedata import RaceData
from stratx.functions.settings import ReplaySettings
from stratx.quix_apps import replay
from stratx.quix_apps.kit import kafka_io
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.integration
STRATX = str(Path(sys.executable).parent / "stratx")


def seqs_on_broker(broker: str, session_key: int) -> Counter[int]:
    seqs: Counter[int] = Counter()
    for spec in (*catalog.RAW_TOPICS, catalog.DEAD_LETTER):
        for msg in kafka_io.read_all(broker, spec.name):
            value = json.loads(msg.value())
            if spec is catalog.DEAD_LETTER:
                value = json.loads(value["Payload"])
            if value.get("SessionKey") == session_key:
                seqs[value["Seq"]] += 1
    return seqs


def published(broker: str, session_key: int) -> bool:
    """The session's first record (its SessionInfo) is on the broker."""
    for msg in kafka_io.read_all(broker, catalog.SESSION_INFO.name, drain_s=0.1):
        if json.loads(msg.value()).get("SessionKey") == session_key:
            return True
    return False


def expected_events(race: RaceData) -> int:
    return 1 + sum(len(race.table(t)) for t in TABLE_TOPICS)


def test_partial_replay_then_resume(broker_address: str) -> None:
    from stratx.bentos.lifecycle import sources

    race = sources.load_bundled(DATA_DIR / "races" / "2024_bahrain_grand_prix_race").filter_drivers(
        {"VER", "LEC"}
    )
    settings = ReplaySettings(broker_address=broker_address, checkpoint_every=1000)
    first = replay.run(race, settings, replay.ReplayOptions(max_events=25_000, progress=False))
    assert not first.finished and first.total == 25_000
    second = replay.run(race, settings, replay.ReplayOptions(resume=True, progress=False))
    assert second.finished and second.skipped == 25_000
    third = replay.run(race, settings, replay.ReplayOptions(resume=True, progress=False))
    assert third.total == 0  # a finished replay resumes to nothing
    seqs = seqs_on_broker(broker_address, race.meta.session_key)
    assert max(seqs.values()) == 1, "duplicates after resume"
    assert set(seqs) == set(range(expected_events(race)))


def test_ctrl_c_then_resume_from_the_cli(broker_address: str, bahrain: RaceData) -> None:
    race = bahrain.filter_drivers({"HAM", "ALO"})
    args = [
        STRATX,
        "replay",
        "--year",
        "2023",
        "--event",
        "Bahrain",
        "--drivers",
        "HAM,ALO",
        "--broker",
        broker_address,
        "--no-progress",
    ]
    proc = subprocess.Popen([*args, "--speed", "500"], stderr=subprocess.PIPE, text=True)
    # Ctrl-C once the paced replay is publishing (the race lasts ~11 s at 500x): a fixed sleep
    # fell before the first record when loading the race took longer on a busy machine
    deadline = time.monotonic() + 120
    while not published(broker_address, race.meta.session_key):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the replay published nothing within 120 s"
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "--resume" in err
    done = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "finished" in done.stderr
    seqs = seqs_on_broker(broker_address, race.meta.session_key)
    assert max(seqs.values()) == 1, "duplicates after Ctrl-C + resume"
    assert set(seqs) == set(range(expected_events(race)))
