"""Score streamed alerts against what happened in the race (hindsight allowed here only), pure.

Events, from the race tables (validated Lap events, classification, race control) and the offline
lap features:

* ``stop``: a driver's in-lap (``PitInTime`` set);
* ``pass``: a driver gained a place on lap L over a car that was ahead on lap L-1, behind on lap
  L and did not pit on lap L (in- or out-lap): an on-track pass;
* ``cliff_lap``: a clean lap in free air on dry tyres at least 1 s slower (fuel-corrected) than
  the median of the driver's last 3 clean laps of the same stint, the event the cliff model's label
  looks ahead for (``tyre_deg_labels.cliff_laps``); ``cliff``: the first lap of each run of them
  (tyre-cliff precision counts any cliff lap within 3 laps, recall is over runs);
* ``retirement``: classification status other than finished/lapped; the lap it stopped on is the
  laps it completed + 1; without a classification, a car whose last lap is > 5 laps short of
  the leader's;
* ``slowdown``: 2+ consecutive green, non-pit laps at least 5 s slower than the driver's
  Last3Median (first lap of the run);
* ``mechanical``: a race-control message about the car that says it stopped, is slow, smokes,
  burns or lost parts.

Alert types are read from the records; :data:`ANNOUNCES` says which events each known type
announces and within how many laps. An unknown type is counted (count, per race-hour, bursts)
with precision and recall undefined, so a new rule plugs in.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.alerts import BURST_LIMIT
from stratx.functions.models import tyre_deg_labels

RACE = ["Year", "EventName"]
DRIVER = [*RACE, "DriverNumber"]
SLOW_S = 5.0
SLOW_RUN = 2
UNCLASSIFIED_GAP = 5
FINISHED = re.compile(r"^(Finished|Lapped|\+\d+ Laps?)$", re.IGNORECASE)
MECHANICAL = re.compile(r"STOPPED|SLOW|SMOKE|FIRE|LOSING|MECHANICAL|RETIRED|DEBRIS FROM CAR", re.IGNORECASE)


@dataclass(frozen=True)
class Announces:
    """``events``: what the alert says will happen (precision); ``recall``: the event kind its
    recall is over (None: not defined); ``horizon``: laps after the alert's lap; ``same_lap``: the
    event may fall on the alert's own lap; ``value_is_close_lap``: the alert's Value is the last
    lap of its window (pit window), which then sets the horizon."""

    events: tuple[str, ...]
    recall: str | None
    horizon: int
    same_lap: bool = False
    value_is_close_lap: bool = False


ANNOUNCES: dict[str, Announces] = {
    "pit_window_open": Announces(("stop",), "stop", 5, value_is_close_lap=True),
    "pit_window_closing": Announces(("stop",), None, 3),
    "overtake_likely": Announces(("pass",), "pass", 1),
    "tyre_cliff": Announces(("cliff_lap",), "cliff", 3),
    "anomaly": Announces(("retirement", "slowdown", "mechanical"), "retirement", 3, same_lap=True),
}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _num(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _driver_keys(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["Year"] = out["Year"].astype(int)
    out["EventName"] = out["EventName"].astype(str)
    out["DriverNumber"] = out["DriverNumber"].astype(str)
    return out


def race_hours(raw_laps: pd.DataFrame) -> dict[str, float]:
    """'<Year> <EventName>' -> hours from the first lap's start to the last lap's end."""
    laps = _driver_keys(raw_laps)
    out = {}
    for (year, event), g in laps.groupby(RACE):
        start, end = _num(g, "LapStartTime").min(), _num(g, "Time").max()
        out[f"{year} {event}"] = (
            float(max(end - start, 0.0) / 3600.0) if np.isfinite(end - start) else math.nan
        )
    return out


def _classified(results: pd.DataFrame | None) -> pd.DataFrame:
    """The classification rows that carry a status (a race whose rows have none has no
    classification: its retirements come from the laps)."""
    if results is None or results.empty or "Status" not in results.columns:
        return pd.DataFrame(columns=[*DRIVER, "Status", "Laps"])
    res = _driver_keys(results)
    status = res["Status"].astype("string").fillna("").str.strip()
    return res[status != ""].assign(Status=status[status != ""])


def retirements(raw_laps: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Year, EventName, DriverNumber, Status, RetiredLap (the lap it stopped on), RetiredAt (end of
    its last lap, session seconds), LastLap."""
    laps = _driver_keys(raw_laps)
    last = (
        laps.assign(T=_num(laps, "Time"))
        .groupby(DRIVER)
        .agg(LastLap=("LapNumber", "max"), RetiredAt=("T", "max"))
    )
    last = last.reset_index()
    rows = []
    res = _classified(results)
    races = set(map(tuple, last[RACE].drop_duplicates().to_numpy().tolist()))
    keep = np.array(
        [(int(y), str(e)) in races for y, e in zip(res.Year, res.EventName, strict=True)], dtype=bool
    )
    res = res.loc[keep]
    for r in _records(res):
        if FINISHED.match(str(r["Status"])):
            continue
        done = r.get("Laps")
        rows.append(
            {
                "Year": r["Year"],
                "EventName": r["EventName"],
                "DriverNumber": r["DriverNumber"],
                "Status": str(r["Status"]),
                "Completed": float(done) if done is not None and np.isfinite(float(done)) else math.nan,
            }
        )
    covered = set(map(tuple, res[RACE].drop_duplicates().to_numpy().tolist()))
    for (year, event), g in last.groupby(RACE):
        if (year, event) in covered:
            continue
        leader = g["LastLap"].max()
        for r in _records(g[g["LastLap"] < leader - UNCLASSIFIED_GAP]):
            rows.append(
                {
                    "Year": year,
                    "EventName": event,
                    "DriverNumber": r["DriverNumber"],
                    "Status": "no classification: stopped early",
                    "Completed": math.nan,
                }
            )
    cols = [*DRIVER, "Status", "RetiredLap", "RetiredAt", "LastLap"]
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(rows).merge(last, on=DRIVER, how="left")
    done = out["Completed"].fillna(out["LastLap"].astype(float))
    out["RetiredLap"] = done + 1
    return out[cols].reset_index(drop=True)


