"""The track-gap apps' tracks on a live session (``quix_apps/track_gaps.py`` :class:`Registry` and
the callbacks), without a broker: the followed ``stratx.race.track`` topic is a dict, Quix state a
dict that keeps values as JSON. Real data: the recorded 2023 Las Vegas OpenF1 records
(``tests/functions/test_track_state.py`` builds the stream from them)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from stratx.functions import track_state
from stratx.functions.features import track_gaps as tg
from stratx.functions.features.track_progress import from_race_track
from stratx.quix_apps import track_gaps as apps
from tests.functions.test_track_state import MAPS, Event, fold, samples_of, stream_events

SESSION = 9189


class FakeState:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    def set(self, key: str, value: Any) -> None:
        self.values[key] = json.dumps(value)


class Topic:
    """``stratx.race.track`` as the Follower serves it: the latest record per session."""

    def __init__(self) -> None:
        self.latest: dict[int, dict[str, Any]] = {}

    def get(self, key: int) -> dict[str, Any] | None:
        return self.latest.get(key)


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return stream_events()


@pytest.fixture(scope="module")
def track(events: list[Event]) -> dict[str, Any]:
    ((_, record),) = list(fold(events, MAPS))
    return record


@pytest.fixture(scope="module")
def replay_track(track: dict[str, Any]) -> dict[int, tg.SessionTrack]:
    """The bundled race's track of the same key, on FastF1's clock (598 s before OpenF1's)."""
    live = from_race_track(track)
    assert live.t0 is not None
    return {SESSION: tg.SessionTrack(SESSION, live.track, 842.793, live.drivers, live.t0.replace(minute=50))}


def test_the_registry_holds_a_live_session_until_its_track_is_on_the_topic_and_says_so_once(
    events: list[Event],
    track: dict[str, Any],
    replay_track: dict[int, tg.SessionTrack],
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = Topic()
    registry = apps.Registry(replay_track, topic)
    sample = next(r for k, r in events if k == track_state.CAR_POSITION)
    with caplog.at_level(logging.WARNING, logger=apps.__name__):
        assert registry(sample) is None and registry(sample) is None
        topic.latest[SESSION] = track
        found = registry(sample)
    assert found is not None and found.start_time == pytest.approx(245.009) and found.track.length > 6000
    assert registry(sample) is found  # converted once
    assert [r.getMessage() for r in caplog.records] == [
        "session 9189 has no track map (its bundled track is on another clock): holding its inputs until "
        "stratx.race.track has it",
        "session 9189: track from stratx.race.track, start 245.009 s",
    ]


def test_a_broken_track_record_is_dead_lettered_once_and_not_used(
    events: list[Event], track: dict[str, Any]
) -> None:
    topic = Topic()
    topic.latest[SESSION] = {**track, "Map": {**track["Map"], "y": track["Map"]["y"][:-1]}}
    registry = apps.Registry({}, topic)
    sample = next(r for k, r in events if k == track_state.CAR_POSITION)
    assert registry(sample) is None and registry(sample) is None
    (letter,) = registry.letters_due()
    assert letter["DeadLetter"]["SourceTopic"] == "stratx.race.track"
    assert "x, y and s differ in length" in letter["DeadLetter"]["Reason"]
    assert registry.letters_due() == [] and apps.Registry({}, topic, letters=False).letters_due() == []


def test_the_progress_app_releases_held_positions_when_the_track_comes(
    events: list[Event], track: dict[str, Any], replay_track: dict[int, tg.SessionTrack]
) -> None:
    """Car 16's positions through the app's callback, the track reaching the topic when car 1
    completes lap 1: the same points as with the track known from the start, none lost."""
    topic = Topic()
    process = apps.progress_callback(apps.Registry(replay_track, topic))
    state = FakeState()
    got: list[dict[str, Any]] = []
    for sample in (s for k, s in events if k == track_state.CAR_POSITION and s["DriverNumber"] == "16"):
        if sample["SessionTime"] >= track["SessionTime"]:
            topic.latest[SESSION] = track
        items = process(sample, f"{SESSION}:16", 0, None, state)
        assert all("Progress" in item for item in items), items
        got += [item["Progress"] for item in items]
    want, _ = tg.offline_progress(samples_of(events, "16"), from_race_track(track))
    assert got == want["16"] and got[0]["SessionTime"] < 246


def test_the_gap_app_releases_held_points_when_the_track_comes(
    events: list[Event], track: dict[str, Any], replay_track: dict[int, tg.SessionTrack]
) -> None:
    session = from_race_track(track)
    samples = [s for car in ("1", "16") for s in samples_of(events, car) if s["SessionTime"] < 700]
    points, _ = tg.offline_progress(samples, session)
    merged = [json.loads(json.dumps(p)) for p in tg.merged_points(points)]
    want, _ = tg.run_gaps(merged, session)
    topic = Topic()
    process = apps.gap_callback(apps.Registry(replay_track, topic, letters=False))
    state = FakeState()
    got: list[dict[str, Any]] = []
    for point in merged:
        if point["SessionTime"] >= 400:
            topic.latest[SESSION] = track
        items = process(point, state)
        got += [item["Gap"] for item in items]
    assert got == want and len(got) > 2 * 300
