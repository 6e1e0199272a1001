"""Lap aggression: the pure state machine, its offline build and the app's wiring (no broker).

Metrics are checked on real windows and lap features of the bundled 2023 Las Vegas GP
(Verstappen, car 1): lap 3 against counts taken by hand from the raw car samples, and every lap
against an independent pandas computation from the windows. Boundary, weighting and duplicate
cases use a few synthetic records (labelled as such).
"""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from quixstreams import Application
from quixstreams.context import MessageContext
from quixstreams.models import Topic, TopicConfig

from stratx.bentos.lifecycle.feature_build import lap_feature_rows
from stratx.functions import catalog, ingest, schemas
from stratx.functions.features import aggression as ag
from stratx.functions.features import telemetry as tl
from stratx.functions.racedata import RaceData
from stratx.quix_apps import lap_aggression as app_mod

VER = "1"


def window_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Offline windows as the telemetry topic carries them (JSON mode, None for missing)."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [schemas.TelemetryWindow.model_validate(r).model_dump(mode="json") for r in rows]


@pytest.fixture(scope="module")
def ver_race(las_vegas: RaceData) -> RaceData:
    return las_vegas.filter_drivers({"VER"})


@pytest.fixture(scope="module")
def ver_windows(ver_race: RaceData) -> pd.DataFrame:
    return tl.offline_windows(ver_race)


@pytest.fixture(scope="module")
def ver_window_records(ver_windows: pd.DataFrame) -> list[dict[str, Any]]:
    return window_records(ver_windows)


@pytest.fixture(scope="module")
def ver_laps(ver_race: RaceData) -> list[dict[str, Any]]:
    rows, rejected = lap_feature_rows(ver_race)
    assert rejected == []
    return rows


@pytest.fixture(scope="module")
def ver_offline(ver_window_records: list[dict[str, Any]], ver_laps: list[dict[str, Any]]) -> pd.DataFrame:
    return ag.offline_lap_aggression(ver_window_records, ver_laps)


def run(items: list[dict[str, Any]], json_state: bool = False) -> tuple[dict[str, Any] | None, list, list]:
    """Feed ``items`` in this order; returns (state, lap records, rejected items)."""
    state: dict[str, Any] | None = None
    laps, rejected = [], []
    for item in items:
        state, out = ag.aggression_step(state, item)
        if json_state:  # what Quix state does between messages
            state = json.loads(json.dumps(state))
        laps += [x for x in out if not ag.is_rejected(x)]
        rejected += [x for x in out if ag.is_rejected(x)]
    return state, laps, rejected


def interleave(a: list[Any], b: list[Any], rng: random.Random) -> list[Any]:
    """A random merge of two streams that keeps each stream's own order (as two topics do)."""
    labels = [0] * len(a) + [1] * len(b)
    rng.shuffle(labels)
    its = (iter(a), iter(b))
    return [next(its[label]) for label in labels]


def window(start: float, samples: int = 10, **fields: Any) -> dict[str, Any]:
    """A SYNTHETIC window record (not race data)."""
    base = {
        "SessionKey": 1,
        "DriverNumber": "99",
        "WindowStart": start,
        "WindowEnd": start + 5.0,
        "Samples": samples,
        "ThrottleMean": 50.0,
        "FullThrottleShare": 0.5,
        "BrakeShare": 0.2,
        "ThrottleBrakeOverlapShare": 0.0,
        "DRSOpenShare": 0.0,
        "DecelMean": None,
        "UpshiftRPMMean": None,
        "BrakeEvents": 1,
        "GearChanges": 2,
        "SpeedMax": 300,
    }
    return base | fields


def lap(n: int, end: float, lap_time: float | None = None) -> dict[str, Any]:
    """A SYNTHETIC LapFeatures-like record (only the fields the state machine reads)."""
    return {
        "SessionKey": 1,
        "DriverNumber": "99",
        "LapNumber": n,
        "SessionTime": end,
        "Date": None,
        "LapTime": lap_time,
    }


