"""The overtake model's settings, pair rows, labels and feature matrix (definitions in
``overtake``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import base

HORIZONS: tuple[int, ...] = (1, 2, 3)
SESSION_KEYS: tuple[str, ...] = ("Year", "EventName", "SessionKey")
AHEAD = "Ahead"
NEUTRALISED = frozenset("4567")  # TrackStatus codes: SC, red flag, VSC deployed, VSC ending

# LapFeatures columns a pair row takes from each car (B unprefixed, A as Ahead<col>).
PAIR_COLUMNS: tuple[str, ...] = (
    "DriverNumber",
    "SessionTime",
    "LapTime",
    "Compound",
    "TyreLife",
    "LapsInStint",
    "Last3Median",
    "Last5Median",
    "StintDegSlope",
    "DeltaToCarAhead",
    "IntervalAhead",
    "InDRSRange",
    "PositionOnLap",
    "LapNumber",
)
# The LapFeatures columns the service must provide per car (the Feast overtake service).
SERVICE_FEATURES: tuple[str, ...] = tuple(c for c in PAIR_COLUMNS if c not in ("DriverNumber", "SessionTime"))
# Softness order of the dry compounds (0 = softest); wet tyres get their own codes.
COMPOUND_ORDER: dict[str, float] = {
    "HYPERSOFT": 0.0,
    "ULTRASOFT": 1.0,
    "SUPERSOFT": 2.0,
    "SOFT": 3.0,
    "MEDIUM": 4.0,
    "HARD": 5.0,
    "INTERMEDIATE": 7.0,
    "WET": 8.0,
}
FEATURES: tuple[str, ...] = (
    "IntervalAhead",
    "InDRSRange",
    "DeltaToCarAhead",
    "Last3MedianDelta",
    "Last5MedianDelta",
    "StintDegSlopeDelta",
    "TyreLifeDelta",
    "TyreLife",
    "AheadTyreLife",
    "CompoundCode",
    "AheadCompoundCode",
    "CompoundStep",
    "LapsInStint",
    "AheadLapsInStint",
    "AheadIntervalAhead",
    "LapNumber",
    "PositionOnLap",
    "CircuitPassRate",
)
MONOTONE: dict[str, int] = {"IntervalAhead": -1, "InDRSRange": 1}
CIRCUIT_RATE_PRIOR_ROWS = 300.0  # shrinkage of a circuit's pass rate to the overall rate (rows)

TEST_RACES = base.TEST_RACES
VALIDATION_RACES = base.VALIDATION_RACES


def label(h: int) -> str:
    return f"Overtake{h}"


def prediction(h: int) -> str:
    return f"OvertakeProbability{h}Lap" if h == 1 else f"OvertakeProbability{h}Laps"


# ------------------------------------------------------------------ pairs and labels
def _keys(frame: pd.DataFrame) -> list[str]:
    return [k for k in SESSION_KEYS if k in frame.columns]


def pair_rows(laps: pd.DataFrame) -> pd.DataFrame:
    """One row per (car behind B, car ahead A) adjacent in crossing order on the same lap.

    ``laps``: LapFeatures rows (one lap of one session at serving, a whole corpus offline) with the
    session keys present among Year/EventName/SessionKey, ``LapNumber``, ``PositionOnLap`` and the
    :data:`PAIR_COLUMNS`. Output: B's columns as given, A's :data:`PAIR_COLUMNS` as ``Ahead<col>``;
    B = every car whose car ahead (``PositionOnLap`` - 1) is in ``laps``. Index: B's row index.
    """
    keys = [*_keys(laps), "LapNumber"]
    ahead = laps[[*keys, *[c for c in PAIR_COLUMNS if c not in keys]]].copy()
    ahead = ahead.rename(columns={c: AHEAD + c for c in ahead.columns if c not in keys})
    ahead["PositionOnLap"] = ahead[AHEAD + "PositionOnLap"] + 1
    behind = laps[laps["PositionOnLap"] > 1]
    out = behind.reset_index(names="_BehindRow").merge(ahead, on=[*keys, "PositionOnLap"], how="inner")
    out = out.set_index("_BehindRow")
    out.index.name = behind.index.name
    return out


def lap_flags(raw_laps: pd.DataFrame) -> pd.DataFrame:
    """Per raw driver-lap: ``Pitted`` (PitInTime or PitOutTime set), ``PitIn`` and ``Neutralised``
    (TrackStatus has a safety-car, red-flag or VSC code), keyed by Year/EventName/DriverNumber/
    LapNumber."""
    status = raw_laps["TrackStatus"].astype(object).fillna("").astype(str)
    return pd.DataFrame(
        {
            "Year": raw_laps["Year"].to_numpy(),
            "EventName": raw_laps["EventName"].to_numpy(),
            "DriverNumber": raw_laps["DriverNumber"].astype(str).to_numpy(),
            "LapNumber": raw_laps["LapNumber"].astype(int).to_numpy(),
            "PitIn": raw_laps["PitInTime"].notna().to_numpy(),
            "Pitted": (raw_laps["PitInTime"].notna() | raw_laps["PitOutTime"].notna()).to_numpy(),
            "Neutralised": status.map(lambda s: bool(NEUTRALISED.intersection(s))).to_numpy(),
        }
    )


def overtake_labels(pairs: pd.DataFrame, laps: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """``Overtake1..3`` (nullable 0/1, NA = censored; see the module docstring) for pair rows.

    ``laps`` gives each driver-lap's line crossing (``SessionTime``), ``flags`` its pit flags
    (:func:`lap_flags`); a driver-lap missing from ``laps`` was not completed."""
    race = ["Year", "EventName"]
    crossing = laps[[*race, "DriverNumber", "LapNumber", "SessionTime"]].assign(
        DriverNumber=lambda f: f["DriverNumber"].astype(str)
    )
    crossing = crossing.merge(flags[[*race, "DriverNumber", "LapNumber", "Pitted"]], how="left")
    crossing["Pitted"] = crossing["Pitted"].astype("boolean").fillna(False).astype(bool)
    look = crossing.set_index([*race, "DriverNumber", "LapNumber"])
    comparable = np.ones(len(pairs), dtype=bool)
    passed = np.zeros(len(pairs), dtype=bool)
    out = pd.DataFrame(index=pairs.index)
    for k in range(1, max(HORIZONS) + 1):
        lap = pairs["LapNumber"].astype(int) + k
        ends = {}
        for who in ("", AHEAD):
            idx = pd.MultiIndex.from_arrays(
                [pairs["Year"], pairs["EventName"], pairs[who + "DriverNumber"].astype(str), lap]
            )
            ends[who] = look.reindex(idx)
        ok = np.ones(len(pairs), dtype=bool)
        for got in ends.values():
            ok &= got["SessionTime"].notna().to_numpy() & ~got["Pitted"].astype("boolean").fillna(
                True
            ).to_numpy(dtype=bool)
        comparable &= ok
        ahead_now = ends[""]["SessionTime"].to_numpy() < ends[AHEAD]["SessionTime"].to_numpy()
        passed |= comparable & ahead_now
        if k in HORIZONS:
            values = pd.Series(passed.astype(int), index=pairs.index, dtype="Int8")
            out[label(k)] = values.mask(~passed & ~comparable)
    return out


def labelled_pairs(corpus: base.Corpus) -> pd.DataFrame:
    """Pair rows of every lap in the corpus that pass the row filter, with their labels."""
    flags = lap_flags(corpus.raw_laps)
    pairs = pair_rows(corpus.laps)
    keyed = flags.set_index(["Year", "EventName", "DriverNumber", "LapNumber"])
    keep = np.ones(len(pairs), dtype=bool)
    for who in ("", AHEAD):
        idx = pd.MultiIndex.from_arrays(
            [pairs["Year"], pairs["EventName"], pairs[who + "DriverNumber"].astype(str), pairs["LapNumber"]]
        )
        got = keyed.reindex(idx)
        keep &= ~got["PitIn"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        if who == "":
            keep &= ~got["Neutralised"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    pairs = pairs[keep]
    return pd.concat([pairs, overtake_labels(pairs, corpus.laps, flags)], axis=1)


# ------------------------------------------------------------------ features
def _num(frame: pd.DataFrame, name: str) -> pd.Series:
    return pd.Series(base.as_float(frame[name]), index=frame.index, name=name)


def compound_code(col: pd.Series) -> pd.Series:
    """:data:`COMPOUND_ORDER` code of a Compound name (NaN when unknown)."""
    return pd.Series(_codes(col.tolist()), index=col.index, name=col.name)


def _codes(names: list[Any]) -> np.ndarray:
    return np.array(
        [COMPOUND_ORDER.get(c, np.nan) if isinstance(c, str) else np.nan for c in names], dtype=float
    )


def circuit_rates(pairs: pd.DataFrame, prior_rows: float = CIRCUIT_RATE_PRIOR_ROWS) -> dict[str, Any]:
    """Per-circuit (EventName) 1-lap pass rate, shrunk to the overall rate:
    (passes + prior_rows * overall) / (rows + prior_rows), over labelled pair rows. Also keeps
    per-race counts so training rows can use a leave-one-race-out rate."""
    y = pairs[label(1)]
    rows = pairs[y.notna()].assign(y=y.dropna().astype(float))
    by_race = rows.groupby(["Year", "EventName"])["y"].agg(["sum", "count"]).reset_index()
    overall = float(rows["y"].mean()) if len(rows) else 0.0
    return {
        "overall": overall,
        "prior_rows": prior_rows,
        "races": [
            [int(y), str(e), float(n_pass), float(n_rows)]
            for y, e, n_pass, n_rows in by_race.itertuples(index=False, name=None)
        ],
    }


def circuit_rate(pairs: pd.DataFrame, rates: dict[str, Any], leave_race_out: bool = False) -> pd.Series:
    """``CircuitPassRate`` per pair row from :func:`circuit_rates`; rows without EventName (or a
    circuit without training races) get the overall rate. ``leave_race_out``: a row's own race is
    left out of its circuit's counts (for training rows, so the label does not leak)."""
    overall, m = float(rates["overall"]), float(rates["prior_rows"])
    if "EventName" not in pairs.columns:
        return pd.Series(overall, index=pairs.index)
    circuit: dict[str, list[float]] = {}  # passes and rows per circuit: counts, summed exactly
    for _, event, n_pass, n_rows in rates["races"]:
        total = circuit.setdefault(event, [0.0, 0.0])
        total[0] += n_pass
        total[1] += n_rows
    events = pairs["EventName"].tolist()
    passes = np.array([circuit[e][0] if e in circuit else 0.0 for e in events], dtype=float)
    rows = np.array([circuit[e][1] if e in circuit else 0.0 for e in events], dtype=float)
    if leave_race_out and "Year" in pairs.columns:
        table = pd.DataFrame(rates["races"], columns=["Year", "EventName", "passes", "rows"])
        own = table.set_index(["Year", "EventName"])
        idx = pd.MultiIndex.from_arrays([pairs["Year"].astype(int), pairs["EventName"]])
        got = own.reindex(idx)
        passes = passes - got["passes"].fillna(0.0).to_numpy()
        rows = rows - got["rows"].fillna(0.0).to_numpy()
    return pd.Series((passes + m * overall) / (rows + m), index=pairs.index, dtype=float)


