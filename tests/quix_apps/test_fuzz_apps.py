"""Property-based fuzzing of the streaming apps' callbacks (bytes in, records or dead letters out),
the feature functions' input handling, and the BentoML request rows.

Callbacks get what Quix hands them: ``wire.parse`` of the message bytes, with a stand-in for Quix
``State``. Valid inputs are real 2023 Las Vegas GP records (bundled) with their values redrawn
within the physical ranges; invalid inputs are garbage bytes, other JSON, and real records with one
field broken. Every invalid input must come out as a dead letter with a reason, and nothing raises.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from stratx.bentos.kit import serving
from stratx.bentos.kit.serving_schemas import SCHEMAS
from stratx.bentos.lifecycle import sources
from stratx.functions import catalog, ingest, schemas
from stratx.functions.features import aggression, telemetry
from stratx.functions.features.laps import build_lap_features
from stratx.functions.settings import REPO_ROOT
from stratx.quix_apps import lap_aggression, lap_features, telemetry_features, track_gaps
from stratx.quix_apps.kit import wire
from tests.functions.test_fuzz_ingest import VALID, invalid_records
from tests.quix_apps.test_lap_features_app import FakeState

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RACE = REPO_ROOT / "data" / "races" / "2023_las_vegas_grand_prix_race"
LAPS = 100  # the first 100 laps of the race (5 laps of every car)


@functools.cache
def lap_events() -> list[dict[str, Any]]:
    race = sources.load_bundled(RACE)
    records = itertools.islice(ingest.table_records(race, "laps"), LAPS)
    return [json.loads(ingest.encode(r)) for r in records]  # type: ignore[arg-type]


@functools.cache
def car_samples() -> list[dict[str, Any]]:
    """The first 200 car-data samples of car 1 (about 50 s), as the raw topic carries them."""
    race = sources.load_bundled(RACE)
    records = (r for r in ingest.table_records(race, "car_data") if r.payload["DriverNumber"] == "1")
    out = []
    for record in itertools.islice(records, 200):
        encoded = ingest.encode(record)
        if isinstance(encoded, bytes):
            out.append(json.loads(encoded))
    return out


@functools.cache
def feature_rows() -> list[dict[str, Any]]:
    rows, rejected = build_lap_features(lap_events())
    assert rejected == []
    return [schemas.LapFeatures.model_validate(r).model_dump(mode="json") for r in rows]


GARBAGE = (
    st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | st.recursive(st.none() | st.integers() | st.text(max_size=10), lambda c: st.lists(c, max_size=3)).map(
        lambda v: json.dumps(v).encode()
    )
    | st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=8)).map(
        lambda v: json.dumps(v).encode()
    )
)


def broken(topic: catalog.TopicSpec) -> st.SearchStrategy[bytes]:
    """A real record of ``topic`` with one field broken, as message bytes."""
    records = invalid_records().filter(lambda c: c[0].topic is topic and isinstance(c[0].payload, dict))
    return records.map(lambda c: json.dumps(c[0].payload, default=str).encode())


def letters(items: list[dict[str, Any]], key: str) -> list[schemas.DeadLetter]:
    return [schemas.DeadLetter.model_validate(item[key]) for item in items if key in item]


# ------------------------------------------------------------------ lap-features app
@st.composite
def mutated_laps(draw: st.DrawFn) -> list[dict[str, Any]]:
    """The first laps with lap values redrawn in range (times and lap numbers kept: event order)."""
    names = sorted(set(VALID[catalog.LAPS.name]) - {"DriverNumber", "LapNumber"})
    out = []
    for event in lap_events():
        chosen = draw(st.sets(st.sampled_from(names), max_size=4))
        out.append({**event, **{n: draw(VALID[catalog.LAPS.name][n]) for n in sorted(chosen)}})
    return out


@settings(FUZZ, max_examples=20)
@given(mutated_laps())
def test_lap_app_keeps_every_valid_lap(events: list[dict[str, Any]]) -> None:
    state = FakeState()
    for event in events:
        out = lap_features.step(wire.parse(json.dumps(event, default=str).encode()), state)
        assert "features" in out, out
        schemas.LapFeatures.model_validate(out["features"])
        assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in out["features"].values())


@FUZZ
@given(GARBAGE | broken(catalog.LAPS))
def test_lap_app_sends_anything_else_to_the_dead_letters(raw: bytes) -> None:
    state = FakeState()
    lap_features.step(wire.parse(json.dumps(lap_events()[0]).encode()), state)
    before = dict(state.store)
    out = lap_features.step(wire.parse(raw), state)
    assert out.keys() == {"dead_letter"}, out
    letter = schemas.DeadLetter.model_validate(out["dead_letter"])
    assert letter.Reason.strip() and letter.Payload
    assert state.store == before


# ------------------------------------------------------------------ telemetry app and windows
@st.composite
def mutated_samples(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = sorted(set(VALID[catalog.CAR_TELEMETRY.name]) - {"DriverNumber"})
    out = []
    for sample in car_samples():
        chosen = draw(st.sets(st.sampled_from(names), max_size=3))
        out.append({**sample, **{n: draw(VALID[catalog.CAR_TELEMETRY.name][n]) for n in sorted(chosen)}})
    return out


@settings(FUZZ, max_examples=20)
@given(mutated_samples())
def test_telemetry_app_keeps_every_valid_sample(samples: list[dict[str, Any]]) -> None:
    state = FakeState()
    windows = []
    for sample in samples:
        items = telemetry_features.process(wire.parse(json.dumps(sample).encode()), "9189:1", 0, None, state)
        assert letters(items, "DeadLetter") == [], items
        windows += [schemas.TelemetryWindow.model_validate(i["Window"]) for i in items]
    assert sum(w.Samples for w in windows) + state.get(telemetry_features.STATE_KEY)["win"]["n"] == len(
        samples
    )


@FUZZ
@given(GARBAGE | broken(catalog.CAR_TELEMETRY))
def test_telemetry_app_sends_anything_else_to_the_dead_letters(raw: bytes) -> None:
    state = FakeState()
    items = telemetry_features.process(wire.parse(raw), "9189:1", 0, None, state)
    assert len(items) == 1 and letters(items, "DeadLetter")[0].Reason.strip()
    assert state.store == {}


@FUZZ
@given(st.lists(st.sampled_from(range(60)), min_size=1, max_size=80))
def test_window_update_rejects_replays_with_a_reason(order: list[int]) -> None:
    """Samples in any order (repeats included): each is a window contribution or a rejected item."""
    samples = [schemas.CarTelemetry.model_validate(s).model_dump() for s in car_samples()[:60]]
    state: dict[str, Any] | None = None
    accepted = rejected = 0
    for i in order:
        state, items = telemetry.window_update(state, samples[i])
        if any(telemetry.is_rejected(x) for x in items):
            assert all(x[telemetry.REJECTED].strip() for x in items)
            rejected += 1
        else:
            accepted += 1
    assert accepted + rejected == len(order) and accepted >= 1


# ------------------------------------------------------------------ lap-aggression app
@FUZZ
@given(
    GARBAGE | broken(catalog.CAR_TELEMETRY), st.sampled_from([catalog.TELEMETRY_WINDOW, catalog.FEATURES_LAP])
)
def test_aggression_app_sends_anything_else_to_the_dead_letters(raw: bytes, spec: catalog.TopicSpec) -> None:
    item = lap_aggression.validated(wire.parse(raw), "9189:1", spec)
    assert "DeadLetter" in item, item
    out = lap_aggression.process(item, "9189:1", 0, None, FakeState())
    assert letters(out, "DeadLetter")[0].Reason.strip()


@FUZZ
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=40))
def test_aggression_step_takes_windows_and_laps_in_any_order(picks: list[int]) -> None:
    """Real windows and lap records of car 1, in any order: finalized laps validate, the rest are
    rejected with a reason; nothing raises."""
    samples = car_samples()
    windows: list[dict[str, Any]] = []
    state: dict[str, Any] | None = None
    for sample in samples:
        state, items = telemetry.window_update(
            state, schemas.CarTelemetry.model_validate(sample).model_dump()
        )
        windows += [schemas.TelemetryWindow.model_validate(i).model_dump(mode="json") for i in items]
    laps = [r for r in feature_rows() if r["DriverNumber"] == "1"]
    pool = windows + laps
    agg: dict[str, Any] | None = None
    for p in picks:
        agg, out = aggression.aggression_step(agg, pool[p % len(pool)])
        for x in out:
            if aggression.is_rejected(x):
                assert str(x[aggression.REJECTED]).strip()
            else:
                schemas.LapAggression.model_validate(x)


# ------------------------------------------------------------------ track-gap apps
@FUZZ
@given(GARBAGE | broken(catalog.CAR_POSITION))
def test_track_apps_send_anything_else_to_the_dead_letters(raw: bytes) -> None:
    progress = track_gaps.progress_callback({})
    items = progress(wire.parse(raw), "9189:1", 0, None, FakeState())
    assert len(items) == 1 and letters(items, "DeadLetter")[0].Reason.strip()
    gaps = track_gaps.gap_callback({})
    items = gaps(wire.parse(raw), FakeState())
    assert len(items) == 1 and letters(items, "DeadLetter")[0].Reason.strip()


# ------------------------------------------------------------------ BentoML request rows
def rows_adapter(key: str) -> TypeAdapter[Any]:
    return TypeAdapter(serving.Rows[SCHEMAS[key].row])  # type: ignore[name-defined]


LAP_ROW_MODELS = ["lap_time", "tyre_deg", "pit_window", "anomaly"]
ROW_INVALID: dict[str, st.SearchStrategy[Any]] = {
    "DriverNumber": st.sampled_from(["VER", "123", "٣", 1, None]),
    "LapNumber": st.integers(max_value=0) | st.sampled_from(["x", None, 1.5]),
    "PositionOnLap": st.integers(max_value=0) | st.just("P1"),
    "GapToLeader": st.floats(max_value=-1e-9) | st.sampled_from([math.nan, math.inf, "x", None]),
    "LapTime": st.sampled_from([math.nan, math.inf, -math.inf, "fast", [1]]),
    "IsClean": st.sampled_from(["maybe", 2, None]),
    "LapsDown": st.integers(max_value=-1),
    "FuelKg": st.sampled_from([math.nan, "x", None]),
    "Bogus": st.integers(),
}


@FUZZ
@given(st.sampled_from(LAP_ROW_MODELS), st.lists(st.integers(0, LAPS - 1), min_size=1, max_size=20))
def test_service_rows_accept_real_feature_rows(key: str, picks: list[int]) -> None:
    rows = [feature_rows()[i] for i in picks]
    parsed = rows_adapter(key).validate_json(json.dumps(rows))
    assert len(parsed) == len(rows)


@FUZZ
@given(
    st.sampled_from(LAP_ROW_MODELS),
    st.lists(st.integers(0, LAPS - 1), min_size=1, max_size=10),
    st.data(),
)
def test_service_rows_reject_a_bad_field_naming_row_and_field(
    key: str, picks: list[int], data: st.DataObject
) -> None:
    rows = [dict(feature_rows()[i]) for i in picks]
    at = data.draw(st.integers(0, len(rows) - 1))
    name = data.draw(st.sampled_from(sorted(ROW_INVALID)))
    rows[at][name] = data.draw(ROW_INVALID[name])
    adapter = rows_adapter(key)
    try:
        adapter.validate_python(rows)
    except ValidationError as exc:
        locs = [e["loc"] for e in exc.errors()]
        assert any(loc[:1] == (at,) and name in loc for loc in locs), locs
    else:
        raise AssertionError(f"row {at} with {name}={rows[at][name]!r} was accepted")


@settings(FUZZ, max_examples=8)  # about 1 s per example (pandas pair rows)
@given(st.permutations(range(LAPS)), st.none() | st.integers(1, 200))
def test_prediction_requests_pass_the_service_schemas(order: list[int], total_laps: int | None) -> None:
    """The prediction app's requests for real feature rows arriving in any order (as a backlog
    across partitions can deliver them) are all accepted by the model services' row schemas."""
    from stratx.functions import prediction_requests as pr

    state, cache = pr.new_state(), pr.new_cache()
    context = {"EventName": "Las Vegas Grand Prix", "TotalLaps": total_laps}
    asked = 0
    for i in order:
        state, requests = pr.request_step(state, feature_rows()[i], context, cache)
        for key, rows in requests.items():
            rows_adapter(key).validate_json(json.dumps(rows))
            asked += len(rows)
    assert asked >= 3 * LAPS


