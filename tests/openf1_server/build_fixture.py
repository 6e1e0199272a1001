"""Rebuild ``tests/fixtures/openf1_session/`` from ``../shared/data`` (2023 Las Vegas GP race).

Usage (from the repo root)::

    .venv/bin/python -m tests.openf1_server.build_fixture [--shared /work/shared/data]

Every record written is real recorded data converted to OpenF1 field names; what was derived
(and how) is listed in ``tests/openf1_server/README.md`` and in ``MANIFEST.json``. The output is
deterministic: gzip headers carry no timestamp and records are sorted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import pickle
from collections.abc import Iterable
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "tests" / "fixtures" / "openf1_session"
DEFAULT_SHARED = REPO.parent / "shared" / "data"

SESSION_KEY = 9189
MEETING_KEY = 1225
YEAR = 2023
ROUND = 21
EVENT = "Las Vegas Grand Prix"
TELEMETRY_DRIVERS = (1, 11, 16, 55)
TELEMETRY_MINUTES = 30


def _none(v: Any) -> Any:
    """NaN/NA -> None, numpy scalars -> Python scalars."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):
        v = v.item()
        if isinstance(v, float) and math.isnan(v):
            return None
    return v


def _int(v: Any) -> int | None:
    v = _none(v)
    return None if v is None else int(v)


def _iso(ts: Any) -> str:
    """OpenF1 date style: ``2023-11-19T06:04:05.009000+00:00`` (no fraction on whole seconds)."""
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.to_pydatetime().isoformat()


def _rows(df: pd.DataFrame) -> Iterable[Any]:
    """``itertuples`` typed loosely (pandas-stubs types every cell as a union)."""
    return df.itertuples(index=False)


def _write(path: Path, records: Iterable[dict[str, Any]]) -> int:
    n = 0
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
        for rec in records:
            gz.write(json.dumps(rec, separators=(",", ":"), sort_keys=True).encode() + b"\n")
            n += 1
    return n


