"""The lap-features Quix app's callback, offline: ``step`` with a stand-in for Quix ``State``.

``StreamingDataFrame.test`` is not used on the wired app: ``build_app`` calls ``app.topic()``,
which asks the broker for the topic configs, and the stateful ``apply`` needs a checkpoint made on
partition assignment; both need a running broker (the integration tier covers the wired app).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from quixstreams.utils.json import dumps, loads

from stratx.functions import catalog, ingest, schemas
from stratx.functions.features.laps import build_lap_features
from stratx.functions.racedata import RaceData
from stratx.quix_apps import lap_features


class FakeState:
    """Quix ``State`` stand-in: values kept as the bytes of Quix's own JSON serializer, so every
    ``get`` returns a fresh copy and whatever is set must survive serialization."""

    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}
        self.sets = 0

    def get(self, key: str, default: Any = None) -> Any:
        return loads(self.store[key]) if key in self.store else default

    def set(self, key: str, value: Any) -> None:
        self.store[key] = dumps(value)
        self.sets += 1


@pytest.fixture(scope="module")
def events(las_vegas: RaceData) -> list[dict[str, Any]]:
    """2023 Las Vegas lap events in event-time order, as the raw laps topic carries them."""
    return [json.loads(ingest.encode(r)) for r in ingest.table_records(las_vegas, "laps")]


@pytest.fixture(scope="module")
def offline(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows, rejected = build_lap_features(events)
    assert rejected == []
    return [schemas.LapFeatures.model_validate(r).model_dump(mode="json") for r in rows]


def step(value: Any, state: FakeState) -> dict[str, Any]:
    return lap_features.step(value, state)


def assert_dead_letter(out: dict[str, Any], value: dict[str, Any], reason: str) -> None:
    assert out.keys() == {"dead_letter"}
    letter = schemas.DeadLetter.model_validate(out["dead_letter"])
    assert letter.Reason == reason
    assert letter.SourceTopic == catalog.LAPS.name
    assert letter.Stage == lap_features.STAGE
    assert letter.Key == f"{value.get('SessionKey')}:{value.get('DriverNumber')}"
    assert json.loads(letter.Payload) == value


def test_a_valid_lap_gives_its_features(events: list[dict[str, Any]], offline: list[dict[str, Any]]) -> None:
    state = FakeState()
    out = step(events[0], state)
    assert out.keys() == {"features"}
    features = schemas.LapFeatures.model_validate(out["features"])
    assert (features.DriverNumber, features.LapNumber) == (events[0]["DriverNumber"], events[0]["LapNumber"])
    assert out["features"] == offline[0]
    assert state.sets == 1 and state.get("session") is not None


def test_the_whole_race_through_step_equals_the_offline_build(
    events: list[dict[str, Any]], offline: list[dict[str, Any]]
) -> None:
    state = FakeState()
    online = [step(e, state) for e in events]
    assert all(o.keys() == {"features"} for o in online)
    assert [o["features"] for o in online] == offline
    assert state.sets == len(events)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"LapNumber": 0}, "Lap schema: LapNumber: Input should be greater than or equal to 1 (got 0)"),
        (
            {"DriverNumber": "VER"},
            "Lap schema: DriverNumber: String should match pattern '^[0-9]{1,2}$' (got 'VER')",
        ),
        ({"LapTime": -1.0}, "Lap schema: LapTime: Input should be greater than or equal to 30 (got -1.0)"),
        ({"SessionTime": None}, "Lap schema: SessionTime: Input should be a valid number (got None)"),
        ({"Bogus": 1}, "Lap schema: Bogus: Extra inputs are not permitted (got 1)"),
        ({"v": 2}, "Lap schema: v: Input should be 1 (got 2)"),
    ],
)
def test_a_lap_failing_the_schema_goes_to_the_dead_letters(
    events: list[dict[str, Any]], change: dict[str, Any], reason: str
) -> None:
    state = FakeState()
    step(events[0], state)
    before = dict(state.store)
    bad = {**events[1], **change}
    assert_dead_letter(step(bad, state), bad, reason)
    assert state.store == before and state.sets == 1


def test_a_partial_record_goes_to_the_dead_letters() -> None:
    """The bad record the parity test also produces on the broker."""
    state = FakeState()
    bad = {"SessionKey": 9189, "DriverNumber": "1"}
    why = "Lap schema: Seq: Field required; SessionTime: Field required; Driver: Field required; 1 more"
    assert_dead_letter(step(bad, state), bad, why)
    assert state.store == {}


def test_a_duplicate_lap_goes_to_the_dead_letters_and_changes_nothing(
    events: list[dict[str, Any]], offline: list[dict[str, Any]]
) -> None:
    state = FakeState()
    for e in events[:100]:
        step(e, state)
    before = dict(state.store)
    dup = events[99]
    n, d = dup["LapNumber"], dup["DriverNumber"]
    assert_dead_letter(
        step(dup, state), dup, f"duplicate or out-of-order lap {n} of driver {d} (last processed lap {n})"
    )
    assert state.store == before and state.sets == 100
    rest = [step(e, state)["features"] for e in events[100:]]
    assert rest == offline[100:]


def test_a_late_lap_goes_to_the_dead_letters(events: list[dict[str, Any]]) -> None:
    state = FakeState()
    upto = next(i for i, e in enumerate(events) if e["DriverNumber"] == "1" and e["LapNumber"] == 10)
    for e in events[: upto + 1]:
        step(e, state)
    before = dict(state.store)
    late = next(e for e in events if e["DriverNumber"] == "1" and e["LapNumber"] == 3)
    assert_dead_letter(
        step(late, state), late, "duplicate or out-of-order lap 3 of driver 1 (last processed lap 10)"
    )
    assert state.store == before


def test_features_are_keyed_by_session_and_driver(offline: list[dict[str, Any]]) -> None:
    assert lap_features.driver_key(offline[0]) == f"9189:{offline[0]['DriverNumber']}"
    assert catalog.FEATURES_LAP.schema is schemas.LapFeatures


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"null", "not a JSON object: NoneType"),
        (b"[1, 2]", "not a JSON object: list"),
        (b'"lap"', "not a JSON object: str"),
        (b"\x00garbage{", "not JSON: "),
    ],
)
def test_a_non_object_value_goes_to_the_dead_letters(raw: bytes, reason: str) -> None:
    value = lap_features.parse(raw)
    assert lap_features.session_of(value) == "invalid"
    state = FakeState()
    out = step(value, state)
    letter = schemas.DeadLetter.model_validate(out["dead_letter"])
    assert letter.Reason.startswith(reason)
    assert letter.Stage == lap_features.STAGE
    assert state.store == {}


def test_parse_passes_objects_through() -> None:
    assert lap_features.parse(b'{"SessionKey": 1}') == {"SessionKey": 1}


def test_a_feature_record_failing_its_schema_is_a_dead_letter_not_a_crash(
    events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-finite feature (the schema forbids NaN/inf) is explained; the lap still counts as processed."""
    real = lap_features.lap_step

    def nan_step(session: Any, lap: dict[str, Any]) -> Any:
        session, out = real(session, lap)
        return session, {**out, "LapTime": float("nan")}

    monkeypatch.setattr(lap_features, "lap_step", nan_step)
    state = FakeState()
    out = step(events[0], state)
    assert_dead_letter(
        out, events[0], "LapFeatures schema: LapTime: Input should be a finite number (got nan)"
    )
    assert state.sets == 1  # the next lap builds on this one


def test_track_status_received_before_the_line_neutralises_a_lap_without_codes(
    events: list[dict[str, Any]],
) -> None:
    """A VSC from the track-status topic decides the scope of a lap whose record has no codes
    (an OpenF1 lap); it emits nothing itself."""
    state = FakeState()
    first = events[0]
    vsc = {"v": 1, "SessionKey": first["SessionKey"], "Seq": 1, "SessionTime": first["SessionTime"] - 5.0}
    assert step({**vsc, "Status": "6", "Message": "VSCDeployed"}, state) == {"track": True}
    out = step({**first, "TrackStatus": None}, state)
    assert out["features"]["Neutralised"] and not out["features"]["GreenClean"]
