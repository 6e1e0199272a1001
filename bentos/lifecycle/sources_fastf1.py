"""Load any FastF1 session (cached or downloadable) into :class:`RaceData`: strict event lookup,
laps, results, timing, race control, weather and car telemetry, each missing part listed.

Car telemetry comes from FastF1, or from OpenF1 recordings in ``telemetry_dir`` when FastF1 has
none. Re-exported by :mod:`stratx.bentos.lifecycle.sources`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pandas as pd

from stratx.bentos.lifecycle.sources_common import SourceError, session_name
from stratx.functions import clock
from stratx.functions.racedata import LAP_SECONDS_COLUMNS, TABLE_COLUMNS, RaceData, SessionMeta

log = logging.getLogger(__name__)


def _seconds(series: pd.Series) -> pd.Series:
    if pd.api.types.is_timedelta64_dtype(series):
        return series.dt.total_seconds()
    return pd.to_numeric(series, errors="coerce")


def _resolve_event(fastf1_mod: object, year: int, event: str) -> object:
    """Strict event lookup: FastF1's fuzzy match would turn a typo into some other race."""
    ff1 = fastf1_mod
    try:
        schedule = ff1.get_event_schedule(year, include_testing=False)  # type: ignore[attr-defined]
    except Exception as exc:  # FastF1 raises many types for missing schedules
        raise SourceError(f"no FastF1 schedule for {year} (offline cache has none?): {exc}") from exc
    if len(schedule) == 0:
        raise SourceError(f"no FastF1 schedule for {year}")
    needle = event.strip().lower()
    if needle.isdigit():
        rows = schedule[schedule.RoundNumber == int(needle)]
    else:
        text = (
            schedule.EventName.str.lower()
            + "|"
            + schedule.Location.str.lower()
            + "|"
            + schedule.Country.str.lower()
        )
        rows = schedule[text.str.contains(needle, regex=False)]
    if len(rows) != 1:
        names = ", ".join((rows if len(rows) > 1 else schedule).EventName)
        what = "matches several events" if len(rows) > 1 else "is not an event"
        raise SourceError(f"'{event}' {what} of {year}; events: {names}")
    return rows.iloc[0]


def load_fastf1(
    year: int, event: str, session: str, cache_dir: Path, offline: bool, telemetry_dir: Path | None = None
) -> RaceData:
    """Load any FastF1 session (cached or downloadable) into RaceData; missing parts are listed."""
    import fastf1
    from fastf1.exceptions import DataNotLoadedError

    logging.getLogger("fastf1").setLevel(logging.ERROR)
    if not cache_dir.is_dir():
        raise SourceError(f"FastF1 cache folder {cache_dir} does not exist")
    try:
        fastf1.Cache.configure(cache_dir=str(cache_dir), ignore_version=True)
        fastf1.Cache.offline_mode(offline)
    except Exception as exc:  # e.g. sqlite3.DatabaseError: a corrupt fastf1_http_cache.sqlite
        raise SourceError(f"FastF1 cache {cache_dir} is unusable ({type(exc).__name__}: {exc})") from exc
    ev = _resolve_event(fastf1, year, event)
    name = session_name(session)
    try:
        sess = fastf1.get_session(year, int(ev.RoundNumber), name)  # type: ignore[attr-defined]
        sess.load(laps=True, telemetry=True, weather=True, messages=True)
        laps = sess.laps
    except (DataNotLoadedError, ValueError, KeyError) as exc:
        raise SourceError(f"{year} {ev.EventName} {name}: no lap data ({exc})") from exc  # type: ignore[attr-defined]
    except Exception as exc:  # corrupt pickles surface as many exception types
        raise SourceError(f"{year} {ev.EventName} {name}: cannot load ({type(exc).__name__}: {exc})") from exc  # type: ignore[attr-defined]
    if laps is None or len(laps) == 0:
        raise SourceError(f"{year} {ev.EventName} {name}: the session has no laps")  # type: ignore[attr-defined]
    try:
        return _from_fastf1_session(sess, telemetry_dir)
    except DataNotLoadedError as exc:  # e.g. a corrupt session_info.ff1pkl
        raise SourceError(f"{year} {ev.EventName} {name}: incomplete cache ({exc})") from exc  # type: ignore[attr-defined]


