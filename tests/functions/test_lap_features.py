"""Lap features on real races (2023 Las Vegas and Bahrain GPs), checked against the raw lap table.

Every expected value is computed in this file, independently, from the bundled lap table with
pandas / NumPy / ``statistics`` (never by calling the function under test); a few are also worked
out by hand in comments. Definitions: the module docstring of ``functions/features/laps.py``.
"""

from __future__ import annotations

import copy
import json
import math
import random
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stratx.functions import ingest, schemas
from stratx.functions.features import laps as lf
from stratx.functions.racedata import RaceData

REASONS = ("no_lap_time", "lap_1", "pit_in", "pit_out", "deleted", "track_status")
Key = tuple[str, int]


@dataclass(frozen=True)
class Race:
    table: pd.DataFrame  # the raw lap table sorted by lap end, plus an independent Reason / Clean
    events: list[dict[str, Any]]  # lap events as the raw laps topic carries them
    rows: dict[Key, dict[str, Any]]  # build_lap_features output by (DriverNumber, LapNumber)

    def lap(self, driver: str, n: int) -> pd.Series:
        t = self.table
        (i,) = np.flatnonzero((t.DriverNumber == driver).to_numpy() & (t.LapNumber == n).to_numpy())
        return t.iloc[i]

    def event(self, driver: str, n: int) -> dict[str, Any]:
        return next(e for e in self.events if e["DriverNumber"] == driver and e["LapNumber"] == n)


def table_reasons(t: pd.DataFrame) -> np.ndarray:
    """The first failing clean-lap rule per row, 'clean' when none fails (np.select takes the first)."""
    conditions = [
        t.LapTime.isna(),
        t.LapNumber <= 1,
        t.PitInTime.notna(),
        t.PitOutTime.notna(),
        t.Deleted.astype(bool),
        ~t.TrackStatus.fillna("1").astype(str).str.fullmatch("1+"),
    ]
    return np.select([c.to_numpy(dtype=bool) for c in conditions], list(REASONS), default="clean")


def make_race(data: RaceData) -> Race:
    t = data.table("laps").copy()
    t["DriverNumber"] = t.DriverNumber.astype(str)
    t["LapNumber"] = t.LapNumber.astype(int)
    t["Reason"] = table_reasons(t)
    t["Clean"] = t.Reason == "clean"
    t = t.sort_values("Time", kind="mergesort").reset_index(drop=True)
    assert not t.Time.duplicated().any(), "no two lap ends share a time: 'before this lap' is unambiguous"
    events = [json.loads(ingest.encode(r)) for r in ingest.table_records(data, "laps")]
    rows, rejected = lf.build_lap_features(events)
    assert rejected == []
    return Race(t, events, {(r["DriverNumber"], r["LapNumber"]): r for r in rows})


@pytest.fixture(scope="module")
def lv(las_vegas: RaceData) -> Race:
    return make_race(las_vegas)


@pytest.fixture(scope="module")
def bh(bahrain: RaceData) -> Race:
    return make_race(bahrain)


@pytest.fixture(params=["lv", "bh"])
def race(request: pytest.FixtureRequest) -> Race:
    return request.getfixturevalue(request.param)


def opt(x: Any) -> Any:
    """NaN / NA -> None; NumPy scalars -> Python."""
    if x is None or x is pd.NA or (isinstance(x, float | np.floating) and math.isnan(x)):
        return None
    return x.item() if isinstance(x, np.generic) else x


def same(got: Any, want: Any) -> bool:
    want = opt(want)
    if want is None or got is None:
        return got is None and want is None
    return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-9)


def mismatches(race: Race, expected: dict[Key, dict[str, Any]]) -> list[tuple[Key, str, Any, Any]]:
    return [
        (key, field, race.rows[key][field], want)
        for key, fields in expected.items()
        for field, want in fields.items()
        if not same(race.rows[key][field], want)
    ]


# --- clean laps -------------------------------------------------------------------------------


