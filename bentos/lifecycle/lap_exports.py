"""Unseen races as FastF1-format exports: the raw FastF1 lap tables of the Armchair-Strategist
dataset (``shared/data/laps/armchair_strategist``: ``Session.laps`` as FastF1 gives them, all 33
columns, for 2023 R1-10 and 2024, 2025 and 2026 R1-11) plus Ergast's classification, written in
the layout of ``data/corpus/fastf1_exports`` so that ``sources.load_exports`` (and so `stratx
evaluate --exports`, `stratx backtest --exports`, `stratx train --exports`) reads them.

Only races in none of the project's data are written (not a bundled race, not in the corpus, not a
test race): races the champions never saw, to check every figure on.

What each table is:

* ``laps``: the source rows, times in seconds, ``TrackStatus`` as FastF1's status string.
* ``track_status``: **DERIVED** (the source has no track-status table): :func:`track_status_from_laps`
  rebuilds the SC / VSC / red-flag / yellow periods from the laps' status strings, to within the
  gap between two cars crossing the line (checked against the real table on the races both
  hold: ``--check``).
* ``results``: Ergast's ``Status``, ``Laps``, positions (seasons Ergast lacks get none: the backtest
  then takes retirements from the laps).
* ``race_control`` and ``weather``: empty (the source has none); no car telemetry or timing stream.

``python -m stratx.bentos.lifecycle.lap_exports [--shared DIR] [--out DIR] [--check]``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

SOURCE_FILES = (  # (season, file under shared/data/laps)
    (2023, "armchair_strategist/all_laps_2023_rounds1-10.csv.gz"),
    (2024, "armchair_strategist/grand_prix/all_grand_prix_laps_2024.csv.gz"),
    (2025, "armchair_strategist/grand_prix/all_grand_prix_laps_2025.csv.gz"),
    (2026, "armchair_strategist/grand_prix/all_grand_prix_laps_2026.csv.gz"),
)
IDENT = ["Year", "RoundNumber", "EventName", "SessionName"]
SECONDS = (
    "Time", "LapTime", "PitOutTime", "PitInTime", "Sector1Time", "Sector2Time", "Sector3Time",
    "Sector1SessionTime", "Sector2SessionTime", "Sector3SessionTime", "LapStartTime",
)  # fmt: skip
# FastF1 track-status codes: 1 clear, 2 yellow, 4 safety car, 5 red flag, 6 VSC, 7 VSC ending
MESSAGES = {
    "1": "AllClear",
    "2": "Yellow",
    "4": "SCDeployed",
    "5": "Red",
    "6": "VSCDeployed",
    "7": "VSCEnding",
}
PRIORITY = ("5", "4", "6", "7", "2")  # the status a track shows when several are derived at once
CLEAR_GAP_S = 30.0  # shorter clear spells between two derived statuses are the estimate's error


def read_source(path: Path, year: int) -> pd.DataFrame:
    """One source file (season ``year``) as export rows: times in s, ``TrackStatus`` a string,
    ``DriverNumber`` a string."""
    out = pd.read_csv(path)
    out.insert(0, "Year", year)
    for col in SECONDS:
        out[col] = pd.to_timedelta(out[col]).dt.total_seconds()
    out["LapStartDate"] = pd.to_datetime(out["LapStartDate"], errors="coerce")
    out["SessionName"] = "Race"
    out["DriverNumber"] = out["DriverNumber"].astype(int).astype(str)
    status = out["TrackStatus"]
    out["TrackStatus"] = pd.array([None if pd.isna(s) else str(int(s)) for s in status], dtype="string")
    out["IsPersonalBest"] = out["IsPersonalBest"].map(
        {True: True, False: False, "True": True, "False": False}
    )
    out["IsPersonalBest"] = out["IsPersonalBest"].astype("boolean")
    for col in ("EventName", "Driver", "Compound", "Team", "DeletedReason", "SessionName"):
        out[col] = out[col].astype("string")
    return out


def read_all(shared: Path) -> pd.DataFrame:
    """Every source file's rows (``shared``: the shared data folder)."""
    return pd.concat([read_source(shared / "laps" / f, y) for y, f in SOURCE_FILES], ignore_index=True)