# ------------------------------------------------------------------ lap intervals and finalization
def test_a_lap_is_finalized_only_when_the_telemetry_has_passed_its_end() -> None:
    state, out = ag.aggression_step(None, lap(1, 100.0))  # no LapTime: no start, no record
    assert out == [] and ag.pending_laps(state) == []
    state, out = ag.aggression_step(state, lap(2, 112.0))  # [100, 112)
    assert out == [] and ag.pending_laps(state) == [2]
    for start in (95.0, 100.0, 105.0):  # midpoints 97.5 (lap 1), 102.5, 107.5
        state, out = ag.aggression_step(state, window(start))
        assert out == []
    state, out = ag.aggression_step(state, window(110.0))  # midpoint 112.5: lap 3, but starts < 112
    assert out == []
    state, out = ag.aggression_step(state, window(115.0))  # WindowStart >= 112: telemetry passed
    [record] = out
    assert (record["LapNumber"], record["LapStartTime"], record["SessionTime"]) == (2, 100.0, 112.0)
    assert record["Windows"] == 2 and record["Samples"] == 20
    # a lap that arrives after the telemetry passed its end is finalized at once
    state, out = ag.aggression_step(state, lap(3, 114.0))
    assert [(r["LapNumber"], r["LapStartTime"], r["Windows"]) for r in out] == [(3, 112.0, 1)]
    assert ag.pending_laps(state) == []


def test_the_first_lap_starts_lap_time_before_its_end() -> None:
    items = [lap(7, 100.0, lap_time=12.0), window(85.0), window(90.0), window(95.0), window(100.0)]
    _, laps, _ = run(items)
    [record] = laps
    assert (record["LapNumber"], record["LapStartTime"], record["Windows"]) == (7, 88.0, 2)


def test_shares_are_weighted_by_samples_and_skip_missing_values() -> None:
    items = [
        lap(1, 0.0),
        window(0.0, samples=10, FullThrottleShare=0.5, DecelMean=20.0, SpeedMax=250, BrakeEvents=2),
        window(5.0, samples=30, FullThrottleShare=1.0, DecelMean=None, SpeedMax=310, BrakeEvents=0),
        window(10.0, samples=10, FullThrottleShare=None, DecelMean=40.0, SpeedMax=None, BrakeEvents=3),
        lap(2, 15.0),
        window(15.0),
    ]
    _, [record], _ = run(items)
    assert record["Windows"] == 3 and record["Samples"] == 50
    assert record["FullThrottleShare"] == (0.5 * 10 + 1.0 * 30) / 40  # 0.875: the None window is out
    assert record["DecelMean"] == (20.0 * 10 + 40.0 * 10) / 20  # 30.0
    assert record["UpshiftRPMMean"] is None  # no window has a value
    assert record["SpeedMax"] == 310 and record["BrakeEvents"] == 5 and record["GearChanges"] == 6
    assert ag.LapAggression.model_validate(record)


def test_a_lap_without_telemetry_has_no_metrics() -> None:
    _, [record], _ = run([lap(1, 0.0), lap(2, 90.0), window(200.0)])  # a telemetry gap
    assert (record["Windows"], record["Samples"], record["BrakeEvents"], record["GearChanges"]) == (
        0,
        0,
        0,
        0,
    )
    assert all(record[name] is None for name in (*ag.WEIGHTED, "SpeedMax"))
    assert ag.LapAggression.model_validate(record)


