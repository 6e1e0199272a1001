"""Telemetry-window features: the pure state machine, its offline build and the app's wiring.

Metrics are checked on real samples of the bundled 2023 Las Vegas GP (Verstappen, car 1): once
against numbers worked out by hand from the listed samples, and on several windows against an
independent NumPy/pandas computation from the source table. Boundary and brake-edge tests use a
few synthetic samples (labelled as such); no broker is needed (``sdf.test`` for the wiring).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from quixstreams import Application
from quixstreams.context import MessageContext
from quixstreams.models import Topic, TopicConfig

from stratx.functions import catalog, ingest, schemas
from stratx.functions.features import telemetry as tl
from stratx.functions.racedata import RaceData
from stratx.quix_apps import telemetry_features as app_mod

VER = "1"
FEED_INVALID = 104  # the car-data feed's "no valid value" code (Throttle, Brake)


def _samples(race: RaceData) -> list[dict[str, Any]]:
    out = []
    for record in tl.car_records(race):
        checked = ingest.validate(record)
        if not isinstance(checked, ingest.Rejected):
            out.append(checked.model_dump())
    return out


@pytest.fixture(scope="module")
def ver_race(las_vegas: RaceData) -> RaceData:
    return las_vegas.filter_drivers({"VER"})


@pytest.fixture(scope="module")
def ver_samples(ver_race: RaceData) -> list[dict[str, Any]]:
    return _samples(ver_race)


@pytest.fixture(scope="module")
def ver_windows(ver_race: RaceData) -> pd.DataFrame:
    return tl.offline_windows(ver_race)


def run(
    samples: list[dict[str, Any]], width_s: float = tl.WINDOW_WIDTH_S
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    state: dict[str, Any] | None = None
    items: list[dict[str, Any]] = []
    for sample in samples:
        state, out = tl.window_update(state, sample, width_s)
        items.extend(out)
    return state, items


def synthetic(seq: int, t: float, **fields: Any) -> dict[str, Any]:
    """A SYNTHETIC sample (not race data) for boundary and edge-case tests."""
    base = {
        "SessionKey": 1,
        "DriverNumber": "99",
        "Seq": seq,
        "SessionTime": t,
        "Date": None,
        "Speed": 200,
        "RPM": 10000,
        "nGear": 6,
        "Throttle": 100,
        "Brake": False,
        "DRS": 0,
    }
    return base | fields


def window_at(frame: pd.DataFrame, start: float) -> pd.Series:
    rows = frame[frame.WindowStart == start]
    assert len(rows) == 1
    return rows.iloc[0]


# ------------------------------------------------------------------ window boundaries
def test_tumbling_windows_close_on_the_first_sample_of_a_later_window() -> None:
    times = [0.0, 2.5, 4.999, 5.0, 9.99, 15.2, 16.0]  # nothing in [10, 15): no empty window
    state, items = None, []
    closed_by = {}
    for seq, t in enumerate(times):
        state, out = tl.window_update(state, synthetic(seq, t))
        for window in out:
            closed_by[window["WindowStart"]] = t
        items.extend(out)
    assert [(w["WindowStart"], w["WindowEnd"], w["Samples"]) for w in items] == [
        (0.0, 5.0, 3),
        (5.0, 10.0, 2),
    ]
    assert closed_by == {0.0: 5.0, 5.0: 15.2}
    [last] = tl.window_flush(state)
    assert (last["WindowStart"], last["WindowEnd"], last["Samples"]) == (15.0, 20.0, 2)
    assert tl.window_flush(None) == []


def test_window_width_is_a_parameter_and_fixed_per_state() -> None:
    state, items = run([synthetic(i, t) for i, t in enumerate([0.5, 1.2, 2.1, 3.9])], width_s=1.0)
    assert [w["WindowStart"] for w in items] == [0.0, 1.0, 2.0]
    assert state is not None
    with pytest.raises(ValueError, match="width"):
        tl.window_update(state, synthetic(9, 4.5), width_s=5.0)


def test_brake_events_carry_the_previous_brake_across_windows() -> None:
    brakes = [
        (0.0, False),
        (4.8, True),  # edge in window 0
        (5.1, True),  # still braking: no edge in window 1
        (6.0, False),
        (7.0, None),  # no valid value: skipped, the last valid Brake stays False
        (9.9, False),
        (10.2, True),  # edge at the first sample of window 2
        (11.0, None),
        (12.0, True),  # True -> None -> True: no new edge
    ]
    state, items = run([synthetic(i, t, Brake=b) for i, (t, b) in enumerate(brakes)])
    items += tl.window_flush(state)
    assert [w["BrakeEvents"] for w in items] == [1, 0, 1]
    assert [w["BrakeShare"] for w in items] == [0.5, 1 / 3, 1.0]  # None is not counted


def test_shares_are_none_without_valid_values() -> None:
    _, items = run([synthetic(0, 0.1, Throttle=None, Brake=None), synthetic(1, 5.1)])
    [window] = items
    assert window["ThrottleMean"] is None and window["FullThrottleShare"] is None
    assert window["BrakeShare"] is None and window["ThrottleBrakeOverlapShare"] is None
    assert window["SpeedStd"] is None  # one sample: no ddof=1 std
    assert window["Samples"] == 1 and window["DRSOpenShare"] == 0.0


# ------------------------------------------------------------------ metrics on real samples
def test_metrics_hand_checked_on_real_samples(ver_windows: pd.DataFrame, ver_race: RaceData) -> None:
    """VER, SessionTime [4095, 4100) s: a braking zone with a 5 -> 6 -> 4 gear sequence.

    The 17 samples (plus the one before, 4094.810 s: 198 km/h, 11671 rpm, gear 4, brake off):
      t        Speed  RPM    nGear Throttle Brake
      4095.090  209  10673   5    100      0
      4095.370  218  11209   5    100      0
      4095.610  224  11557   5    100      0
      4096.610  230  10297   6     26    100
      4096.970  227  10152   6     72      0
      4097.130  228  10288   6     79      0
      4097.290  231  10418   6     82      0
      4097.571  234  10555   6     84      0
      4097.731  236  10161   6     61    100
      4097.931  236  10241   6      0    100
      4098.211  225  10016   6      0      0
      4098.411  223  10016   6      0      0
      4098.651  223  10016   6      0      0
      4098.891  215  10016   6      0      0
      4099.091  215  10156   6    104      0   (Throttle 104 = no valid value)
      4099.371  170   9904   6      0    100
      4099.731  145   9846   4      0    100
    """
    car = ver_race.table("car_data")
    listed = car[(car.SessionTime >= 4095) & (car.SessionTime < 4100)]
    assert listed.Speed.tolist()[:3] == [209, 218, 224] and listed.Throttle.tolist()[14] == FEED_INVALID

    w = window_at(ver_windows, 4095.0)
    assert w.Samples == 17
    assert w.SpeedMean == pytest.approx(3689 / 17)  # 209 + 218 + ... + 145 = 3689 -> 217.0
    assert (w.SpeedMin, w.SpeedMax, w.RPMMax, w.MaxGear) == (145, 236, 11557, 6)
    assert w.ThrottleMean == pytest.approx(704 / 16)  # 16 valid throttles sum to 704
    assert w.FullThrottleShare == pytest.approx(3 / 16)
    assert w.BrakeShare == pytest.approx(5 / 17)
    assert w.ThrottleBrakeOverlapShare == pytest.approx(2 / 16)  # (26, on) and (61, on)
    assert w.BrakeEvents == 3  # on at 4096.610, 4097.731, 4099.371
    # braking at both ends: 236 -> 236 over 0.200 s and 170 -> 145 over 0.360 s
    assert w.DecelMean == pytest.approx((0 / 0.2 + 25 / 0.36) / 2)
    assert w.GearChanges == 3  # 4 -> 5 across the window start, 5 -> 6, 6 -> 4
    assert w.UpshiftRPMMean == pytest.approx((11671 + 11557) / 2)
    assert w.DRSOpenShare == 0.0
    t0 = ver_race.meta.t0_date
    assert t0 is not None
    assert w.Date == t0 + pd.Timedelta(seconds=4100)


def expected_window(car: pd.DataFrame, start: float, width: float = 5.0) -> dict[str, Any]:
    """One window's metrics from the raw car_data table, computed independently with NumPy."""
    car = car[car.nGear <= 8].sort_values("SessionTime", kind="mergesort")  # the schema rejects nGear > 8
    t = car.SessionTime.to_numpy(float)
    speed, rpm, gear = (car[c].to_numpy(np.int64) for c in ("Speed", "RPM", "nGear"))
    thr, brk, drs = (car[c].to_numpy(np.int64) for c in ("Throttle", "Brake", "DRS"))
    brake_valid = pd.Series(np.where(brk == FEED_INVALID, np.nan, brk > 0))
    last_valid = brake_valid.shift(1).ffill().to_numpy()
    idx = np.flatnonzero((t >= start) & (t < start + width))
    pairs = idx[idx > 0]
    thr_ok = thr[idx] != FEED_INVALID
    brk_ok = brk[idx] != FEED_INVALID
    on = brk[idx] == 100
    both = thr_ok & brk_ok
    braking = (brk[pairs - 1] == 100) & (brk[pairs] == 100)
    dt = t[pairs] - t[pairs - 1]
    decel = ((speed[pairs - 1] - speed[pairs]) / dt)[braking & (dt > 0) & (dt <= 2.0)]
    up = (gear[pairs] > gear[pairs - 1]) & (gear[pairs - 1] >= 1)
    return {
        "Samples": len(idx),
        "SpeedMean": speed[idx].mean(),
        "SpeedStd": speed[idx].std(ddof=1),
        "SpeedMin": speed[idx].min(),
        "SpeedMax": speed[idx].max(),
        "RPMMean": rpm[idx].mean(),
        "RPMMax": rpm[idx].max(),
        "ThrottleMean": thr[idx][thr_ok].mean(),
        "FullThrottleShare": (thr[idx][thr_ok] >= 98).mean(),
        "BrakeShare": on[brk_ok].mean(),
        "ThrottleBrakeOverlapShare": ((thr[idx] > 10) & on)[both].mean(),
        "BrakeEvents": int(np.sum(on & (last_valid[idx] == 0))),
        "DecelMean": decel.mean() if len(decel) else None,
        "GearChanges": int(np.sum(gear[pairs] != gear[pairs - 1])),
        "UpshiftRPMMean": rpm[pairs - 1][up].mean() if up.any() else None,
        "DRSOpenShare": np.isin(drs[idx], [10, 12, 14]).mean(),
        "MaxGear": gear[idx].max(),
    }