def stops(raw_laps: pd.DataFrame) -> pd.DataFrame:
    laps = _driver_keys(raw_laps)
    return laps.loc[_num(laps, "PitInTime").notna(), [*DRIVER, "LapNumber"]].reset_index(drop=True)


def passes(raw_laps: pd.DataFrame) -> pd.DataFrame:
    """On-track passes: (race, DriverNumber, LapNumber) where the driver gained a place over a
    car that did not pit on that lap."""
    laps = _driver_keys(raw_laps)
    laps["Pit"] = _num(laps, "PitInTime").notna() | _num(laps, "PitOutTime").notna()
    found = []
    for (year, event), g in laps.groupby(RACE):
        pos = g.pivot_table(index="LapNumber", columns="DriverNumber", values="Position", aggfunc="first")
        g = g.assign(Pit=g["Pit"].astype(float))
        pits = g.pivot_table(index="LapNumber", columns="DriverNumber", values="Pit", aggfunc="max")
        pit = np.asarray(pits.reindex_like(pos).fillna(0.0).to_numpy(dtype=float)) > 0
        p = pos.to_numpy(dtype=float)
        drivers = list(pos.columns)
        for i in range(1, len(p)):
            prev, now = np.asarray(p[i - 1]), np.asarray(p[i])
            ok = np.isfinite(prev) & np.isfinite(now)
            # ahead[b, a]: a was ahead of b on the previous lap and is behind b now
            swapped = (prev[:, None] > prev[None, :]) & (now[:, None] < now[None, :])
            swapped &= ok[:, None] & ok[None, :] & ~pit[i][None, :]
            for b in np.flatnonzero(swapped.any(axis=1)):
                found.append((year, event, drivers[b], int(pos.index[i])))
    return pd.DataFrame(found, columns=[*DRIVER, "LapNumber"])


def cliff_laps(lap_features: pd.DataFrame) -> pd.DataFrame:
    """Every cliff lap (``tyre_deg_labels.cliff_laps``: the event the cliff model's label looks
    ahead for): a clean free-air lap on dry tyres >= 1 s slower, fuel-corrected, than the median of
    the driver's last 3 clean laps of the stint."""
    need = {"FuelCorrectedLapTime", "IsClean", "IntervalAhead", "Compound", "Stint"}
    if lap_features.empty or not need <= set(lap_features.columns):
        return pd.DataFrame(columns=[*DRIVER, "LapNumber"])
    laps = _driver_keys(lap_features)
    hit = tyre_deg_labels.cliff_laps(laps)
    return laps.loc[hit, [*DRIVER, "LapNumber"]].sort_values([*DRIVER, "LapNumber"]).reset_index(drop=True)