def track_status_from_laps(laps: pd.DataFrame) -> pd.DataFrame:
    """Time, Status, Message of one race, rebuilt from its laps' status strings (DERIVED).

    A lap's ``TrackStatus`` lists every status seen while it was run. For each status, the laps
    that saw it are chained into periods (laps overlapping in time); a period lies between the
    earliest end and the latest start of its laps (the status was on when the first of those laps
    ended and when the last one began; for a period shorter than a lap, the span every one of its
    laps covers). Where periods overlap, the track shows the gravest (red, SC, VSC, VSC ending,
    yellow); between them, clear, unless the clear spell is shorter than :data:`CLEAR_GAP_S` (a VSC
    and its ending, estimated apart, meet)."""
    start = laps["LapStartTime"].fillna(laps["Time"] - laps["LapTime"])
    frame = pd.DataFrame({"a": start, "b": laps["Time"], "s": laps["TrackStatus"].fillna("")})
    frame = frame.dropna(subset=["a", "b"])
    periods: list[tuple[float, float, str]] = []
    for code in PRIORITY:
        seen = frame[frame["s"].str.contains(code, regex=False)].sort_values("a")
        periods += [(lo, hi, code) for lo, hi in _periods(seen["a"].to_numpy(), seen["b"].to_numpy())]
    edges = sorted({t for lo, hi, _ in periods for t in (lo, hi)})
    rows: list[tuple[float, str, str]] = []
    shown = "1"
    for t in edges:
        active = {code for lo, hi, code in periods if lo <= t < hi}
        now = next((c for c in PRIORITY if c in active), "1")
        if now != shown:
            if rows and rows[-1][1] == "1" and now != "1" and t - rows[-1][0] < CLEAR_GAP_S:
                rows.pop()  # a clear spell shorter than the crossings resolve: the status went on
            if not rows or rows[-1][1] != now:
                rows.append((float(t), now, MESSAGES[now]))
            shown = now
    return pd.DataFrame(rows, columns=["Time", "Status", "Message"]).astype(
        {"Status": "string", "Message": "string"}
    )


def _periods(starts: np.ndarray, ends: np.ndarray) -> Iterable[tuple[float, float]]:
    """(from, to) of each chain of overlapping [start, end] laps (sorted by start)."""
    i = 0
    while i < len(starts):
        j, reach = i, ends[i]
        while j + 1 < len(starts) and starts[j + 1] <= reach:
            j += 1
            reach = max(reach, ends[j])
        first_end, last_start = float(ends[i : j + 1].min()), float(starts[i : j + 1].max())
        yield min(first_end, last_start), max(first_end, last_start)
        i = j + 1


def ergast_results(ergast: Path, races: pd.DataFrame) -> pd.DataFrame:
    """Ergast's classification of ``races`` (Year, RoundNumber, EventName rows), in the exports'
    results columns; races Ergast lacks get no rows."""
    cal = pd.read_csv(ergast / "races.csv", usecols=["raceId", "year", "round"])
    res = pd.read_csv(ergast / "results.csv", na_values=["\\N"])
    drivers = pd.read_csv(ergast / "drivers.csv", usecols=["driverId", "code"], na_values=["\\N"])
    status = pd.read_csv(ergast / "status.csv")
    cal = cal.merge(races, left_on=["year", "round"], right_on=["Year", "RoundNumber"])
    out = res.merge(cal, on="raceId").merge(drivers, on="driverId", how="left").merge(status, on="statusId")
    return pd.DataFrame(
        {
            "Year": out["Year"].astype(int),
            "RoundNumber": out["RoundNumber"].astype(int),
            "EventName": out["EventName"].astype("string"),
            "SessionName": pd.array(["Race"] * len(out), dtype="string"),
            "DriverNumber": out["number"].astype(int).astype(str).astype("string"),
            "Abbreviation": out["code"].astype("string"),
            "Position": out["positionOrder"].astype(float),
            "ClassifiedPosition": out["positionText"].astype(str).astype("string"),
            "GridPosition": out["grid"].astype(float),
            "Status": out["status"].astype("string"),
            "Laps": out["laps"].astype(float),
        }
    )


def build(shared: Path, out: Path, known: set[tuple[int, str]]) -> dict[str, object]:
    """Write the exports of every source race not in ``known`` (Year, EventName) to ``out``."""
    laps = read_all(shared)
    unseen = [(int(y), str(e)) not in known for y, e in zip(laps.Year, laps.EventName, strict=True)]
    report = write_exports(
        laps[np.asarray(unseen, dtype=bool)].reset_index(drop=True), shared / "ergast", out
    )
    return {**report, "sources": [f"shared/data/laps/{f}" for _, f in SOURCE_FILES]}


def write_exports(laps: pd.DataFrame, ergast: Path, out: Path) -> dict[str, object]:
    """``laps`` (export rows of whole races) as an exports folder: the laps, the track status
    derived from them, Ergast's classification, the session-time origin from Ergast's start time
    (:func:`t0_estimates`), empty race control and weather."""
    races = laps[IDENT].drop_duplicates().reset_index(drop=True)
    status = []
    for race in races.itertuples(index=False):
        one = laps[(laps.Year == race.Year) & (laps.RoundNumber == race.RoundNumber)]
        status.append(track_status_from_laps(one).assign(**{c: getattr(race, c) for c in IDENT}))
    out.mkdir(parents=True, exist_ok=True)
    laps.to_parquet(out / "laps.parquet", compression="zstd", index=False)
    track = pd.concat([s for s in status if len(s)], ignore_index=True)[[*IDENT, "Time", "Status", "Message"]]
    track.to_parquet(out / "track_status.parquet", compression="zstd", index=False)
    ergast_results(ergast, races[IDENT[:3]]).to_parquet(out / "results.parquet", index=False)
    t0_estimates(laps, ergast).to_csv(out / "t0_estimates.csv", index=False)
    pd.DataFrame(columns=[*IDENT, "Time", "Category", "Message", "Status", "Flag", "Scope", "Sector",
                          "RacingNumber", "Lap"]).to_parquet(out / "race_control_messages.parquet", index=False)  # fmt: skip
    pd.DataFrame(columns=[*IDENT, "Time", "AirTemp", "Humidity", "Pressure", "Rainfall", "TrackTemp",
                          "WindDirection", "WindSpeed"]).to_parquet(out / "weather.parquet", index=False)  # fmt: skip
    return {
        "races": [f"{y} R{r} {e}" for y, r, e, _ in races.itertuples(index=False)],
        "laps": len(laps),
        "track_status_rows": len(track),
    }