@pytest.mark.parametrize(
    "start",
    [
        1670.0,  # slow running, brake on and off: 4 brake applications
        3000.0,  # flat out with DRS open
        3295.0,  # DRS open, top speed
        4095.0,  # braking zone with a Throttle sentinel
        5935.0,  # braking and gear changes
        100.0,  # on the grid before the start
    ],
)
def test_metrics_equal_an_independent_numpy_computation(
    ver_windows: pd.DataFrame, ver_race: RaceData, start: float
) -> None:
    got = window_at(ver_windows, start)
    for name, value in expected_window(ver_race.table("car_data"), start).items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            assert pd.isna(got[name]), name
        else:
            assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


# ------------------------------------------------------------------ duplicates, late, order
def test_duplicates_late_and_out_of_order_samples_are_reported(ver_samples: list[dict[str, Any]]) -> None:
    state, _ = run(ver_samples[:200])
    assert state is not None
    last = ver_samples[199]
    same, out = tl.window_update(state, last)
    assert same == state and len(out) == 1 and tl.is_rejected(out[0])
    assert out[0][tl.REJECTED].startswith("duplicate") and out[0]["Sample"] == last

    old = ver_samples[10]  # from a window closed long ago
    same, out = tl.window_update(state, old)
    assert same == state and out[0][tl.REJECTED].startswith("late")

    behind = dict(ver_samples[199], Seq=last["Seq"] + 1, SessionTime=last["SessionTime"] - 0.01)
    assert math.floor(behind["SessionTime"] / 5) == math.floor(last["SessionTime"] / 5)  # open window
    same, out = tl.window_update(state, behind)
    assert same == state and out[0][tl.REJECTED].startswith("out of order: SessionTime")
    stale = dict(ver_samples[198])  # redelivered: Seq behind the last, time in the open window
    assert math.floor(stale["SessionTime"] / 5) == math.floor(last["SessionTime"] / 5)
    same, out = tl.window_update(state, stale)
    assert same == state and out[0][tl.REJECTED].startswith("out of order: Seq")

    # the stream goes on as if the rejected samples had never arrived
    _, rest = run(ver_samples[:400])
    _, with_rejects = run([*ver_samples[:200], last, old, stale, *ver_samples[200:400]])
    assert [w for w in with_rejects if not tl.is_rejected(w)] == rest


