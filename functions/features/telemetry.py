"""Telemetry-window features: per-driver tumbling windows over car-data samples.

One pure state machine, :func:`window_update`, runs both on the stream (Quix state holds its
JSON state per ``<SessionKey>:<DriverNumber>`` key) and offline (:func:`offline_windows` loops
over a race per driver in SessionTime order), so online and offline windows are equal by
construction. Windows are tumbling and aligned to ``floor(SessionTime / width_s)``; a window is
closed (emitted) by the first sample of a later window, or by :func:`window_flush` at the end.

Input samples are :class:`schemas.CarTelemetry` payloads as dicts (``model_dump()``): Speed km/h,
RPM 1/min, nGear 0-8, Throttle 0-100 % or None, Brake bool or None, DRS raw code, SessionTime s,
Date UTC (datetime or ISO text) or None.

Metrics of a closed window (``n`` = samples in the window; a *pair* is two consecutive samples of
the driver, the later one in the window, so pairs cross window boundaries):

=========================  =====  ==================================================================
field                      unit   definition
=========================  =====  ==================================================================
WindowStart, WindowEnd     s      SessionTime bounds, ``[k * width, (k + 1) * width)``
Date                       UTC    Date at WindowEnd (from the samples' Date - SessionTime); None
                                  when the window's samples carry no Date
Samples                    1      n
SpeedMean/Std/Min/Max      km/h   over the n samples; Std with ddof=1, None if n < 2
RPMMean, RPMMax            1/min  over the n samples
ThrottleMean               %      mean Throttle over samples with a valid Throttle; None if none
FullThrottleShare          0-1    share of valid-Throttle samples with Throttle >= 98
BrakeShare                 0-1    share of valid-Brake samples with Brake on
ThrottleBrakeOverlapShare  0-1    share of samples with both valid where Throttle > 10 and Brake on
BrakeEvents                1      rising edges of Brake (off -> on) in the window; the previous valid
                                  Brake is carried across windows; samples with Brake None are skipped
DecelMean                  km/h/s mean of (Speed_prev - Speed) / dt over pairs braking at both ends
                                  with 0 < dt <= 2 s; None if no such pair
GearChanges                1      pairs whose nGear differs
UpshiftRPMMean             1/min  mean RPM of the earlier sample over pairs that shift up from a
                                  driving gear (nGear_prev >= 1); None if none
DRSOpenShare               0-1    share of samples with DRS open (codes 10, 12, 14)
MaxGear                    1      highest nGear in the window
=========================  =====  ==================================================================

Shares with no valid sample are None. Sums are kept as integers where the inputs are integers,
so the state stays small and exact.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from stratx.functions import catalog, ingest
from stratx.functions.features.frames import typed_frame
from stratx.functions.racedata import RaceData
from stratx.functions.schemas import TelemetryWindow

WINDOW_WIDTH_S = 5.0
FULL_THROTTLE = 98  # % pedal: at or above counts as full throttle
OVERLAP_THROTTLE = 10  # % pedal: above this while braking counts as overlap
DRS_OPEN = frozenset({10, 12, 14})  # raw feed codes of an open flap
DECEL_MAX_GAP_S = 2.0  # longer gaps between samples are not a deceleration measurement
STATE_VERSION = 1
REJECTED = "Rejected"  # key that marks a rejected-sample item in window_update's output

WINDOW_FIELDS: tuple[str, ...] = tuple(TelemetryWindow.model_fields)


def is_rejected(item: Mapping[str, Any]) -> bool:
    """True for a rejected-sample item of :func:`window_update` (``{"Rejected": reason, "Sample": ...}``)."""
    return REJECTED in item


def _new_state(width_s: float) -> dict[str, Any]:
    return {
        "v": STATE_VERSION,
        "width": width_s,
        "last_seq": None,  # Seq of the last accepted sample
        "last_time": None,  # SessionTime of the last accepted sample, s
        "prev": None,  # last accepted sample: [SessionTime, Speed, RPM, nGear, Brake]
        "last_brake": None,  # last valid Brake (bool), for rising edges
        "t0": None,  # ISO UTC time of SessionTime 0, from the first dated sample
        "win": None,  # accumulators of the open window
    }


def _new_window(k: int, sample: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "k": k,
        "sk": sample["SessionKey"],
        "dn": sample["DriverNumber"],
        "dated": False,
        "n": 0,
        "spd_s": 0,
        "spd_ss": 0,
        "spd_min": None,
        "spd_max": None,
        "rpm_s": 0,
        "rpm_max": 0,
        "thr_n": 0,
        "thr_s": 0,
        "thr_full": 0,
        "brk_n": 0,
        "brk_on": 0,
        "ovl_n": 0,
        "ovl_on": 0,
        "brk_events": 0,
        "dec_n": 0,
        "dec_s": 0.0,
        "gear_chg": 0,
        "up_n": 0,
        "up_rpm_s": 0,
        "drs_open": 0,
        "gear_max": 0,
    }


def _as_datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _reject(reason: str, sample: Mapping[str, Any]) -> dict[str, Any]:
    return {REJECTED: reason, "Sample": dict(sample)}


def _check_order(state: dict[str, Any], seq: int, t: float, k: int) -> str | None:
    """Why the sample cannot enter the state (duplicate, late, out of order), or None."""
    last_seq, last_time, win = state["last_seq"], state["last_time"], state["win"]
    if last_seq is not None and seq == last_seq:
        return f"duplicate: Seq {seq} was already processed"
    if win is not None and k < win["k"]:
        start = win["k"] * state["width"]
        return (
            f"late: SessionTime {t:.3f} s is before the open window [{start:g}, {start + state['width']:g}) s"
        )
    if last_seq is not None and seq < last_seq:
        return f"out of order: Seq {seq} after Seq {last_seq}"
    if last_time is not None and t < last_time:
        return f"out of order: SessionTime {t:.3f} s after {last_time:.3f} s"
    return None


def window_update(
    state: dict[str, Any] | None, sample: Mapping[str, Any], width_s: float = WINDOW_WIDTH_S
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Add one sample of one driver; returns the new state and the items this sample produced.

    Items are the window closed by this sample (a :class:`TelemetryWindow` record as a dict, Date
    as ISO text) or, for a sample that cannot be added, one rejected item
    ``{"Rejected": reason, "Sample": sample}`` (see :func:`is_rejected`): an exact duplicate (Seq of
    the last accepted sample), a late sample (before the open window) or one out of order (Seq or
    SessionTime behind the last accepted sample). A rejected sample leaves the state unchanged.
    ``state`` is a plain JSON-serializable dict (None to start); the input state is not mutated.
    """
    if state is None:
        state = _new_state(width_s)
    elif state["width"] != width_s:
        raise ValueError(f"window width {width_s} s differs from the state's {state['width']} s")
    seq, t = int(sample["Seq"]), float(sample["SessionTime"])
    k = math.floor(t / width_s)
    reason = _check_order(state, seq, t, k)
    if reason is not None:
        return state, [_reject(reason, sample)]

    state = dict(state)
    closed: list[dict[str, Any]] = []
    win = state["win"]
    if win is not None and k > win["k"]:
        closed.append(_close(win, state))
        win = None
    win = dict(win) if win is not None else _new_window(k, sample)

    date = sample.get("Date")
    if date is not None:
        win["dated"] = True
        if state["t0"] is None:
            state["t0"] = (_as_datetime(date) - timedelta(seconds=t)).isoformat()

    _accumulate(win, state, sample, t)
    state["win"] = win
    state["last_seq"], state["last_time"] = seq, t
    return state, closed