def _from_fastf1_session(sess: object, telemetry_dir: Path | None) -> RaceData:
    s = sess  # FastF1 Session
    info = s.session_info  # type: ignore[attr-defined]
    tables: dict[str, pd.DataFrame] = {}
    missing: list[str] = []

    results = s.results  # type: ignore[attr-defined]
    tables["drivers"] = pd.DataFrame(
        {
            "DriverNumber": results.DriverNumber.astype(str),
            "Abbreviation": results.Abbreviation.astype(str),
            "FullName": results.FullName,
            "TeamName": results.TeamName,
            "TeamColor": results.TeamColor,
        }
    ).reset_index(drop=True)

    laps = pd.DataFrame(s.laps).copy()  # type: ignore[attr-defined]
    for col in LAP_SECONDS_COLUMNS:
        laps[col] = _seconds(laps[col])
    laps["DriverNumber"] = laps.DriverNumber.astype(str)
    for col in ("LapNumber", "Stint", "Position"):
        laps[col] = laps[col].astype("Int64")
    laps["IsPersonalBest"] = laps.IsPersonalBest.astype("boolean")
    tables["laps"] = laps[list(TABLE_COLUMNS["laps"])].reset_index(drop=True)

    t0, t0_source = None, "none"
    try:
        raw_t0 = s.t0_date  # type: ignore[attr-defined]
        if raw_t0 is not None and not pd.isna(raw_t0):
            t0, t0_source = pd.Timestamp(raw_t0).tz_localize("UTC"), "fastf1"
    except Exception:
        t0 = None

    car, pos, est_t0 = _telemetry(s, telemetry_dir)
    if t0 is None and est_t0 is not None:
        t0, t0_source = est_t0, "estimate"
    if car is None:
        missing.append("car_data")
    else:
        tables["car_data"] = car
    if pos is None:
        missing.append("pos_data")
    else:
        tables["pos_data"] = pos

    try:
        weather = pd.DataFrame(s.weather_data).copy()  # type: ignore[attr-defined]
        weather["Time"] = _seconds(weather.Time)
        tables["weather"] = weather[list(TABLE_COLUMNS["weather"])].reset_index(drop=True)
    except Exception:
        missing.append("weather")

    try:
        ts = pd.DataFrame(s.track_status).copy()  # type: ignore[attr-defined]
        ts["Time"] = _seconds(ts.Time)
        ts["Status"] = ts.Status.astype(str)
        tables["track_status"] = ts[list(TABLE_COLUMNS["track_status"])].reset_index(drop=True)
    except Exception:
        missing.append("track_status")

    try:
        rc = pd.DataFrame(s.race_control_messages).copy()  # type: ignore[attr-defined]
        if t0 is None:
            t0 = clock.t0_from_chequered_flag(tables["laps"], rc)
            t0_source = clock.T0_SOURCE_FLAG if t0 is not None else t0_source
        if t0 is None:
            raise ValueError("race-control messages carry UTC times only; no t0 to place them")
        rc["Time"] = (pd.to_datetime(rc.Time).dt.tz_localize("UTC") - t0).dt.total_seconds()
        rc["Sector"] = rc.Sector.astype("Int64")
        rc["Lap"] = rc.Lap.astype("Int64")
        rc["RacingNumber"] = rc.RacingNumber.astype(object).where(rc.RacingNumber.notna(), None)
        tables["race_control"] = rc[list(TABLE_COLUMNS["race_control"])].reset_index(drop=True)
    except Exception as exc:
        log.warning("race control skipped: %s", exc)
        missing.append("race_control")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fastf1.api warns that it is private on import
            from fastf1 import api

            _, stream = api.timing_data(s.api_path)  # type: ignore[attr-defined]
        tables["timing"] = pd.DataFrame(
            {
                "Time": _seconds(stream.Time),
                "DriverNumber": stream.Driver.astype(str),
                "Position": stream.Position.astype("Int64"),
                "GapToLeaderRaw": stream.GapToLeader.astype(object).where(stream.GapToLeader.notna(), None),
                "IntervalRaw": stream.IntervalToPositionAhead.astype(object).where(
                    stream.IntervalToPositionAhead.notna(), None
                ),
            }
        )
    except Exception as exc:
        log.warning("timing stream skipped: %s", exc)
        missing.append("timing")

    meta = SessionMeta(
        year=int(s.event.year),  # type: ignore[attr-defined]
        event_name=str(s.event.EventName),  # type: ignore[attr-defined]
        session_name=str(s.name),  # type: ignore[attr-defined]
        session_key=int(info.get("Key", 0)),
        circuit=(info.get("Meeting", {}).get("Circuit", {}) or {}).get("ShortName"),
        total_laps=_total_laps(s),
        t0_date=t0,
        t0_source=t0_source,
    )
    return RaceData(meta, tables, tuple(missing))