# ------------------------------------------------------------------ real laps
def test_lap_3_hand_checked_on_real_samples(ver_offline: pd.DataFrame, ver_race: RaceData) -> None:
    """VER lap 3: [1081.833, 1191.821) s, windows with midpoints inside start at 1080 ... 1185 s.

    The 22 windows cover SessionTime [1080, 1190) s. Counted from the raw car samples there (all
    416 with a valid Throttle and Brake, so the Samples weighting is exact): 188 at Throttle >= 98,
    84 braking, Throttle sum 24804, 4 with Throttle > 10 while braking, top speed 325 km/h, DRS
    never open; with the sample before (1079.641 s, gear 7, brake off): 9 brake applications and
    42 gear changes.
    """
    car = ver_race.table("car_data")
    raw = car[(car.SessionTime >= 1080) & (car.SessionTime < 1190)]
    assert len(raw) == 416 and (raw.Throttle >= 98).sum() == 188 and (raw.Brake > 0).sum() == 84
    assert raw.Throttle.sum() == 24804 and raw.Speed.max() == 325

    row = ver_offline[ver_offline.LapNumber == 3].iloc[0]
    assert (row.LapStartTime, row.SessionTime) == (1081.833, 1191.821)
    assert row.Date == pd.Timestamp("2023-11-19T06:09:54.165Z")
    assert (row.Windows, row.Samples) == (22, 416)
    assert row.FullThrottleShare == pytest.approx(188 / 416, rel=1e-12)
    assert row.BrakeShare == pytest.approx(84 / 416, rel=1e-12)
    assert row.ThrottleMean == pytest.approx(24804 / 416, rel=1e-12)
    assert row.ThrottleBrakeOverlapShare == pytest.approx(4 / 416, rel=1e-12)
    assert row.DRSOpenShare == 0.0
    assert (row.BrakeEvents, row.GearChanges, row.SpeedMax) == (9, 42, 325)


def test_every_lap_equals_an_independent_pandas_computation(
    ver_offline: pd.DataFrame, ver_windows: pd.DataFrame, ver_laps: list[dict[str, Any]]
) -> None:
    laps = pd.DataFrame(ver_laps)
    assert laps.LapNumber.min() == 1 and pd.isna(laps.LapTime.iloc[0])  # standing start: no LapTime
    assert ver_offline.LapNumber.tolist() == laps.LapNumber.tolist()[1:]  # lap 1 has no start
    assert ver_offline.attrs == {"rejected": 0, "pending": 0}
    mid = (ver_windows.WindowStart + ver_windows.WindowEnd) / 2
    starts = laps.SessionTime.shift(1)
    for (_, lap_row), start in zip(laps.iloc[1:].iterrows(), starts.iloc[1:], strict=True):
        got = ver_offline[ver_offline.LapNumber == lap_row.LapNumber].iloc[0]
        inside = ver_windows[(mid >= start) & (mid < lap_row.SessionTime)]
        assert got.LapStartTime == start and got.SessionTime == lap_row.SessionTime
        assert got.Windows == len(inside) and got.Samples == inside.Samples.sum()
        for name in ag.WEIGHTED:
            valid = inside[inside[name].notna()]
            want = (valid[name] * valid.Samples).sum() / valid.Samples.sum()
            assert got[name] == pytest.approx(want, rel=1e-12), (lap_row.LapNumber, name)
        for name in ag.SUMMED:
            assert got[name] == inside[name].sum()
        assert got.SpeedMax == inside.SpeedMax.max()
    # every window from the lap-2 start to the last lap end is in exactly one lap
    covered = (mid >= laps.SessionTime.iloc[0]) & (mid < laps.SessionTime.iloc[-1])
    assert ver_offline.Windows.sum() == covered.sum()


def test_real_laps_make_driving_sense(ver_offline: pd.DataFrame) -> None:
    green = ver_offline[ver_offline.Windows.between(19, 21)]  # ~ 97 to 105 s racing laps
    assert len(green) > 30
    assert green.FullThrottleShare.between(0.4, 0.8).all()  # Las Vegas: long full-throttle straights
    assert green.BrakeShare.between(0.1, 0.3).all() and (green.BrakeEvents >= 6).all()
    assert (green.SpeedMax > 300).all()
    assert ver_offline.DRSOpenShare.max() > 0  # DRS was used in the race
    for record in ver_offline.astype(object).where(ver_offline.notna(), None).to_dict("records"):
        assert ag.LapAggression.model_validate(record)