def first_of_runs(laps: pd.DataFrame) -> pd.DataFrame:
    """Of driver-laps sorted by driver and lap, the first of each run of consecutive laps (of
    :func:`cliff_laps`: one cliff episode each)."""
    if laps.empty:
        return laps
    previous = laps.groupby(DRIVER)["LapNumber"].shift(1)
    return laps[~(previous == laps["LapNumber"] - 1)].reset_index(drop=True)


def slowdowns(lap_features: pd.DataFrame) -> pd.DataFrame:
    """First laps of 2+ consecutive green, non-pit laps >= 5 s slower than Last3Median."""
    need = {"LapTime", "Last3Median"}
    if lap_features.empty or not need <= set(lap_features.columns):
        return pd.DataFrame(columns=[*DRIVER, "LapNumber"])
    laps = _driver_keys(lap_features).sort_values([*DRIVER, "LapNumber"])
    green = laps.get("TrackStatus", pd.Series("1", index=laps.index)).astype(str).str.fullmatch(r"1*")
    pit = laps.get("CleanReason", pd.Series("", index=laps.index)).astype(str).str.contains("pit", case=False)
    slow = green & ~pit & ((_num(laps, "LapTime") - _num(laps, "Last3Median")) >= SLOW_S)
    by = [laps[c] for c in DRIVER]
    run = slow.groupby(by).transform(lambda s: s.groupby((~s).cumsum()).cumsum())
    start = (run == SLOW_RUN) & slow
    first = laps.loc[start, [*DRIVER, "LapNumber"]].copy()
    first["LapNumber"] = first["LapNumber"].astype(int) - (SLOW_RUN - 1)
    return first.reset_index(drop=True)


def mechanical(race_control: pd.DataFrame) -> pd.DataFrame:
    rc = race_control
    if rc is None or rc.empty or "RacingNumber" not in rc.columns:
        return pd.DataFrame(columns=[*DRIVER, "LapNumber"])
    hit = rc[
        rc["RacingNumber"].notna() & rc["Message"].astype(str).str.contains(MECHANICAL) & rc["Lap"].notna()
    ]
    out = hit.rename(columns={"RacingNumber": "DriverNumber", "Lap": "LapNumber"})[[*DRIVER, "LapNumber"]]
    return _driver_keys(out).reset_index(drop=True)