def feature_matrix(pairs: pd.DataFrame, rate: pd.Series) -> pd.DataFrame:
    """Model inputs (:data:`FEATURES`, all float) for pair rows; ``rate`` = ``CircuitPassRate``."""
    return pd.DataFrame(
        feature_array(pairs, rate.to_numpy(dtype=float)), columns=list(FEATURES), index=pairs.index
    )


# the pair-row columns the features read as numbers
NUMBERS: tuple[str, ...] = (
    "IntervalAhead", "InDRSRange", "DeltaToCarAhead", "Last3Median", "Last5Median", "StintDegSlope",
    "TyreLife", *(AHEAD + c for c in ("Last3Median", "Last5Median", "StintDegSlope", "TyreLife")),
    "LapsInStint", AHEAD + "LapsInStint", AHEAD + "IntervalAhead", "LapNumber", "PositionOnLap",
)  # fmt: skip


def feature_array(pairs: pd.DataFrame, rate: np.ndarray) -> np.ndarray:
    """:func:`feature_matrix` as the float64 matrix the boosters score (no categorical features):
    built from one conversion of the rows, as frame operations cost more than the model on one pair."""
    num = dict(zip(NUMBERS, base.floats(pairs, list(NUMBERS)).T, strict=True))
    x: dict[str, np.ndarray] = {
        name: num[name] for name in ("IntervalAhead", "InDRSRange", "DeltaToCarAhead")
    }
    for col in ("Last3Median", "Last5Median", "StintDegSlope", "TyreLife"):
        x[f"{col}Delta"] = num[col] - num[AHEAD + col]
    x["TyreLife"] = num["TyreLife"]
    x["AheadTyreLife"] = num[AHEAD + "TyreLife"]
    x["CompoundCode"] = _codes(pairs["Compound"].tolist())
    x["AheadCompoundCode"] = _codes(pairs[AHEAD + "Compound"].tolist())
    x["CompoundStep"] = x["CompoundCode"] - x["AheadCompoundCode"]
    for name in ("LapsInStint", AHEAD + "LapsInStint", AHEAD + "IntervalAhead", "LapNumber", "PositionOnLap"):
        x[name] = num[name]
    x["CircuitPassRate"] = rate
    return np.column_stack([x[name] for name in FEATURES])