def build(shared: Path, out: Path = OUT_DIR) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    openf1 = shared / "openf1"
    tel = shared / "telemetry" / "2023_las_vegas"
    manifest: dict[str, Any] = {
        "session_key": SESSION_KEY,
        "meeting_key": MEETING_KEY,
        "event": f"{YEAR} {EVENT}, Race",
        "files": {},
    }

    # --- laps (full race, all drivers) -------------------------------------------------------
    laps = pd.read_parquet(openf1 / "laps_2023_2024.parquet")
    laps = laps[laps.session_key == SESSION_KEY].sort_values(["date_start", "driver_number"])
    lap_recs = []
    for r in _rows(laps):
        lap_recs.append(
            {
                "date_start": _iso(r.date_start),
                "driver_number": int(r.driver_number),
                "duration_sector_1": _none(r.duration_sector_1),
                "duration_sector_2": _none(r.duration_sector_2),
                "duration_sector_3": _none(r.duration_sector_3),
                "i1_speed": _int(r.i1_speed),
                "i2_speed": _int(r.i2_speed),
                "is_pit_out_lap": bool(r.is_pit_out_lap),
                "lap_duration": _none(r.lap_duration),
                "lap_number": int(r.lap_number),
                "meeting_key": int(r.meeting_key),
                "segments_sector_1": json.loads(r.segments_sector_1) if _none(r.segments_sector_1) else None,
                "segments_sector_2": json.loads(r.segments_sector_2) if _none(r.segments_sector_2) else None,
                "segments_sector_3": json.loads(r.segments_sector_3) if _none(r.segments_sector_3) else None,
                "session_key": int(r.session_key),
                "st_speed": _int(r.st_speed),
            }
        )
    lights_out = pd.Timestamp(laps[laps.lap_number == 1].date_start.min())
    manifest["lights_out"] = _iso(lights_out)
    manifest["files"]["laps"] = _write(out / "laps.jsonl.gz", lap_recs)

    # --- stints (full race) ------------------------------------------------------------------
    st = pd.read_parquet(openf1 / "stints_2023_2024.parquet")
    st = st[st.session_key == SESSION_KEY].sort_values(["driver_number", "stint_number"])
    stint_recs = [
        {
            "compound": _none(r.compound),
            "driver_number": int(r.driver_number),
            "lap_end": _int(r.lap_end),
            "lap_start": _int(r.lap_start),
            "meeting_key": int(r.meeting_key),
            "session_key": int(r.session_key),
            "stint_number": int(r.stint_number),
            "tyre_age_at_start": _int(r.tyre_age_at_start),
        }
        for r in _rows(st)
    ]
    manifest["files"]["stints"] = _write(out / "stints.jsonl.gz", stint_recs)

    # --- weather: OpenF1 file has no 9189 -> FastF1 weather (same live-timing WeatherData feed),
    # date = t0_date_estimate + session time (t0 from data/telemetry/t0_estimates.csv) ---------
    w_of1 = pd.read_parquet(openf1 / "weather_2023_2024.parquet")
    w_of1 = w_of1[w_of1.session_key == SESSION_KEY]
    if len(w_of1):
        raise SystemExit("OpenF1 weather for 9189 appeared in shared data: switch the builder to it")
    t0s = pd.read_csv(shared / "telemetry" / "t0_estimates.csv").set_index("session_key")
    t0 = pd.Timestamp(str(t0s.loc[SESSION_KEY, "t0_date_estimate"]))
    w = pd.read_parquet(shared / "fastf1_exports" / "weather.parquet")
    w = w[(w.Year == YEAR) & (w.RoundNumber == ROUND) & (w.SessionName == "Race")].sort_values("Time")
    weather_recs = [
        {
            "air_temperature": _none(r.AirTemp),
            "date": _iso((t0 + pd.Timedelta(seconds=float(r.Time))).round("ms")),
            "humidity": _none(r.Humidity),
            "meeting_key": MEETING_KEY,
            "pressure": _none(r.Pressure),
            "rainfall": int(bool(r.Rainfall)),
            "session_key": SESSION_KEY,
            "track_temperature": _none(r.TrackTemp),
            "wind_direction": _int(r.WindDirection),
            "wind_speed": _none(r.WindSpeed),
        }
        for r in _rows(w)
    ]
    manifest["files"]["weather"] = _write(out / "weather.jsonl.gz", weather_recs)
    manifest["t0_date_estimate"] = _iso(t0)

    # --- race_control: FastF1 race-control messages (same live-timing feed), Time is UTC -----
    rc = pd.read_parquet(shared / "fastf1_exports" / "race_control_messages.parquet")
    rc = rc[(rc.Year == YEAR) & (rc.RoundNumber == ROUND) & (rc.SessionName == "Race")].sort_values(
        "Time", kind="stable"
    )
    rc_recs = [
        {
            "category": _none(r.Category),
            "date": _iso(r.Time),
            "driver_number": _int(r.RacingNumber),
            "flag": _none(r.Flag),
            "lap_number": _int(r.Lap),
            "meeting_key": MEETING_KEY,
            "message": _none(r.Message),
            "qualifying_phase": None,
            "scope": _none(r.Scope),
            "sector": _int(r.Sector),
            "session_key": SESSION_KEY,
        }
        for r in _rows(rc)
    ]
    manifest["files"]["race_control"] = _write(out / "race_control.jsonl.gz", rc_recs)

    # --- sessions / meetings: FastF1 cache session_info.ff1pkl (live-timing SessionInfo) -----
    info_path = (
        shared
        / "fastf1_cache"
        / "2023"
        / "2023-11-18_Las_Vegas_Grand_Prix"
        / "2023-11-18_Race"
        / "session_info.ff1pkl"
    )
    with info_path.open("rb") as fh:
        info = pickle.load(fh)["data"]  # trusted local FastF1 cache file
    gmt: timedelta = info["GmtOffset"]
    start_utc = (info["StartDate"] - gmt).replace(tzinfo=UTC)
    end_utc = (info["EndDate"] - gmt).replace(tzinfo=UTC)
    sign = "-" if gmt < timedelta(0) else ""
    secs = abs(int(gmt.total_seconds()))
    gmt_str = f"{sign}{secs // 3600:02d}:{secs % 3600 // 60:02d}:00"
    m = info["Meeting"]
    common = {
        "circuit_key": m["Circuit"]["Key"],
        "circuit_short_name": m["Circuit"]["ShortName"],
        "country_code": m["Country"]["Code"],
        "country_key": m["Country"]["Key"],
        "country_name": m["Country"]["Name"],
        "gmt_offset": gmt_str,
        "location": m["Location"],
        "meeting_key": m["Key"],
        "year": YEAR,
    }
    session_rec = {
        **common,
        "date_end": end_utc.isoformat(),
        "date_start": start_utc.isoformat(),
        "is_cancelled": False,
        "session_key": info["Key"],
        "session_name": info["Name"],
        "session_type": info["Type"],
    }
    meeting_rec = {
        **common,
        # The cache holds only the race session: meeting date_start (FP1) is unknown offline,
        # so date_start/date_end are the race session's (documented in README).
        "date_end": end_utc.isoformat(),
        "date_start": start_utc.isoformat(),
        "is_cancelled": False,
        "meeting_name": m["Name"],
        "meeting_official_name": m["OfficialName"],
    }
    manifest["files"]["sessions"] = _write(out / "sessions.jsonl.gz", [session_rec])
    manifest["files"]["meetings"] = _write(out / "meetings.jsonl.gz", [meeting_rec])

    # --- drivers: FastF1 results (live-timing DriverList) ------------------------------------
    res = pd.read_parquet(shared / "fastf1_exports" / "results.parquet")
    res = res[(res.Year == YEAR) & (res.RoundNumber == ROUND) & (res.SessionName == "Race")]
    res = res.assign(num=res.DriverNumber.astype(int)).sort_values("num")
    driver_recs = [
        {
            "broadcast_name": r.BroadcastName,
            "driver_number": int(r.num),
            "first_name": r.FirstName,
            "full_name": f"{r.FirstName} {str(r.LastName).upper()}",
            "headshot_url": _none(r.HeadshotUrl) or None,
            "last_name": r.LastName,
            "meeting_key": MEETING_KEY,
            "name_acronym": r.Abbreviation,
            "session_key": SESSION_KEY,
            "team_colour": r.TeamColor,
            "team_name": r.TeamName,
        }
        for r in _rows(res)
    ]
    manifest["files"]["drivers"] = _write(out / "drivers.jsonl.gz", driver_recs)

    # --- car_data / location: 4 drivers, first 30 minutes after lights out -------------------
    lo = lights_out.tz_convert("UTC") if lights_out.tzinfo else lights_out.tz_localize("UTC")
    hi = lo + pd.Timedelta(minutes=TELEMETRY_MINUTES)
    manifest["telemetry_cut"] = {
        "drivers": list(TELEMETRY_DRIVERS),
        "date_from_inclusive": _iso(lo),
        "date_to_exclusive": _iso(hi),
    }
    car = pd.read_parquet(tel / "car_data.parquet")
    car = car[car.driver_number.isin(TELEMETRY_DRIVERS) & (car.date >= lo) & (car.date < hi)]
    car = car.sort_values(["date", "driver_number"], kind="stable")
    cols = ["brake", "driver_number", "drs", "n_gear", "rpm", "speed", "throttle"]
    car_recs = []
    for date, vals in zip(car.date, car[cols].itertuples(index=False), strict=True):
        rec: dict[str, Any] = {"date": _iso(date), "meeting_key": MEETING_KEY, "session_key": SESSION_KEY}
        rec.update({c: int(v) for c, v in zip(cols, vals, strict=True)})
        car_recs.append(dict(sorted(rec.items())))
    manifest["files"]["car_data"] = _write(out / "car_data.jsonl.gz", car_recs)

    loc = pd.read_parquet(tel / "location.parquet")
    loc = loc[loc.driver_number.isin(TELEMETRY_DRIVERS) & (loc.date >= lo) & (loc.date < hi)]
    loc = loc.sort_values(["date", "driver_number"], kind="stable")
    loc_recs = [
        {
            "date": _iso(d),
            "driver_number": int(n),
            "meeting_key": MEETING_KEY,
            "session_key": SESSION_KEY,
            "x": int(x),
            "y": int(y),
            "z": int(z),
        }
        for d, n, x, y, z in zip(loc.date, loc.driver_number, loc.x, loc.y, loc.z, strict=True)
    ]
    manifest["files"]["location"] = _write(out / "location.jsonl.gz", loc_recs)

    manifest["sources"] = {
        "laps": "shared/data/openf1/laps_2023_2024.parquet (OpenF1 /laps)",
        "stints": "shared/data/openf1/stints_2023_2024.parquet (OpenF1 /stints)",
        "car_data": "shared/data/telemetry/2023_las_vegas/car_data.parquet (OpenF1 /car_data)",
        "location": "shared/data/telemetry/2023_las_vegas/location.parquet (OpenF1 /location)",
        "weather": "DERIVED: shared/data/fastf1_exports/weather.parquet, date = t0_date_estimate + Time",
        "race_control": "DERIVED: shared/data/fastf1_exports/race_control_messages.parquet",
        "sessions": "DERIVED: fastf1_cache .../2023-11-18_Race/session_info.ff1pkl",
        "meetings": "DERIVED: same session_info; date_start/date_end are the race session's",
        "drivers": "DERIVED: shared/data/fastf1_exports/results.parquet; full_name = First + LAST",
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="path to shared/data")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args()
    manifest = build(args.shared, args.out)
    size = sum(p.stat().st_size for p in args.out.glob("*"))
    print(json.dumps(manifest["files"]), f"total {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
