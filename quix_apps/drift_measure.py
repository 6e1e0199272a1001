"""The offline drift measurement (``python -m stratx.quix_apps.drift [YEARS]``) and the drift section
of the stream backtest (:func:`backtest_drift`).

For every validation and test race (never trained on): the share of drifted columns at the window
points a live run sees (laps 1..15, 30, 45 and the whole race) and the largest share over every
lap from the first window with ``STRATX_DRIFT_MIN_ROWS`` driver-laps to the end, each against the
training races that started before it (``functions/drift_like.py``); the alarm is on when a share
reaches ``STRATX_DRIFT_THRESHOLD``. For the test races, the same for each **SYNTHETIC** injected
shift (``functions/drift_inject.py``; features built with the offline feature build from the
shifted raw laps) and, for "one team 1 % slower", the team-pace check (``functions/drift_team.py``).
Distances are computed with ``drift_like`` (Evidently's formulas); the whole-race share is also run
through Evidently itself (``evidently_end``) to show they agree.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from stratx.functions import drift_inject, drift_like, drift_team
from stratx.functions.models import base
from stratx.functions.racedata import RaceData
from stratx.functions.settings import DriftSettings
from stratx.quix_apps.drift_compare import compare_like
from stratx.quix_apps.drift_reference import RaceReference, Reference, load_reference, race_reference

WINDOW_POINTS: tuple[int, ...] = (15, 30, 45, 0)  # 0: the whole race


def point_name(n: int) -> str:
    return f"laps_1_{n}" if n else "whole_race"


def shares(settings: DriftSettings, rows: pd.DataFrame, race: RaceReference) -> dict[str, Any]:
    """Share and drifted columns at each of :data:`WINDOW_POINTS`, and the largest share over every
    lap N a live run would see (windows of >= ``drift_min_rows`` driver-laps)."""
    view = drift_like.like_view(rows, race.speeds)
    laps = rows["LapNumber"]
    last = int(laps.max())
    out: dict[str, Any] = {"rows": len(rows), "last_lap": last}
    every: dict[int, tuple[float, list[str]]] = {}
    for n in range(1, last + 1):
        keep = drift_like.in_window(laps, n, race.window_laps).to_numpy()
        if keep.sum() < settings.drift_min_rows:
            continue
        share, drifted, _ = drift_like.compare_window(view[keep], race.pool(n), race.thresholds(n))
        every[n] = (share, drifted)
    for n in WINDOW_POINTS:
        at = min(n, last) if n else last
        share, drifted = every.get(at, (float("nan"), []))
        out[point_name(n)] = {"lap": at, "share": share, "drifted": drifted}
    worst = max(every.items(), key=lambda kv: kv[1][0]) if every else (None, (float("nan"), []))
    out["max_any_lap"] = {"lap": worst[0], "share": worst[1][0], "drifted": worst[1][1]}
    out["alarm"] = bool(every) and worst[1][0] >= settings.drift_threshold
    return out


def injected_rows(race: RaceData, name: str) -> pd.DataFrame:
    """The lap features of a **SYNTHETIC** shifted copy of ``race`` (offline feature build)."""
    from stratx.bentos.lifecycle import feature_build

    laps = drift_inject.inject(race.table("laps"), name)
    shifted = dataclasses.replace(race, tables={**race.tables, "laps": laps})
    rows, _ = feature_build.lap_feature_rows(shifted)
    return pd.DataFrame(rows)


def team_check(reference: Reference, rows: pd.DataFrame, year: int, start: str, team: str) -> dict[str, Any]:
    """The team-pace check of ``team`` in ``rows`` against its earlier training races of ``year``."""
    ref = reference.rows
    season = [
        ref[ref[drift_like.RACE] == r]
        for r in drift_like.races_before(reference.starts, start)
        if r.startswith(f"{year} ")
    ]
    if not season:
        return {"team": team, "note": f"no earlier training race of {year}: not compared"}
    shifts = drift_team.team_shifts(rows, season)
    limit = drift_team.natural_limit(season)
    mine = float(shifts.get(team, float("nan")))
    return {
        "team": team,
        "shift": mine,
        "natural_limit": limit,
        "largest_other_shift": float(shifts.drop(team, errors="ignore").abs().max()),
        "flagged": bool(abs(mine) > limit),
        "earlier_races": len(season),
    }


def race_drift(
    settings: DriftSettings,
    reference: Reference,
    race: RaceData,
    rows: pd.DataFrame,
    injections: tuple[str, ...] = drift_inject.INJECTIONS,
) -> dict[str, Any]:
    """One race's drift: real (``rows``: its lap features) and each SYNTHETIC injection."""
    start = str(rows["Date"].dropna().astype(str).min())
    year, event = race.meta.year, race.meta.event_name
    ref = race_reference(settings, reference, start, event, year, settings.drift_window_laps)
    out: dict[str, Any] = {
        "race": f"{year} {event}",
        "reference_races": len(ref.races),
        "speeds": ref.speeds,
        "notes": ref.notes,
        "threshold": settings.drift_threshold,
        "real": shares(settings, rows, ref),
        "injected": {},
    }
    team = drift_inject.winner_team(race.table("laps"))
    out["team_pace_real"] = team_check(reference, rows, year, start, team)
    for name in injections:
        shifted = injected_rows(race, name)
        found = {"label": drift_inject.SYNTHETIC, **shares(settings, shifted, ref)}
        if name == "team_+1%":
            found["team_pace"] = team_check(reference, shifted, year, start, team)
        out["injected"][name] = found
    return out