def test_clean_reason_of_every_lap_equals_the_table(race: Race) -> None:
    t = race.table
    got = {k: r["CleanReason"] or "clean" for k, r in race.rows.items()}
    want = dict(zip(zip(t.DriverNumber, t.LapNumber, strict=True), t.Reason, strict=True))
    assert got == want
    assert Counter(got.values()) == Counter(t.Reason.value_counts().to_dict())
    assert all(r["IsClean"] == (r["CleanReason"] is None) for r in race.rows.values())


def test_reason_counts_per_race(lv: Race, bh: Race) -> None:
    """Counts from the table (pandas), plus the race facts they encode."""
    for race in (lv, bh):
        got = Counter(r["CleanReason"] or "clean" for r in race.rows.values())
        assert got == Counter(race.table.Reason)
    lv_t, bh_t = lv.table, bh.table
    # Las Vegas: no lap 1 is timed, so 'no_lap_time' hides 'lap_1' there; Bahrain times every lap 1
    assert lv_t[lv_t.LapNumber == 1].LapTime.isna().all()
    assert Counter(lv.rows[k]["CleanReason"] for k in lv.rows if k[1] == 1) == {"no_lap_time": 20}
    assert Counter(bh.rows[k]["CleanReason"] for k in bh.rows if k[1] == 1) == {"lap_1": 20}
    # deleted laps that are also pit laps count as the pit rule (the first failing one)
    deleted_lv = lv_t[lv_t.Deleted.astype(bool)]
    plain = deleted_lv.PitInTime.isna() & deleted_lv.PitOutTime.isna() & deleted_lv.LapTime.notna()
    assert Counter(r["CleanReason"] for r in lv.rows.values())["deleted"] == int(plain.sum()) == 11
    assert len(deleted_lv) == 13
    # every rule fires somewhere in the two bundled races, so none of the above is vacuous
    assert set(lv_t.Reason) | set(bh_t.Reason) == {*REASONS, "clean"}


@pytest.mark.parametrize(
    ("which", "driver", "n", "reason", "why"),
    [
        ("lv", "1", 1, "no_lap_time", "lap 1 untimed in Las Vegas"),
        ("bh", "1", 1, "lap_1", "timed lap 1 (99.019 s, status '12'): the lap-1 rule comes first"),
        ("lv", "1", 2, "track_status", "VSC: status '671'"),
        ("lv", "1", 3, "track_status", "safety car: status '124'"),
        ("lv", "1", 14, "track_status", "yellow: status '12'"),
        ("bh", "1", 42, "track_status", "VSC and VSC ending: status '671'"),
        ("lv", "1", 16, "pit_in", "PitInTime 2703.228"),
        ("lv", "1", 17, "pit_out", "PitOutTime 2729.931"),
        ("lv", "1", 26, "pit_in", "pits under SC (status '14'): pit rule first"),
        ("lv", "31", 8, "deleted", "Ocon lap 8 deleted, green, no pit"),
        ("lv", "31", 9, "deleted", "Ocon lap 9 deleted, green, no pit"),
        ("lv", "44", 17, "pit_in", "Hamilton lap 17 deleted and a pit-in lap: pit rule first"),
        ("lv", "1", 7, None, "first green racing lap after the SC"),
        ("bh", "1", 2, "track_status", "yellow: status '12'"),
    ],
)
def test_clean_reason_on_known_real_laps(
    request: pytest.FixtureRequest, which: str, driver: str, n: int, reason: str | None, why: str
) -> None:
    race: Race = request.getfixturevalue(which)
    raw = race.lap(driver, n)
    assert raw.Reason == (reason or "clean"), why
    assert lf.clean_reason(race.event(driver, n)) == reason, why
    assert race.rows[(driver, n)]["CleanReason"] == reason
    assert race.rows[(driver, n)]["IsClean"] is (reason is None)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(None, None), ("", None), ("1", None), ("11", None), ("7", "track_status"), ("15", "track_status")],
)
def test_track_status_variants_of_a_real_clean_lap(lv: Race, status: str | None, reason: str | None) -> None:
    """A missing status counts as green; any code other than '1' (here VSC ending, red) does not."""
    lap = {**lv.event("1", 7), "TrackStatus": status}
    assert lf.clean_reason(lap) == reason