# ------------------------------------------------------------------ order independence
def test_the_result_does_not_depend_on_how_the_streams_interleave(
    ver_window_records: list[dict[str, Any]], ver_laps: list[dict[str, Any]], ver_offline: pd.DataFrame
) -> None:
    rng = random.Random(20231119)
    orders = [
        [*ver_laps, *ver_window_records],  # every lap before any window
        [*ver_window_records, *ver_laps],  # every window before any lap
        *(interleave(ver_window_records, ver_laps, rng) for _ in range(12)),
    ]
    first = None
    for i, items in enumerate(orders):
        state, laps, rejected = run(items, json_state=i == 2)  # one run through JSON state
        assert rejected == [] and ag.pending_laps(state) == []
        pd.testing.assert_frame_equal(ag.aggression_frame(laps), ver_offline, check_exact=True)
        assert [r["LapNumber"] for r in laps] == sorted(r["LapNumber"] for r in laps)
        first = first or laps
        assert laps == first  # the very same records, in the same order


def test_offline_inputs_agree(
    ver_windows: pd.DataFrame,
    ver_window_records: list[dict[str, Any]],
    ver_laps: list[dict[str, Any]],
    ver_offline: pd.DataFrame,
) -> None:
    reversed_laps = list(reversed(ver_laps))  # the offline build orders each stream itself
    for windows, laps in (
        (ver_windows, ver_laps),
        (list(reversed(ver_window_records)), reversed_laps),
        (ver_window_records, pd.DataFrame(ver_laps)),
    ):
        pd.testing.assert_frame_equal(ag.offline_lap_aggression(windows, laps), ver_offline)


def test_laps_the_telemetry_has_not_passed_stay_pending(
    ver_window_records: list[dict[str, Any]], ver_laps: list[dict[str, Any]], ver_offline: pd.DataFrame
) -> None:
    last_end = ver_laps[-1]["SessionTime"]
    cut = [w for w in ver_window_records if w["WindowStart"] < last_end]
    short = ag.offline_lap_aggression(cut, ver_laps)
    assert short.attrs == {"rejected": 0, "pending": 1}
    pd.testing.assert_frame_equal(short, ver_offline.iloc[:-1], check_exact=True)


def test_drivers_are_kept_apart(las_vegas: RaceData, ver_offline: pd.DataFrame) -> None:
    two = las_vegas.filter_drivers({"VER", "LEC"})
    laps, _ = lap_feature_rows(two)
    both = ag.offline_lap_aggression(tl.offline_windows(two), laps)
    assert set(both.DriverNumber) == {VER, "16"}
    ver = both[both.DriverNumber == VER].reset_index(drop=True)
    pd.testing.assert_frame_equal(ver, ver_offline, check_exact=True)


# ------------------------------------------------------------------ duplicates and the state
def test_duplicates_and_out_of_order_items_are_rejected(
    ver_window_records: list[dict[str, Any]], ver_laps: list[dict[str, Any]], ver_offline: pd.DataFrame
) -> None:
    w5, w4 = ver_window_records[500], ver_window_records[499]
    l5, l4 = ver_laps[5], ver_laps[4]
    extras = {id(w5): [w5, w4], id(l5): [l5, l4, {"SessionKey": 1}]}  # redelivered, late, unknown
    dirty = []
    for item in interleave(ver_window_records, ver_laps, random.Random(7)):
        dirty += [item, *extras.get(id(item), [])]
    _, laps, rejected = run(dirty)
    reasons = sorted(r[ag.REJECTED].split(":")[0] for r in rejected)
    assert reasons == [
        "duplicate",
        "duplicate",
        "neither a TelemetryWindow nor a LapFeatures record",
        "out of order",
        "out of order",
    ]
    pd.testing.assert_frame_equal(ag.aggression_frame(laps), ver_offline, check_exact=True)
    offline = ag.offline_lap_aggression([*ver_window_records, w5], [*ver_laps, l5])
    assert offline.attrs["rejected"] == 2
    pd.testing.assert_frame_equal(offline, ver_offline, check_exact=True)