def test_state_is_plain_json_and_survives_a_round_trip(ver_samples: list[dict[str, Any]]) -> None:
    state: dict[str, Any] | None = None
    items: list[dict[str, Any]] = []
    for sample in ver_samples[:3000]:
        state, out = tl.window_update(state, sample)
        restored = json.loads(json.dumps(state))
        assert restored == state
        state = restored  # continue from the serialized copy, as Quix state does
        items.extend(out)
    _, direct = run(ver_samples[:3000])
    assert items == direct
    assert len(json.dumps(state)) < 1024  # running sums only: the state stays small


def test_the_input_state_is_not_mutated(ver_samples: list[dict[str, Any]]) -> None:
    state, _ = run(ver_samples[:50])
    before = json.dumps(state)
    tl.window_update(state, ver_samples[50])
    tl.window_update(state, ver_samples[120])  # closes a window
    assert json.dumps(state) == before


# ------------------------------------------------------------------ offline build
@pytest.fixture(scope="module")
def three_drivers(las_vegas: RaceData) -> RaceData:
    return las_vegas.filter_drivers({"VER", "ALO", "BOT"})  # ALO and BOT have nGear glitches


def test_offline_windows_cover_the_race(three_drivers: RaceData) -> None:
    frame = tl.offline_windows(three_drivers)
    car = three_drivers.table("car_data")
    assert frame.attrs["rejected"] == int((car.nGear > 8).sum()) > 0  # the schema rule of ingestion
    for number, windows in frame.groupby("DriverNumber"):
        times = car.loc[(car.DriverNumber == number) & (car.nGear <= 8), "SessionTime"]
        assert abs(len(windows) - (times.max() - times.min()) / 5) <= 2  # ~ race duration / 5 s
        assert len(windows) == (times // 5).nunique()  # one window per 5 s bin that has samples
        assert windows.WindowStart.is_monotonic_increasing and windows.WindowStart.is_unique
        assert (windows.WindowEnd - windows.WindowStart == 5.0).all()
        valid = int(((car.DriverNumber == number) & (car.nGear <= 8)).sum())
        assert windows.Samples.sum() == valid
    assert set(frame.columns) == set(tl.TelemetryWindow.model_fields)
    assert frame.Date.notna().all() and str(frame.Date.dtype) == "datetime64[ns, UTC]"


def test_every_window_fits_the_schema(three_drivers: RaceData) -> None:
    for number in ("1", "14", "77"):
        state, items = run(_samples(three_drivers.filter_drivers({number})))
        for window in [*items, *tl.window_flush(state)]:
            assert tl.TelemetryWindow.model_validate(window).DriverNumber == number


def test_offline_inputs_agree(ver_race: RaceData, ver_windows: pd.DataFrame) -> None:
    records = list(tl.car_records(ver_race))
    payloads = pd.DataFrame([r.payload for r in records])
    shuffled = [r.payload for r in records]
    shuffled.reverse()  # the offline build sorts per driver by SessionTime
    for other in (tl.offline_windows(records), tl.offline_windows(payloads), tl.offline_windows(shuffled)):
        pd.testing.assert_frame_equal(other, ver_windows)


# ------------------------------------------------------------------ the app's dataframe (no broker)
@pytest.fixture
def wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
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
    topics = []
    for name in (catalog.CAR_TELEMETRY.name, catalog.TELEMETRY_WINDOW.name, catalog.DEAD_LETTER.name):
        topic = Topic(name, create_config=config, key_deserializer="str", key_serializer="str")
        topic.broker_config = config
        topics.append(topic)
    sdf = app_mod.build_pipeline(app.dataframe(topics[0]), topics[1], topics[2])
    context = sdf.processing_context
    context.state_manager.on_partition_assign(stream_id=sdf.stream_id, partition=0, committed_offsets={})
    context.init_checkpoint()
    produced: list[dict[str, Any]] = []
    monkeypatch.setattr(context.producer, "produce", lambda **kw: produced.append(kw))
    yield sdf, produced
    context.state_manager.close()


def test_app_routes_windows_and_dead_letters(
    wired: tuple[Any, list[dict[str, Any]]], ver_race: RaceData
) -> None:
    sdf, produced = wired
    records = list(tl.car_records(ver_race))[:600]
    ctx = MessageContext(topic=catalog.CAR_TELEMETRY.name, partition=0, offset=0, size=0)
    inputs = [orjson.loads(ingest.encode(r)) for r in records]  # bytes as the replay sends them
    injected = dict(inputs[300], nGear=9)  # INJECTED fault: a gear-glitch sample
    stream = [*inputs[:300], inputs[299], injected, inputs[5], *inputs[300:]]
    for value in stream:
        sdf.test(value, key=f"{value['SessionKey']}:{value['DriverNumber']}", timestamp=1, ctx=ctx)

    windows = [m for m in produced if m["topic"] == catalog.TELEMETRY_WINDOW.name]
    letters = [m for m in produced if m["topic"] == catalog.DEAD_LETTER.name]
    expected = tl.offline_windows(records)
    streamed = tl.windows_frame(orjson.loads(m["value"]) for m in windows)
    pd.testing.assert_frame_equal(streamed, expected.iloc[:-1])  # the last window is still open
    for message, date in zip(windows, expected.Date, strict=False):
        assert message["key"] == f"{ver_race.meta.session_key}:{VER}".encode()
        assert message["timestamp"] == date.value // 1_000_000  # window end Date, ms

    reasons = [schemas.DeadLetter.model_validate_json(m["value"]) for m in letters]
    assert [r.Reason.split(":")[0] for r in reasons] == ["duplicate", "CarTelemetry schema", "late"]
    assert all(
        r.Stage == "telemetry_features" and r.SourceTopic == catalog.CAR_TELEMETRY.name for r in reasons
    )
    assert json.loads(reasons[1].Payload)["nGear"] == 9
    assert all(m["key"] == f"{ver_race.meta.session_key}:{VER}".encode() for m in letters)


def test_window_timestamp_is_the_window_end_in_ms() -> None:
    date = datetime(2023, 11, 19, 6, 58, 22, 344000, tzinfo=UTC)
    window = {"Date": date.isoformat()}
    assert app_mod.window_timestamp(window, None, 7, None) == 1700377102344
    assert app_mod.window_timestamp({"Date": None}, None, 7, None) == 7
    later = date + timedelta(microseconds=999)
    assert app_mod.window_timestamp({"Date": later.isoformat()}, None, 7, None) == 1700377102344


def test_topic_spec_follows_the_catalog_rules() -> None:
    spec = catalog.TELEMETRY_WINDOW
    assert spec.name == "stratx.features.telemetry_window" and spec.partitions == 6
    assert spec.key is catalog.KeyRule.SESSION_DRIVER and spec.retention_ms == 7 * catalog.DAY_MS
    assert spec.schema is tl.TelemetryWindow and spec.config()["retention.ms"] == str(7 * catalog.DAY_MS)
    assert catalog.message_key(spec, 9189, "1") == "9189:1"
    assert spec in app_mod.TOPICS and all(t in app_mod.TOPICS for t in catalog.ALL_TOPICS)
