"""Load races from flat FastF1 exports (the training corpus): one parquet per table for many races,
split per race, with a derived negative session key and t0 from the OpenF1 lap alignment or the
chequered flag. Re-exported by :mod:`stratx.bentos.lifecycle.sources`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stratx.bentos.lifecycle.sources_common import SourceError
from stratx.functions import clock
from stratx.functions.racedata import TABLE_COLUMNS, RaceData, SessionMeta


def derived_session_key(year: int, round_number: int) -> int:
    """Session key for a race known only by year and round: negative, so it never collides with a
    real F1 live-timing / OpenF1 key (which are positive)."""
    return -(year * 100 + round_number)


def _t0_estimates(path: Path) -> dict[tuple[int, str], pd.Timestamp]:
    """(season, event) -> t0 from the OpenF1 lap alignment (``t0_estimates.csv``), if present."""
    if not path.exists():
        return {}
    table = pd.read_csv(path)
    return {
        (int(season), str(event)): pd.Timestamp(str(t0))
        for season, event, t0 in zip(table.season, table.event, table.t0_date_estimate, strict=True)
    }


def load_exports(export_dir: Path, sessions: tuple[str, ...] = ("Race",)) -> list[RaceData]:
    """Races from flat FastF1 exports (``laps.parquet`` + ``race_control_messages.parquet`` +
    ``track_status.parquet`` + ``weather.parquet``, one row per item, all time deltas in s).

    Laps and track status are on the session clock; t0 (for UTC dates) comes from a
    ``t0_estimates.csv`` in the folder or beside it (OpenF1 lap alignment, or Ergast's start time
    for ``lap_exports`` folders) when it lists the race, else from the chequered flag. Car telemetry and the timing stream are not in such exports: listed as missing.
    """
    try:
        laps = pd.read_parquet(export_dir / "laps.parquet")
        rc = pd.read_parquet(export_dir / "race_control_messages.parquet")
        ts = pd.read_parquet(export_dir / "track_status.parquet")
        weather = pd.read_parquet(export_dir / "weather.parquet")
    except (OSError, ValueError) as exc:
        raise SourceError(f"FastF1 exports in {export_dir} are unreadable: {exc}") from exc
    ident = ["Year", "RoundNumber", "EventName", "SessionName"]
    t0_estimates = {  # the folder's own estimates win over the shared ones beside it
        **_t0_estimates(export_dir.parent / "t0_estimates.csv"),
        **_t0_estimates(export_dir / "t0_estimates.csv"),
    }
    races = []
    for key, lap_rows in laps[laps.SessionName.isin(sessions)].groupby(ident, sort=True):
        year, rnd, event, session = (int(key[0]), int(key[1]), str(key[2]), str(key[3]))  # type: ignore[call-overload]

        def pick(frame: pd.DataFrame, key: tuple[object, ...] = key) -> pd.DataFrame:
            mask = (frame[ident] == pd.Series(key, index=ident)).all(axis=1)
            return frame[mask].drop(columns=ident)

        lap_frame = lap_rows.drop(columns=ident).copy()
        lap_frame["DriverNumber"] = lap_frame.DriverNumber.astype(str)
        for col in ("LapNumber", "Stint", "Position"):
            lap_frame[col] = lap_frame[col].astype("Int64")
        lap_frame["IsPersonalBest"] = lap_frame.IsPersonalBest.astype("boolean")
        rc_utc = pick(rc)
        t0, t0_source = t0_estimates.get((year, event)), "estimate"
        if t0 is None:
            t0, t0_source = clock.t0_from_chequered_flag(lap_frame, rc_utc), clock.T0_SOURCE_FLAG
        tables: dict[str, pd.DataFrame] = {
            "laps": lap_frame[list(TABLE_COLUMNS["laps"])].reset_index(drop=True)
        }
        missing = ["car_data", "pos_data", "timing", "drivers"]
        track = pick(ts)
        if len(track):
            track["Status"] = track.Status.astype(str)
            tables["track_status"] = track[list(TABLE_COLUMNS["track_status"])].reset_index(drop=True)
        w = pick(weather)
        if len(w):
            tables["weather"] = w[list(TABLE_COLUMNS["weather"])].reset_index(drop=True)
        if t0 is not None and len(rc_utc):
            rc_frame = rc_utc.copy()
            times = pd.to_datetime(rc_frame.Time)
            times = times.dt.tz_localize("UTC") if times.dt.tz is None else times.dt.tz_convert("UTC")
            rc_frame["Time"] = (times - t0).dt.total_seconds()
            for col in ("Sector", "Lap"):
                rc_frame[col] = rc_frame[col].astype("Int64")
            tables["race_control"] = rc_frame[list(TABLE_COLUMNS["race_control"])].reset_index(drop=True)
        else:
            missing.append("race_control")
        meta = SessionMeta(
            year=year,
            event_name=event,
            session_name=session,
            session_key=derived_session_key(year, rnd),
            t0_date=t0,
            t0_source=t0_source if t0 is not None else "none",
            # the scheduled distance, which F1 publishes before the start; an export does not carry it,
            # so the winner's laps stand in (as the pit-window recipe's RaceLaps offline: they differ
            # only for a shortened race). Without it the stream fell back to the median circuit.
            total_laps=int(lap_frame.LapNumber.max()) if lap_frame.LapNumber.notna().any() else None,
        )
        races.append(RaceData(meta, tables, tuple(missing)))
    return races