@functools.cache
def sakhir_session() -> tuple[Any, list[dict[str, Any]]]:
    """The 2023 Bahrain GP on its bundled track map, and 300 position samples of car 1 from lights
    out (validated CarPosition dicts, in order)."""
    from stratx.functions.features import track_gaps as tg

    race = sources.load_bundled(REPO_ROOT / "data" / "races" / "2023_bahrain_grand_prix_race")
    track = tg.load_track_map(REPO_ROOT / "data" / "circuits", "Sakhir")
    assert track is not None
    session = tg.session_track(race, track)
    records = (
        r
        for r in ingest.table_records(race, "pos_data")
        if r.payload["DriverNumber"] == "1" and r.payload["SessionTime"] >= session.start_time
    )
    samples = [
        schemas.CarPosition.model_validate(r.payload).model_dump() for r in itertools.islice(records, 300)
    ]
    return session, samples


@settings(FUZZ, max_examples=30)
@given(st.data())
def test_progress_step_takes_any_position_in_range(data: st.DataObject) -> None:
    """Real samples with some positions redrawn anywhere in range (glitches, off the map, 0/0 = no
    fix) and some repeated or reordered: every output is a CarProgress point or a rejected item
    with a reason; nothing raises."""
    from stratx.functions.features import track_gaps as tg

    session, samples = sakhir_session()
    xy = st.integers(-100_000, 100_000)
    state: dict[str, Any] | None = None
    order = data.draw(st.lists(st.integers(0, len(samples) - 1), min_size=1, max_size=120).map(sorted))
    for i in order:
        sample = dict(samples[i])
        if data.draw(st.integers(0, 4)) == 0:
            sample["X"], sample["Y"] = data.draw(st.sampled_from([(0, 0)]) | st.tuples(xy, xy))
        state, items = tg.progress_step(state, sample, session)
        for item in items:
            if tg.is_rejected(item):
                assert str(item[tg.REJECTED]).strip()
            else:
                schemas.CarProgress.model_validate(item)