def _accumulate(win: dict[str, Any], state: dict[str, Any], sample: Mapping[str, Any], t: float) -> None:
    # runs once per car sample: plain comparisons instead of min() / max() and bool sums (same values)
    speed, rpm, gear = int(sample["Speed"]), int(sample["RPM"]), int(sample["nGear"])
    throttle, brake = sample.get("Throttle"), sample.get("Brake")
    win["n"] += 1
    win["spd_s"] += speed
    win["spd_ss"] += speed * speed
    low, high = win["spd_min"], win["spd_max"]
    if low is None or speed < low:
        win["spd_min"] = speed
    if high is None or speed > high:
        win["spd_max"] = speed
    win["rpm_s"] += rpm
    if rpm > win["rpm_max"]:
        win["rpm_max"] = rpm
    if gear > win["gear_max"]:
        win["gear_max"] = gear
    if int(sample["DRS"]) in DRS_OPEN:
        win["drs_open"] += 1
    if throttle is not None:
        win["thr_n"] += 1
        win["thr_s"] += int(throttle)
        if throttle >= FULL_THROTTLE:
            win["thr_full"] += 1
    if brake is not None:
        win["brk_n"] += 1
        if brake:
            win["brk_on"] += 1
            if state["last_brake"] is False:
                win["brk_events"] += 1
        state["last_brake"] = bool(brake)
        if throttle is not None:
            win["ovl_n"] += 1
            if brake and throttle > OVERLAP_THROTTLE:
                win["ovl_on"] += 1

    prev = state["prev"]
    if prev is not None:
        p_time, p_speed, p_rpm, p_gear, p_brake = prev
        dt = t - p_time
        if p_brake and brake and 0 < dt <= DECEL_MAX_GAP_S:
            win["dec_n"] += 1
            win["dec_s"] += (p_speed - speed) / dt
        if gear != p_gear:
            win["gear_chg"] += 1
            if gear > p_gear >= 1:
                win["up_n"] += 1
                win["up_rpm_s"] += p_rpm
    state["prev"] = [t, speed, rpm, gear, None if brake is None else bool(brake)]