def test_a_rejected_item_leaves_the_state_unchanged_and_input_state_is_not_mutated(
    ver_window_records: list[dict[str, Any]], ver_laps: list[dict[str, Any]]
) -> None:
    state: dict[str, Any] | None = None
    for item in interleave(ver_window_records[:300], ver_laps[:8], random.Random(3)):
        before = copy.deepcopy(state)
        new, _ = ag.aggression_step(state, item)
        assert state == before
        again, rejected = ag.aggression_step(new, item)
        assert again is new and len(rejected) == 1 and ag.is_rejected(rejected[0])
        state = new
    assert state is not None and len(state["windows"]) < 60  # the buffer keeps about one lap
    json.dumps(state)  # plain JSON for Quix state


def test_a_lap_that_ends_before_the_previous_one_is_rejected() -> None:
    _, _, rejected = run([lap(1, 100.0), lap(2, 99.0)])
    [item] = rejected
    assert item[ag.REJECTED].startswith("out of order: lap 2 ends at 99.000 s")
    assert item["Item"]["LapNumber"] == 2


# ------------------------------------------------------------------ the app's dataframe (no broker)
@pytest.fixture
def wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, dict, list]]:
    """The app's pipeline on a broker-less Application; produced messages are recorded."""
    app = Application(
        broker_address="127.0.0.1:9",
        consumer_group="unit",
        use_changelog_topics=False,
        auto_create_topics=False,
        state_dir=tmp_path,
        loglevel=logging.WARNING,
    )
    config = TopicConfig(num_partitions=1, replication_factor=1, extra_config={"retention.ms": "1000"})
    topics = {}
    for spec in (catalog.TELEMETRY_WINDOW, catalog.FEATURES_LAP, app_mod.LAP_AGGRESSION, catalog.DEAD_LETTER):
        topic = Topic(spec.name, create_config=config, key_deserializer="str", key_serializer="str")
        topic.broker_config = config
        topics[spec.name] = topic
    windows, laps = (
        app.dataframe(topics[catalog.TELEMETRY_WINDOW.name]),
        app.dataframe(topics[catalog.FEATURES_LAP.name]),
    )
    sdf = app_mod.build_pipeline(
        windows,
        laps,
        catalog.TELEMETRY_WINDOW,
        catalog.FEATURES_LAP,
        topics[app_mod.LAP_AGGRESSION.name],
        topics[catalog.DEAD_LETTER.name],
    )
    context = sdf.processing_context
    context.state_manager.on_partition_assign(stream_id=sdf.stream_id, partition=0, committed_offsets={})
    context.init_checkpoint()
    produced: list[dict[str, Any]] = []
    monkeypatch.setattr(context.producer, "produce", lambda **kw: produced.append(kw))
    yield sdf, topics, produced
    context.state_manager.close()