def t0_estimates(laps: pd.DataFrame, ergast: Path) -> pd.DataFrame:
    """season, event, t0_date_estimate (UTC) of each race Ergast times: its scheduled start minus
    the session time lap 1 began (the earliest lap-1 ``LapStartTime``), ESTIMATED to within the
    start's delay (a formation lap restarted, an aborted start). Races Ergast lacks get none."""
    cal = pd.read_csv(ergast / "races.csv", usecols=["year", "round", "date", "time"], na_values=["\\N"])
    first = laps[laps.LapNumber == 1]
    begun = first["LapStartTime"].fillna(first["Time"] - first["LapTime"])
    start = first.assign(S=begun).groupby(["Year", "RoundNumber", "EventName"])["S"].min().reset_index()
    m = start.merge(cal.dropna(), left_on=["Year", "RoundNumber"], right_on=["year", "round"])
    t0 = pd.to_datetime(m["date"] + "T" + m["time"], utc=True) - pd.to_timedelta(m["S"], unit="s")
    out = pd.DataFrame({"season": m["Year"], "event": m["EventName"], "t0_date_estimate": t0})
    return out.dropna().assign(
        t0_date_estimate=lambda f: f["t0_date_estimate"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )


def check(shared: Path, exports: Path) -> dict[str, object]:
    """The derivation against the real tables on the races both the source and ``exports`` (the
    project's FastF1 exports) hold: lap columns equal, and per real SC / VSC / red-flag start the
    distance to the derived one (s)."""
    source = read_all(shared)
    real = pd.read_parquet(exports / "laps.parquet")
    real_ts = pd.read_parquet(exports / "track_status.parquet")
    both = source.merge(real, on=["Year", "EventName", "DriverNumber", "LapNumber"], suffixes=("", "_real"))
    equal = {
        c: float((((both[c] - both[f"{c}_real"]).abs() < 1e-3) | (both[c].isna() & both[f"{c}_real"].isna())).mean())
        if both[c].dtype.kind == "f"
        else float((both[c].astype(str) == both[f"{c}_real"].astype(str)).mean())
        for c in ("Time", "LapTime", "PitInTime", "PitOutTime", "TyreLife", "Compound", "TrackStatus", "Position")
    }  # fmt: skip
    errors: list[float] = []
    for year, event in both[["Year", "EventName"]].drop_duplicates().itertuples(index=False):
        derived = track_status_from_laps(source[(source.Year == year) & (source.EventName == event)])
        truth = real_ts[(real_ts.Year == year) & (real_ts.EventName == event)]
        for code in ("4", "5", "6"):
            mine = derived.loc[derived.Status == code, "Time"].to_numpy(dtype=float)
            for t in truth.loc[truth.Status == code, "Time"].astype(float):
                near = mine - t  # > 0: derived later than the real start
                errors.append(float(near[np.argmin(np.abs(near))]) if len(near) else np.inf)
    finite = np.asarray([e for e in errors if abs(e) < 600])
    return {
        "races": int(both[["Year", "EventName"]].drop_duplicates().shape[0]),
        "driver_laps": len(both),
        "share_equal": equal,
        "neutralisation_starts": len(errors),
        "derived_within_10_min": len(finite),
        "start_error_s": {
            q: float(np.quantile(finite, p)) for q, p in (("p10", 0.1), ("median", 0.5), ("p90", 0.9))
        }
        if len(finite)
        else {},
    }


def main(argv: list[str] | None = None) -> int:
    from stratx.bentos.lifecycle import training
    from stratx.functions.models import base
    from stratx.functions.settings import TrainingSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--check", action="store_true", help="compare with the project's FastF1 exports")
    args = parser.parse_args(argv)
    settings = TrainingSettings()
    exports = settings.data_dir / "corpus" / "fastf1_exports"
    if args.check:
        print(json.dumps(check(args.shared, exports), indent=1))
        return 0
    known = {(r.meta.year, r.meta.event_name) for r in training.corpus_races(settings.data_dir)}
    known |= set(base.TEST_RACES)
    out = args.out or settings.data_dir / "corpus" / "lap_exports"
    report = build(args.shared, out, known)
    (out / "build.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(report['races'])} races, {report['laps']} laps -> {out}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