def _ratio(num: float, den: int) -> float | None:
    return num / den if den else None


def _close(win: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, Any]:
    """The TelemetryWindow record of an accumulated window."""
    n, s, ss = win["n"], win["spd_s"], win["spd_ss"]
    width = state["width"]
    start, end = win["k"] * width, (win["k"] + 1) * width
    date = None
    if win["dated"] and state["t0"] is not None:
        date = (datetime.fromisoformat(state["t0"]) + timedelta(seconds=end)).isoformat()
    return {
        "v": 1,
        "SessionKey": win["sk"],
        "DriverNumber": win["dn"],
        "WindowStart": start,
        "WindowEnd": end,
        "Date": date,
        "Samples": n,
        "SpeedMean": s / n,
        "SpeedStd": math.sqrt(max(n * ss - s * s, 0) / (n * (n - 1))) if n >= 2 else None,
        "SpeedMin": win["spd_min"],
        "SpeedMax": win["spd_max"],
        "RPMMean": win["rpm_s"] / n,
        "RPMMax": win["rpm_max"],
        "ThrottleMean": _ratio(win["thr_s"], win["thr_n"]),
        "FullThrottleShare": _ratio(win["thr_full"], win["thr_n"]),
        "BrakeShare": _ratio(win["brk_on"], win["brk_n"]),
        "ThrottleBrakeOverlapShare": _ratio(win["ovl_on"], win["ovl_n"]),
        "BrakeEvents": win["brk_events"],
        "DecelMean": _ratio(win["dec_s"], win["dec_n"]),
        "GearChanges": win["gear_chg"],
        "UpshiftRPMMean": _ratio(win["up_rpm_s"], win["up_n"]),
        "DRSOpenShare": win["drs_open"] / n,
        "MaxGear": win["gear_max"],
    }


def window_flush(state: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The still-open window as a record (end of stream), or nothing."""
    if state is None or state["win"] is None:
        return []
    return [_close(state["win"], state)]


def car_records(race: RaceData) -> Iterator[ingest.RawRecord]:
    """The race's car-telemetry records as ingestion builds them (sentinels mapped, not validated).

    Seq numbers count car samples only; the windows do not depend on them beyond their order.
    """
    cars = RaceData(race.meta, {"car_data": race.table("car_data"), "drivers": race.table("drivers")})
    for record in ingest.iter_records(cars):
        if record.topic.name == catalog.CAR_TELEMETRY.name:
            yield record


def _samples(car_samples: pd.DataFrame | Iterable[Mapping[str, Any] | ingest.RawRecord]) -> Iterator[Any]:
    if isinstance(car_samples, pd.DataFrame):
        frame = car_samples.astype(object).where(car_samples.notna(), None)
        yield from frame.to_dict("records")
    else:
        yield from car_samples


def offline_windows(
    car_samples: RaceData | pd.DataFrame | Iterable[Mapping[str, Any] | ingest.RawRecord],
    width_s: float = WINDOW_WIDTH_S,
) -> pd.DataFrame:
    """Every window of a race, the final open window of each driver included, as a DataFrame.

    Accepts a :class:`RaceData` (its car_data through :func:`car_records`), ingestion records, or
    CarTelemetry payloads (dicts or a DataFrame with the schema's columns). Each sample is
    validated with :func:`ingest.validate` (the rule the stream applies; rejected ones are
    skipped here and dead-lettered there), then fed per driver in (SessionTime, Seq) order
    through :func:`window_update`. Rejected counts are in ``df.attrs["rejected"]``.
    """
    source = car_records(car_samples) if isinstance(car_samples, RaceData) else _samples(car_samples)
    per_driver: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    rejected = 0
    for item in source:
        record = (
            item
            if isinstance(item, ingest.RawRecord)
            else ingest.RawRecord(catalog.CAR_TELEMETRY, "", dict(item))
        )
        checked = ingest.validate(record)
        if isinstance(checked, ingest.Rejected):
            rejected += 1
            continue
        sample = checked.model_dump()
        per_driver[(sample["SessionKey"], sample["DriverNumber"])].append(sample)
    rows: list[dict[str, Any]] = []
    for key in sorted(per_driver):
        state: dict[str, Any] | None = None
        for sample in sorted(per_driver[key], key=lambda s: (s["SessionTime"], s["Seq"])):
            state, items = window_update(state, sample, width_s)
            for window in items:
                if is_rejected(window):
                    rejected += 1
                else:
                    rows.append(window)
        rows.extend(window_flush(state))
    return windows_frame(rows, rejected)


def windows_frame(rows: Iterable[Mapping[str, Any]], rejected: int = 0) -> pd.DataFrame:
    """Window records as a typed DataFrame (None -> NaN, Date -> datetime64 UTC)."""
    return typed_frame(rows, TelemetryWindow, rejected=rejected)