def test_app_routes_laps_and_dead_letters(
    wired: tuple[Any, dict, list],
    ver_window_records: list[dict[str, Any]],
    ver_laps: list[dict[str, Any]],
    ver_offline: pd.DataFrame,
) -> None:
    sdf, topics, produced = wired
    key = f"{ver_laps[0]['SessionKey']}:{VER}"
    stream = [
        (catalog.TELEMETRY_WINDOW.name, w) for w in ver_window_records[:-1]
    ]  # the final window stays open upstream
    lap_items = [(catalog.FEATURES_LAP.name, x) for x in ver_laps]
    stream = interleave(stream, lap_items, random.Random(11))
    bad_lap = dict(ver_laps[3], LapNumber=0)  # INJECTED fault: fails the LapFeatures schema
    injected = [
        (catalog.FEATURES_LAP.name, ver_laps[2]),  # redelivered lap
        (catalog.TELEMETRY_WINDOW.name, b"not json"),
        (catalog.FEATURES_LAP.name, bad_lap),
    ]
    at = stream.index((catalog.FEATURES_LAP.name, ver_laps[2])) + 1
    stream[at:at] = injected
    for offset, (topic, value) in enumerate(stream):
        ctx = MessageContext(topic=topic, partition=0, offset=offset, size=0)
        sdf.test(value, key=key, timestamp=1, ctx=ctx, topic=topics[topic])

    out = [m for m in produced if m["topic"] == app_mod.LAP_AGGRESSION.name]
    letters = [m for m in produced if m["topic"] == catalog.DEAD_LETTER.name]
    streamed = ag.aggression_frame(orjson.loads(m["value"]) for m in out)
    pd.testing.assert_frame_equal(streamed, ver_offline, check_exact=True)
    for message, date in zip(out, ver_offline.Date, strict=True):
        assert message["key"] == key.encode()
        assert message["timestamp"] == date.value // 1_000_000  # lap end Date, ms

    reasons = [schemas.DeadLetter.model_validate_json(m["value"]) for m in letters]
    assert [r.Reason.split(":")[0] for r in reasons] == ["duplicate", "not JSON", "LapFeatures schema"]
    assert [r.SourceTopic for r in reasons] == [
        catalog.FEATURES_LAP.name,
        catalog.TELEMETRY_WINDOW.name,
        catalog.FEATURES_LAP.name,
    ]
    assert all(r.Stage == "lap_aggression" and r.Key == key for r in reasons)
    assert json.loads(reasons[0].Payload)["LapNumber"] == ver_laps[2]["LapNumber"]


def test_lap_timestamp_is_the_lap_end_in_ms() -> None:
    date = datetime(2023, 11, 19, 6, 9, 54, 165000, tzinfo=UTC)
    assert app_mod.lap_timestamp({"Date": date.isoformat()}, None, 7, None) == 1700374194165
    assert app_mod.lap_timestamp({"Date": "2023-11-19T06:09:54.165000Z"}, None, 7, None) == 1700374194165
    assert app_mod.lap_timestamp({"Date": None}, None, 7, None) == 7


def test_topic_spec_follows_the_catalog_rules() -> None:
    spec = app_mod.LAP_AGGRESSION
    assert spec.name == "stratx.features.lap_aggression" and spec.schema is ag.LapAggression
    assert spec.key is catalog.KeyRule.SESSION_DRIVER and spec.retention_ms == 30 * catalog.DAY_MS
    assert spec.partitions == catalog.TELEMETRY_WINDOW.partitions
    assert spec.name not in catalog.BY_NAME or catalog.BY_NAME[spec.name] == spec


def test_lap_aggression_inputs_are_co_partitioned() -> None:
    assert catalog.FEATURES_LAP.partitions == catalog.TELEMETRY_WINDOW.partitions
    assert catalog.FEATURES_LAP.key is catalog.TELEMETRY_WINDOW.key is catalog.KeyRule.SESSION_DRIVER


def test_ingest_validates_both_inputs(ver_window_records: list[dict[str, Any]], ver_laps: list[dict]) -> None:
    """The app validates each input against its topic's schema before the state machine sees it."""
    for spec, value in (
        (catalog.TELEMETRY_WINDOW, ver_window_records[0]),
        (catalog.FEATURES_LAP, ver_laps[0]),
    ):
        out = app_mod.validated(value, "9189:1", spec)
        assert out == {"Record": value, "SourceTopic": spec.name}
        assert not isinstance(ingest.validate(ingest.RawRecord(spec, "9189:1", value)), ingest.Rejected)