# --- fuel model -------------------------------------------------------------------------------


def test_documented_fuel_constants() -> None:
    assert (lf.FUEL_START_KG, lf.FUEL_BURN_KG_PER_LAP, lf.FUEL_EFFECT_S_PER_KG) == (105.0, 1.7, 0.03)


@pytest.mark.parametrize(
    ("n", "kg"),
    # 105 - 1.7 * (n - 1), floored at 0: lap 62 starts with 1.3 kg, lap 63 would be -0.4
    [(1, 105.0), (2, 103.3), (7, 94.8), (50, 21.7), (57, 9.8), (62, 1.3), (63, 0.0), (78, 0.0)],
)
def test_fuel_on_board_at_lap_start(n: int, kg: float) -> None:
    assert lf.fuel_kg(n) == pytest.approx(kg, abs=1e-9)


def test_fuel_corrected_verstappen_lap_7_las_vegas(lv: Race) -> None:
    raw, row = lv.lap("1", 7), lv.rows[("1", 7)]
    assert raw.LapTime == 100.785
    # by hand: 94.8 kg on board -> 0.03 * 94.8 = 2.844 s -> 100.785 - 2.844 = 97.941 s
    assert row["FuelKg"] == pytest.approx(94.8, abs=1e-9)
    assert row["FuelCorrectedLapTime"] == pytest.approx(97.941, abs=1e-9)
    assert lf.fuel_corrected(None, 7) is None


def test_fuel_columns_over_a_race(race: Race) -> None:
    t = race.table
    kg = np.maximum(0.0, 105.0 - 1.7 * (t.LapNumber.to_numpy(dtype=float) - 1))
    fc = t.LapTime.to_numpy() - 0.03 * kg
    expected = {
        (d, n): {"FuelKg": k, "FuelCorrectedLapTime": f, "LapTime": lt}
        for d, n, k, f, lt in zip(t.DriverNumber, t.LapNumber, kg, fc, t.LapTime, strict=True)
    }
    assert mismatches(race, expected) == []


# --- stint slopes (OLS) -----------------------------------------------------------------------