def backtest_drift(
    settings: DriftSettings, session_key: int, streamed_rows: list[dict[str, Any]], race: RaceData
) -> dict[str, Any]:
    """The ``drift`` section of backtest.json: the shares at the window points computed from the
    streamed LapFeatures records of the session, plus the SYNTHETIC injected variants (computed
    offline from the same race's raw laps)."""
    rows = pd.DataFrame([r for r in streamed_rows if r.get("SessionKey") == session_key])
    if rows.empty:
        return {"note": f"no streamed lap features of session {session_key}"}
    rows = rows.drop_duplicates(["DriverNumber", "LapNumber"], keep="last")
    try:
        return race_drift(settings, load_reference(settings), race, rows)
    except ValueError as exc:
        return {"note": f"drift not measured: {exc}"}


def measure_races(settings: DriftSettings, injections: bool = True) -> list[dict[str, Any]]:
    """:func:`race_drift` of every validation and test race (module doc); the README's table."""
    from stratx.bentos.lifecycle import feature_build, training

    reference = load_reference(settings)
    wanted = {*base.VALIDATION_RACES, *base.TEST_RACES}
    out = []
    for race in training.corpus_races(settings.data_dir):
        if (race.meta.year, race.meta.event_name) not in wanted:
            continue
        rows = pd.DataFrame(feature_build.lap_feature_rows(race)[0])
        test = (race.meta.year, race.meta.event_name) in base.TEST_RACES
        found = race_drift(
            settings, reference, race, rows, drift_inject.INJECTIONS if injections and test else ()
        )
        found["split"] = "test" if test else "validation"
        start = str(rows["Date"].dropna().astype(str).min())
        ref = race_reference(settings, reference, start, race.meta.event_name, race.meta.year)
        with tempfile.TemporaryDirectory() as tmp:
            found["evidently_race"] = compare_like(rows, ref, Path(tmp) / "r.html").share
        found["start"] = start
        out.append(found)
    return sorted(out, key=lambda r: r["start"])


def table(measured: list[dict[str, Any]]) -> pd.DataFrame:
    """One line per race and variant: share at each window point, largest share, alarm, columns."""
    lines = []
    for m in measured:
        variants = {"real": m["real"], **{f"{k} (SYNTHETIC)": v for k, v in m["injected"].items()}}
        for name, found in variants.items():
            line: dict[str, Any] = {"race": m["race"], "split": m["split"], "variant": name}
            for n in WINDOW_POINTS:
                line[point_name(n)] = found[point_name(n)]["share"]
            line["max_any_lap"] = found["max_any_lap"]["share"]
            line["alarm"] = "yes" if found["alarm"] else "no"
            line["drifted (max lap)"] = ",".join(found["max_any_lap"]["drifted"][:4])
            lines.append(line)
    return pd.DataFrame(lines)


def main() -> None:
    import sys

    years = sys.argv[1] if len(sys.argv) > 1 else ""
    settings = DriftSettings(drift_reference_years=years)
    measured = measure_races(settings)
    with pd.option_context("display.width", 250, "display.max_colwidth", 80):
        print(table(measured).to_string(index=False, float_format="%.3f"))
        print()
        for m in measured:
            print(
                f"{m['race']}: Evidently whole-race share {m['evidently_race']:.3f}; {'; '.join(m['notes'])}"
            )
            checks = [m["team_pace_real"], m["injected"].get("team_+1%", {}).get("team_pace")]
            for label, check in zip(("real", "team_+1% (SYNTHETIC)"), checks, strict=True):
                if check and "shift" in check:
                    print(
                        f"  team pace {label}: {check['team']} shift {check['shift']:+.2%}, natural limit "
                        f"{check['natural_limit']:.2%}, largest other {check['largest_other_shift']:.2%}, "
                        f"flagged {check['flagged']}"
                    )
                elif check:
                    print(f"  team pace {label}: {check['note']}")


def drift_markdown(section: dict[str, Any]) -> list[str]:
    """backtest.md lines of the ``drift`` section (one row per race and variant)."""
    lines = [
        "## Drift",
        "",
        "Share of drifted lap-feature columns (like with like, calibrated thresholds; docs/operations.md) at "
        "laps 1..15/30/45/race and the largest over every lap; injected variants are SYNTHETIC.",
        "",
        "| race | variant | 1-15 | 1-30 | 1-45 | race | max any lap | alarm | drifted (max lap) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for race, found in section.items():
        if "real" not in found:
            lines.append(f"| {race} | {found.get('note', '')} | | | | | | | |")
            continue
        variants = {
            "real (streamed)": found["real"],
            **{f"{k} (SYNTHETIC)": v for k, v in found["injected"].items()},
        }
        for name, v in variants.items():
            cells = [f"{v[point_name(n)]['share']:.3f}" for n in WINDOW_POINTS]
            worst = v["max_any_lap"]
            lines.append(
                f"| {race} | {name} | {' | '.join(cells)} | {worst['share']:.3f} | "
                f"{'yes' if v['alarm'] else 'no'} | {', '.join(worst['drifted'][:4])} |"
            )
    return [*lines, ""]