def _total_laps(s: object) -> int | None:
    try:
        return int(s.total_laps)  # type: ignore[attr-defined]
    except Exception:
        return None


def _telemetry(
    s: object, telemetry_dir: Path | None
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, pd.Timestamp | None]:
    """Car data and positions: FastF1's own when loaded, else OpenF1 parquet from telemetry_dir."""
    try:
        car_src = s.car_data  # type: ignore[attr-defined]
        pos_src = s.pos_data  # type: ignore[attr-defined]
        car = pd.concat(
            [
                pd.DataFrame(
                    {
                        "SessionTime": _seconds(d.SessionTime),
                        "DriverNumber": str(n),
                        "Speed": d.Speed,
                        "RPM": d.RPM,
                        "nGear": d.nGear,
                        "Throttle": d.Throttle,
                        "Brake": d.Brake.astype(int) * 100,
                        "DRS": d.DRS,
                    }
                )
                for n, d in car_src.items()
            ],
            ignore_index=True,
        )
        pos = pd.concat(
            [
                pd.DataFrame(
                    {
                        "SessionTime": _seconds(d.SessionTime),
                        "DriverNumber": str(n),
                        "X": d.X,
                        "Y": d.Y,
                        "Z": d.Z,
                    }
                )
                for n, d in pos_src.items()
            ],
            ignore_index=True,
        )
        if len(car) and len(pos):
            return car, pos, None
    except Exception:
        pass
    if telemetry_dir is None:
        return None, None, None
    return _openf1_telemetry(telemetry_dir, int(s.event.year), str(s.event.EventName))  # type: ignore[attr-defined]


def _openf1_telemetry(
    telemetry_dir: Path, year: int, event_name: str
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, pd.Timestamp | None]:
    index_file = telemetry_dir / "t0_estimates.csv"
    if not index_file.exists():
        return None, None, None
    index = pd.read_csv(index_file)
    rows = index[(index.season == year) & (index.event == event_name)]
    if rows.empty:
        return None, None, None
    row = rows.iloc[0]
    folder = telemetry_dir / str(row.folder)
    t0 = pd.Timestamp(row.t0_date_estimate)
    car_raw = pd.read_parquet(folder / "car_data.parquet")
    loc_raw = pd.read_parquet(folder / "location.parquet")
    car = pd.DataFrame(
        {
            "SessionTime": (car_raw.date - t0).dt.total_seconds(),
            "DriverNumber": car_raw.driver_number.astype(str),
            "Speed": car_raw.speed,
            "RPM": car_raw.rpm,
            "nGear": car_raw.n_gear,
            "Throttle": car_raw.throttle,
            "Brake": car_raw.brake,
            "DRS": car_raw.drs,
        }
    )
    pos = pd.DataFrame(
        {
            "SessionTime": (loc_raw.date - t0).dt.total_seconds(),
            "DriverNumber": loc_raw.driver_number.astype(str),
            "X": loc_raw.x,
            "Y": loc_raw.y,
            "Z": loc_raw.z,
        }
    )
    return car, pos, t0