def race_events(
    raw_laps: pd.DataFrame, results: pd.DataFrame, race_control: pd.DataFrame, lap_features: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Every event kind, each a frame of Year, EventName, DriverNumber, LapNumber."""
    ret = retirements(raw_laps, results)
    cliff_lap = cliff_laps(lap_features)
    return {
        "stop": stops(raw_laps),
        "pass": passes(raw_laps),
        "cliff": first_of_runs(cliff_lap),
        "cliff_lap": cliff_lap,
        "retirement": ret.rename(columns={"RetiredLap": "LapNumber"})[[*DRIVER, "LapNumber"]],
        "slowdown": slowdowns(lap_features),
        "mechanical": mechanical(race_control),
    }


def _event_laps(events: dict[str, pd.DataFrame], kinds: tuple[str, ...]) -> dict[tuple[Any, ...], list[int]]:
    out: dict[tuple[Any, ...], list[int]] = {}
    for kind in kinds:
        frame = events.get(kind)
        if frame is None or frame.empty:
            continue
        for r in _records(_driver_keys(frame)):
            out.setdefault((int(r["Year"]), str(r["EventName"]), str(r["DriverNumber"])), []).append(
                int(r["LapNumber"])
            )
    return out


def _horizon(rule: Announces, lap: int, value: Any) -> int:
    if rule.value_is_close_lap and value is not None and np.isfinite(float(value)):
        return max(int(float(value)) - lap, 1)
    return rule.horizon


def score_alerts(
    alerts: pd.DataFrame, events: dict[str, pd.DataFrame], hours: dict[str, float]
) -> dict[str, Any]:
    """Per alert type (read from the records): count, per race-hour, largest burst (alerts of the
    type on one lap) and the laps over the burst limit checked in hindsight, precision, recall where
    defined, lead time in laps (median, mean)."""
    total_hours = float(np.nansum(list(hours.values()))) if hours else math.nan
    out: dict[str, Any] = {}
    if alerts.empty:
        return out
    alerts = _driver_keys(alerts[alerts["LapNumber"].notna()])
    for kind, group in alerts.groupby("Type"):
        row: dict[str, Any] = {
            "count": len(group),
            "per_race_hour": len(group) / total_hours if total_hours > 0 else math.nan,
            "max_per_lap": int(group.groupby([*RACE, "LapNumber"]).size().max()),
            "by_severity": {str(k): int(v) for k, v in group["Severity"].value_counts().items()},
        }
        critical = int((group["Severity"] == "critical").sum())
        row["critical_per_race_hour"] = critical / total_hours if total_hours > 0 else math.nan
        rule = ANNOUNCES.get(str(kind))
        if rule is None:
            row.update(
                precision=None, recall=None, lead_laps_median=None, note="no event defined for this type"
            )
            out[str(kind)] = row
            continue
        laps = _event_laps(events, rule.events)
        hits, leads, came_true = 0, [], []
        for a in _records(group):
            lap = int(a["LapNumber"])
            h = _horizon(rule, lap, a["Value"])
            low = lap if rule.same_lap else lap + 1
            found = [
                e
                for e in laps.get((int(a["Year"]), str(a["EventName"]), str(a["DriverNumber"])), [])
                if low <= e <= lap + h
            ]
            came_true.append(bool(found))
            if found:
                hits += 1
                leads.append(min(found) - lap)
        row["precision"] = hits / len(group)
        row["bursts"] = _bursts(group.assign(CameTrue=came_true))
        row["lead_laps_median"] = float(np.median(leads)) if leads else None
        row["lead_laps_mean"] = float(np.mean(leads)) if leads else None
        row["recall"], row["recall_events"] = _recall(rule, group, events)
        out[str(kind)] = row
    return out


def _bursts(group: pd.DataFrame) -> dict[str, int]:
    """Laps holding more than ``BURST_LIMIT`` alerts of one type, checked in hindsight: how many
    alerts they held, how many came true, and how many of those laps held more than the limit's
    worth of real events (a burst the data justifies)."""
    per_lap = group.groupby([*RACE, "LapNumber"])["CameTrue"].agg(["size", "sum"])
    over = per_lap[per_lap["size"] > BURST_LIMIT]
    return {
        "laps": len(over),
        "alerts": int(over["size"].sum()),
        "came_true": int(over["sum"].sum()),
        "laps_with_more_events_than_the_limit": int((over["sum"] > BURST_LIMIT).sum()),
    }


def _recall(
    rule: Announces, group: pd.DataFrame, events: dict[str, pd.DataFrame]
) -> tuple[float | None, int]:
    if rule.recall is None:
        return None, 0
    frame = events.get(rule.recall)
    if frame is None or frame.empty:
        return None, 0
    raised: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
    for a in _records(group):
        lap = int(a["LapNumber"])
        raised.setdefault((int(a["Year"]), str(a["EventName"]), str(a["DriverNumber"])), []).append(
            (lap, _horizon(rule, lap, a["Value"]))
        )
    caught = 0
    frame = _driver_keys(frame)
    for e in _records(frame):
        ev = int(e["LapNumber"])
        for lap, h in raised.get((int(e["Year"]), str(e["EventName"]), str(e["DriverNumber"])), []):
            if (lap if rule.same_lap else lap + 1) <= ev <= lap + h:
                caught += 1
                break
    return caught / len(frame), len(frame)


def retirement_report(
    retired: pd.DataFrame, alerts: pd.DataFrame, kind: str = "anomaly"
) -> list[dict[str, Any]]:
    """Every retirement with the first ``kind`` alert for that car at or before its stop, and the lead."""
    out = []
    alerts = _driver_keys(alerts) if not alerts.empty else alerts
    for r in _records(_driver_keys(retired)):
        mine = (
            alerts[
                (alerts.Type == kind)
                & (alerts.Year == r["Year"])
                & (alerts.EventName == r["EventName"])
                & (alerts.DriverNumber == r["DriverNumber"])
            ]
            if not alerts.empty
            else alerts
        )
        laps = sorted(int(x) for x in mine["LapNumber"].dropna()) if not mine.empty else []
        before = [x for x in laps if x <= int(r["RetiredLap"])]
        out.append(
            {
                "race": f"{r['Year']} {r['EventName']}",
                "DriverNumber": r["DriverNumber"],
                "Status": r["Status"],
                "RetiredLap": int(r["RetiredLap"]),
                "first_alert_lap": before[0] if before else None,
                "lead_laps": int(r["RetiredLap"]) - before[0] if before else None,
                "alerts_after": len(laps) - len(before),
            }
        )
    return out