def hand_ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and its standard error, textbook formulas."""
    sxx = float(((x - x.mean()) ** 2).sum())
    slope = float(((x - x.mean()) * (y - y.mean())).sum()) / sxx
    resid = y - (y.mean() + slope * (x - x.mean()))
    return slope, math.sqrt(float((resid**2).sum()) / (len(x) - 2) / sxx)


def stint_points(race: Race, driver: str, stint: int, up_to: int) -> pd.DataFrame:
    t = race.table
    pts = t[(t.DriverNumber == driver) & (t.Stint == stint) & t.Clean & (t.LapNumber <= up_to)]
    pts = pts.sort_values("LapNumber")
    return pts.assign(FC=pts.LapTime - 0.03 * (105.0 - 1.7 * (pts.LapNumber - 1)))


def test_ols_on_verstappen_first_clean_stint_las_vegas(lv: Race) -> None:
    pts = stint_points(lv, "1", 1, up_to=16)
    # stint 1 (mediums): laps 2-6 under VSC/SC, 14 yellow, 16 the pit-in lap
    assert pts.LapNumber.tolist() == [7, 8, 9, 10, 11, 12, 13, 15]
    x, y = pts.TyreLife.to_numpy(dtype=float), pts.FC.to_numpy()
    (slope, _), cov = np.polyfit(x, y, 1, cov=True)
    hand_slope, hand_se = hand_ols(x, y)
    assert slope == pytest.approx(hand_slope, rel=1e-9)
    assert math.sqrt(cov[0, 0]) == pytest.approx(hand_se, rel=1e-9)

    got_slope, got_se = lf.ols(list(x), list(y))
    assert got_slope == pytest.approx(slope, rel=1e-9)
    assert got_se == pytest.approx(hand_se, rel=1e-9)
    for n in (15, 16):  # the pit-in lap adds no clean point: same slope as lap 15
        row = lv.rows[("1", n)]
        assert row["StintDegSlope"] == pytest.approx(slope, rel=1e-9)
        assert row["StintDegSlopeStderr"] == pytest.approx(hand_se, rel=1e-9)
        assert row["StintCleanLaps"] == 8 and row["LapsInStint"] == n

    # trend: raw LapTime vs LapNumber; TyreLife == LapNumber in this stint, so the fuel correction
    # (+0.03 s/kg * 1.7 kg/lap) is the only difference between the two slopes
    trend = np.polyfit(pts.LapNumber.to_numpy(dtype=float), pts.LapTime.to_numpy(), 1)[0]
    assert (pts.TyreLife == pts.LapNumber).all()
    assert lv.rows[("1", 15)]["StintTrendSlope"] == pytest.approx(trend, rel=1e-9)
    assert slope - trend == pytest.approx(0.051, abs=1e-9)


def test_ols_needs_three_points_and_varying_x() -> None:
    assert lf.ols([], []) == (None, None)
    assert lf.ols([1.0], [90.0]) == (None, None)
    assert lf.ols([1.0, 2.0], [90.0, 91.0]) == (None, None)
    assert lf.ols([4.0, 4.0, 4.0], [90.0, 91.0, 92.0]) == (None, None)
    slope, se = lf.ols([1.0, 2.0, 3.0], [90.0, 90.5, 91.0])
    assert slope == pytest.approx(0.5) and se == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("n", "clean_laps"),
    [
        (7, [7]),
        (8, [7, 8]),  # two points: no slope yet
        (9, [7, 8, 9]),
        (17, []),  # stint 2 starts on the pit-out lap
        (19, [18, 19]),
        (20, [18, 19]),  # lap 20 yellow
        (21, [18, 19, 21]),
        (50, [29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 41, 42, 43, 44, 45, 46, 49, 50]),
    ],
)
def test_stint_slopes_of_verstappen_las_vegas(lv: Race, n: int, clean_laps: list[int]) -> None:
    row = lv.rows[("1", n)]
    pts = stint_points(lv, "1", row["Stint"], up_to=n)
    assert pts.LapNumber.tolist() == clean_laps
    assert row["StintCleanLaps"] == len(clean_laps)
    if len(clean_laps) < 3:
        assert row["StintTrendSlope"] is row["StintDegSlope"] is row["StintDegSlopeStderr"] is None
        return
    x, y = pts.TyreLife.to_numpy(dtype=float), pts.FC.to_numpy()
    (deg, _), cov = np.polyfit(x, y, 1, cov=True)
    trend = np.polyfit(pts.LapNumber.to_numpy(dtype=float), pts.LapTime.to_numpy(), 1)[0]
    assert row["StintDegSlope"] == pytest.approx(deg, rel=1e-9, abs=1e-12)
    assert row["StintDegSlopeStderr"] == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-9, abs=1e-12)
    assert row["StintTrendSlope"] == pytest.approx(trend, rel=1e-9, abs=1e-12)


def test_stint_slopes_over_a_race(race: Race) -> None:
    t = race.table
    stints = {key: g.sort_values("LapNumber") for key, g in t[t.Clean].groupby(["DriverNumber", "Stint"])}
    expected: dict[Key, dict[str, Any]] = {}
    for d, n, stint in zip(t.DriverNumber, t.LapNumber, t.Stint, strict=True):
        pts = stints.get((d, stint), t.iloc[:0])
        pts = pts[pts.LapNumber <= n]
        pts = pts.assign(FC=pts.LapTime - 0.03 * (105.0 - 1.7 * (pts.LapNumber - 1)))
        if len(pts) < 3:
            expected[(d, n)] = {"StintDegSlope": None, "StintDegSlopeStderr": None, "StintTrendSlope": None}
            continue
        deg, se = hand_ols(pts.TyreLife.to_numpy(dtype=float), pts.FC.to_numpy())
        trend, _ = hand_ols(pts.LapNumber.to_numpy(dtype=float), pts.LapTime.to_numpy())
        expected[(d, n)] = {"StintDegSlope": deg, "StintDegSlopeStderr": se, "StintTrendSlope": trend}
    assert mismatches(race, expected) == []


# --- rolling pace -----------------------------------------------------------------------------


def test_rolling_windows_verstappen_lap_17_las_vegas(lv: Race) -> None:
    """Lap 17 (pit out): the last clean laps skip 14 (yellow) and 16 (pit in)."""
    t = lv.table
    mine = t[(t.DriverNumber == "1") & t.Clean & (t.LapNumber <= 17)].sort_values("LapNumber")
    assert mine.LapNumber.tolist()[-5:] == [10, 11, 12, 13, 15]
    last3, last5 = mine.LapTime.to_numpy()[-3:], mine.LapTime.to_numpy()[-5:]
    assert last3.tolist() == [98.773, 98.759, 99.477]
    row = lv.rows[("1", 17)]
    # by hand: mean 297.009 / 3 = 99.003; deviations -0.230, -0.244, 0.474 -> std sqrt(0.337112 / 2)
    assert row["Last3Mean"] == pytest.approx(99.003, abs=1e-9) == last3.mean()
    assert row["Last3Median"] == 98.773 == np.median(last3)
    assert row["Last3Std"] == pytest.approx(math.sqrt(0.337112 / 2), abs=1e-9)
    assert row["Last3Std"] == pytest.approx(np.std(last3, ddof=1), rel=1e-12)
    assert row["Last3Min"] == 98.759
    # last 5: 99.484, 98.763, 98.773, 98.759, 99.477 -> sum 495.256
    assert row["Last5Mean"] == pytest.approx(495.256 / 5, abs=1e-9)
    assert row["Last5Median"] == 98.773 == np.median(last5)
    assert row["Last5Std"] == pytest.approx(statistics.stdev(last5.tolist()), rel=1e-12)
    assert row["Last5Min"] == 98.759


def test_rolling_windows_over_a_race(race: Race) -> None:
    t = race.table
    clean = {d: g.sort_values("LapNumber") for d, g in t[t.Clean].groupby("DriverNumber")}
    expected: dict[Key, dict[str, Any]] = {}
    for d, n in zip(t.DriverNumber, t.LapNumber, strict=True):
        g = clean.get(d)
        times = g[g.LapNumber <= n].LapTime.to_numpy() if g is not None else np.array([])
        fields: dict[str, Any] = {}
        for k in (3, 5):
            last = times[-k:]
            fields[f"Last{k}Mean"] = last.mean() if last.size else None
            fields[f"Last{k}Median"] = np.median(last) if last.size else None
            fields[f"Last{k}Std"] = np.std(last, ddof=1) if last.size >= 2 else None
            fields[f"Last{k}Min"] = last.min() if last.size else None
        expected[(d, n)] = fields
    assert mismatches(race, expected) == []


# --- gaps and positions -----------------------------------------------------------------------


@pytest.mark.parametrize(("which", "n"), [("lv", 30), ("bh", 40)])
def test_gaps_on_one_lap(request: pytest.FixtureRequest, which: str, n: int) -> None:
    race: Race = request.getfixturevalue(which)
    t = race.table
    on_lap = t[t.LapNumber == n].sort_values("Time")
    first = on_lap.Time.min()
    previous = None
    for position, (d, end) in enumerate(zip(on_lap.DriverNumber, on_lap.Time, strict=True), start=1):
        row = race.rows[(d, n)]
        assert row["GapToLeader"] == pytest.approx(end - first, abs=1e-9)
        assert row["PositionOnLap"] == position
        if previous is None:
            assert row["GapToLeader"] == 0 and row["IntervalAhead"] is None and not row["InDRSRange"]
        else:
            assert row["IntervalAhead"] == pytest.approx(end - previous, abs=1e-9)
            assert row["InDRSRange"] is (end - previous < 1.0)
        previous = end


def expected_gaps(t: pd.DataFrame) -> dict[Key, dict[str, Any]]:
    order = t.sort_values(["LapNumber", "Time"])
    g = order.groupby("LapNumber").Time
    pos = g.rank(method="first").astype(int)
    frame = pd.DataFrame(
        {
            "d": order.DriverNumber,
            "n": order.LapNumber,
            "end": order.Time,
            "gap": order.Time - g.transform("min"),
            "interval": g.diff(),
            "pos": pos,
            "next_cross": g.shift(-1),  # the next car across the same line
        }
    )
    by_time = t.sort_values("Time")
    down = by_time.LapNumber.cummax() - by_time.LapNumber
    at = {(d, n): r for d, n, r in zip(frame.d, frame.n, frame.itertuples(), strict=True)}
    out: dict[Key, dict[str, Any]] = {}
    for (d, n), r in at.items():
        prev = at.get((d, n - 1))
        behind = None
        if prev is not None and not math.isnan(prev.next_cross) and prev.next_cross < r.end:
            behind = prev.next_cross - prev.end  # only if that car has crossed by this lap's end
        out[(d, n)] = {
            "GapToLeader": r.gap,
            "IntervalAhead": r.interval,
            "PositionOnLap": r.pos,
            "PositionChange": prev.pos - r.pos if prev is not None else None,
            "IntervalBehind": behind,
            "LapsDown": down.loc[r.Index],
        }
    return out


def test_gaps_positions_and_laps_down_over_a_race(race: Race) -> None:
    assert mismatches(race, expected_gaps(race.table)) == []
    for r in race.rows.values():
        assert r["InDRSRange"] is (r["IntervalAhead"] is not None and r["IntervalAhead"] < 1.0)
    assert any(r["InDRSRange"] for r in race.rows.values())


def test_lapped_cars(lv: Race, bh: Race) -> None:
    """Bahrain 2023: Norris finished two laps down; Las Vegas 2023: Tsunoda's last lap (47, he
    retired) ended after Verstappen had completed lap 48."""
    for race, driver, n, down in ((bh, "4", 55, 2), (lv, "22", 47, 1)):
        t = race.table
        end = race.lap(driver, n).Time
        leader_laps = int(t[t.Time <= end].LapNumber.max())
        assert leader_laps - n == down
        row = race.rows[(driver, n)]
        assert row["LapsDown"] == down
        # gap to leader: since the leader completed the same lap, so more than a lap's time here
        first = t[t.LapNumber == n].Time.min()
        assert row["GapToLeader"] == pytest.approx(end - first, abs=1e-9)
        assert row["GapToLeader"] > t[t.LapNumber == n].LapTime.min()
    lapped_bh = {d for (d, _), r in bh.rows.items() if r["LapsDown"] > 0}
    assert {"4", "20", "27", "31"} <= lapped_bh
    assert [k for k, r in lv.rows.items() if r["LapsDown"] > 0] == [("22", 47)]


# --- pace deltas (causal) ---------------------------------------------------------------------


def expected_pace(t: pd.DataFrame) -> dict[Key, dict[str, Any]]:
    """Recompute every pace reference from the table using only laps ended before this one."""
    drv, n, end = t.DriverNumber.to_numpy(), t.LapNumber.to_numpy(), t.Time.to_numpy()
    lt, clean, team = t.LapTime.to_numpy(dtype=float), t.Clean.to_numpy(), t.Team.to_numpy()

    def latest(mask: np.ndarray) -> int | None:
        idx = np.flatnonzero(mask)
        return int(idx[np.argmax(end[idx])]) if idx.size else None

    def delta(i: int, ref: float | None) -> float | None:
        return None if ref is None or math.isnan(ref) or math.isnan(lt[i]) else lt[i] - ref

    out: dict[Key, dict[str, Any]] = {}
    for i in range(len(t)):
        before, mine = end < end[i], drv == drv[i]
        own_pbs = lt[before & clean & mine]
        field_best = lt[before & clean]
        mate = latest(before & clean & (team == team[i]) & ~mine)
        ahead = latest(before & (n == n[i]))
        prev = latest(mine & (n == n[i] - 1))
        behind_time = None
        if prev is not None:
            later = np.flatnonzero((n == n[i] - 1) & (end > end[prev]) & before)
            if later.size:
                car = drv[later[np.argmin(end[later])]]
                behind_time = lt[np.flatnonzero(before & (drv == car))[-1]]  # its latest lap
        window = lt[before & clean & (n >= n[i] - 2) & (n <= n[i])]
        upto = np.flatnonzero((end <= end[i]) & clean & mine)
        best = int(upto[np.argmin(lt[upto])]) if upto.size else None  # first of equal bests
        out[(drv[i], n[i])] = {
            "DeltaToPB": delta(i, own_pbs.min() if own_pbs.size else None),
            "DeltaToSessionBest": delta(i, field_best.min() if field_best.size else None),
            "DeltaToTeammate": delta(i, lt[mate] if mate is not None else None),
            "DeltaToCarAhead": delta(i, lt[ahead] if ahead is not None else None),
            "DeltaToCarBehind": delta(i, behind_time),
            "DeltaToFieldMedian": delta(i, statistics.median(window.tolist()) if window.size else None),
            "PersonalBest": lt[best] if best is not None else None,
            "LapsSincePB": n[i] - n[best] if best is not None else None,
        }
    return out


def test_pace_deltas_over_a_race(race: Race) -> None:
    assert mismatches(race, expected_pace(race.table)) == []


def test_pace_deltas_by_hand_las_vegas(lv: Race) -> None:
    """A few laps worked through from the table."""
    t = lv.table
    # Verstappen lap 18 (first clean lap on hards): PB so far is lap 13, 98.759 (lap 11: 98.763)
    row = lv.rows[("1", 18)]
    assert lv.lap("1", 18).LapTime == 98.348
    assert row["DeltaToPB"] == pytest.approx(98.348 - 98.759, abs=1e-9) and row["DeltaToPB"] < 0
    assert row["PersonalBest"] == 98.348 and row["LapsSincePB"] == 0
    # lap 17 (pit out, 122.018) keeps the PB of lap 13 and counts 4 laps since it
    assert lv.rows[("1", 17)]["PersonalBest"] == 98.759 and lv.rows[("1", 17)]["LapsSincePB"] == 4
    assert lv.rows[("1", 17)]["DeltaToPB"] == pytest.approx(122.018 - 98.759, abs=1e-9)

    # Perez (11, same team) on Verstappen's lap 40: his latest clean lap before VER's lap 40 end
    ver40 = lv.lap("1", 40)
    per = t[(t.DriverNumber == "11") & t.Clean & (t.Time < ver40.Time)].sort_values("Time").iloc[-1]
    assert lv.rows[("1", 40)]["DeltaToTeammate"] == pytest.approx(ver40.LapTime - per.LapTime, abs=1e-9)

    # the car ahead on lap 30 of the second car across the line
    on30 = t[t.LapNumber == 30].sort_values("Time")
    first, second = on30.iloc[0], on30.iloc[1]
    assert lv.rows[(second.DriverNumber, 30)]["DeltaToCarAhead"] == pytest.approx(
        second.LapTime - first.LapTime, abs=1e-9
    )
    assert lv.rows[(first.DriverNumber, 30)]["DeltaToCarAhead"] is None

    # field median on Verstappen's lap 45: clean laps 43-45 ended before his lap 45 end
    ver45 = lv.lap("1", 45)
    window = t[t.Clean & t.LapNumber.between(43, 45) & (t.Time < ver45.Time)].LapTime
    assert lv.rows[("1", 45)]["DeltaToFieldMedian"] == pytest.approx(
        ver45.LapTime - window.median(), abs=1e-9
    )
    # session best before Verstappen's lap 45
    best = t[t.Clean & (t.Time < ver45.Time)].LapTime.min()
    assert lv.rows[("1", 45)]["DeltaToSessionBest"] == pytest.approx(ver45.LapTime - best, abs=1e-9)


# --- duplicates, late laps, state -------------------------------------------------------------


def fold(events: list[dict[str, Any]], state: dict[str, Any] | None = None) -> Any:
    outs = []
    for e in events:
        state, out = lf.lap_step(state, e)
        outs.append(out)
    return state, outs


def test_duplicate_lap_is_rejected_and_leaves_the_state_unchanged(lv: Race) -> None:
    events = sorted(lv.events, key=lambda e: e["SessionTime"])
    state, _ = fold(events[:300])
    last = events[299]
    snapshot = copy.deepcopy(state)
    new_state, out = lf.lap_step(state, copy.deepcopy(last))
    n, d = last["LapNumber"], last["DriverNumber"]
    assert out == f"duplicate or out-of-order lap {n} of driver {d} (last processed lap {n})"
    assert new_state == snapshot
    # and the race carries on exactly as if the duplicate had never come
    _, rest = fold(events[300:], new_state)
    assert rest == [lv.rows[(e["DriverNumber"], e["LapNumber"])] for e in events[300:]]


def test_out_of_order_lap_is_rejected_and_leaves_the_state_unchanged(lv: Race) -> None:
    events = sorted(lv.events, key=lambda e: e["SessionTime"])
    upto = next(i for i, e in enumerate(events) if e["DriverNumber"] == "1" and e["LapNumber"] == 10)
    state, _ = fold(events[: upto + 1])
    snapshot = copy.deepcopy(state)
    late = {**lv.event("1", 3)}
    new_state, out = lf.lap_step(state, late)
    assert out == "duplicate or out-of-order lap 3 of driver 1 (last processed lap 10)"
    assert new_state == snapshot


def test_state_survives_json_serialization(lv: Race) -> None:
    """Quix keeps the session state as JSON: a round trip at any point changes no later feature."""
    events = sorted(lv.events, key=lambda e: e["SessionTime"])
    state, _ = fold(events[:473])
    restored = json.loads(json.dumps(state))
    assert restored == state
    _, direct = fold(events[473:], copy.deepcopy(state))
    _, resumed = fold(events[473:], restored)
    assert resumed == direct

    # a round trip before every lap gives the offline build exactly
    st: dict[str, Any] | None = None
    for i, e in enumerate(events):
        if i % 10 == 0:
            st = json.loads(json.dumps(st))
        st, out = lf.lap_step(st, e)
        assert out == lv.rows[(e["DriverNumber"], e["LapNumber"])]


# --- offline build ----------------------------------------------------------------------------


def test_build_yields_one_valid_row_per_lap(race: Race) -> None:
    t = race.table
    assert len(race.rows) == len(t) == len(race.events)
    assert set(race.rows) == set(zip(t.DriverNumber, t.LapNumber, strict=True))
    for raw in t.itertuples():
        row = race.rows[(raw.DriverNumber, raw.LapNumber)]
        model = schemas.LapFeatures.model_validate(row)
        assert model.model_dump(exclude={"v"}).keys() == row.keys()
        assert row["SessionTime"] == raw.Time
        assert (row["Driver"], row["Team"], row["Stint"], row["Compound"]) == (
            raw.Driver,
            raw.Team,
            raw.Stint,
            raw.Compound,
        )
        assert same(row["TyreLife"], raw.TyreLife) and row["FreshTyre"] == raw.FreshTyre


def test_build_sorts_its_input_by_event_time(lv: Race) -> None:
    shuffled = list(lv.events)
    random.Random(2023).shuffle(shuffled)
    rows, rejected = lf.build_lap_features(shuffled)
    assert rejected == []
    assert [r["SessionTime"] for r in rows] == sorted(lv.table.Time)
    assert {(r["DriverNumber"], r["LapNumber"]): r for r in rows} == lv.rows


def test_build_rejects_a_duplicate_event(lv: Race) -> None:
    rows, rejected = lf.build_lap_features([*lv.events, lv.event("16", 20)])
    assert rejected == ["duplicate or out-of-order lap 20 of driver 16 (last processed lap 20)"]
    assert {(r["DriverNumber"], r["LapNumber"]): r for r in rows} == lv.rows
