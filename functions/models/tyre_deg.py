"""Model 2, tyre degradation: per driver-lap, the stint's fuel-corrected degradation rate (s/lap)
with an 80% band, a falloff score 0..1 and the probability of a pace 'cliff' in the next laps.

Recipe (shared by training, evaluation and serving):

* **Stint**: one (Year, EventName, DriverNumber, Stint) on a dry compound (:data:`DRY`); wet and
  intermediate stints (drying tracks make their slopes meaningless) get no label.
* **Slope laps** of a stint: its clean laps (``IsClean``) with a FuelCorrectedLapTime and a
  TyreLife whose FuelCorrectedLapTime is at most :data:`OUTLIER_S` (2.0 s) above the stint's
  median clean FuelCorrectedLapTime (drops laps lost to traffic and mistakes).
* **Realised rate** (``RealisedDegRate``, the label, s/lap): the OLS slope of FuelCorrectedLapTime
  vs TyreLife over the stint's slope laps, defined when there are >= :data:`MIN_SLOPE_LAPS` (5)
  of them spanning >= 4 laps of TyreLife. Every lap of the stint carries it: at lap N the model
  predicts the slope the whole stint will show, from what is known at lap N.
* **Rate model**: three quantile LightGBM boosters (alpha 0.1 / 0.5 / 0.9) give ``DegRate`` (the
  median) and ``DegRateP10`` / ``DegRateP90``. The band is widened (or narrowed) by one constant,
  chosen on the validation races so that 80% of their rows fall inside (split-conformal, CQR);
  the three outputs are sorted per row, so P10 <= DegRate <= P90. All three are monotone
  non-decreasing in TyreLife (older tyres never predict a lower rate).
* **FalloffScore** (0..1): the pace a stint has lost since new on the predicted rate,
  ``clip(max(DegRate, 0) * TyreLife / FALLOFF_CAP_S, 0, 1)`` with :data:`FALLOFF_CAP_S` = 2.0 s
  (2 s of fuel-corrected loss = fully worn). Monotone in TyreLife, like DegRate.
* **Cliff** (``CliffNext3``, the classifier's label, lap N): ``Reference`` = the median
  FuelCorrectedLapTime of the driver's last 3 clean laps of this stint up to lap N (needs 3).
  A lap N+k (k = 1..3, same stint, consecutive LapNumbers) *qualifies* when it is clean and in
  free air (IntervalAhead missing or > :data:`FREE_AIR_S` = 1.5 s: not stuck behind a car). The
  label is True when some qualifying lap is >= :data:`CLIFF_S` (1.0 s) slower fuel-corrected
  than Reference, False when at least one lap qualifies and none is, undefined otherwise.
  ``CliffProbability`` comes from a binary LightGBM, monotone non-decreasing in TyreLife.
* **Features**: the ``tyre_deg_v1`` FeatureService (lap_stint + lap_pace); ``Compound`` is
  categorical, absolute lap times are given relative to the anchor (Last3Median, else LapTime).

Baselines: the causal ``StintDegSlope`` so far (the compound median from the training races
while it is undefined) and the compound median alone; for the cliff, the training races' cliff
frequency per (Compound, 5-lap TyreLife bucket).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stratx.functions.models import base

MODEL_NAME = "stratx-tyre-deg"
FEATURE_SERVICE = "tyre_deg_v1"
RATE = "RealisedDegRate"
CLIFF = "CliffNext3"
REFERENCE = "Reference"
STINT_KEYS: tuple[str, ...] = ("Year", "EventName", "DriverNumber", "Stint")
DRY: tuple[str, ...] = ("HYPERSOFT", "ULTRASOFT", "SUPERSOFT", "SOFT", "MEDIUM", "HARD")
OUTLIER_S = 2.0
MIN_SLOPE_LAPS = 5
MIN_LIFE_SPAN = 4.0
CLIFF_S = 1.0
CLIFF_HORIZON = 3
FREE_AIR_S = 1.5
FALLOFF_CAP_S = 2.0
BAND_TARGET = (0.75, 0.85)
QUANTILES: dict[str, float] = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
LIFE_BUCKET = 5

# The tyre_deg_v1 FeatureService (lap_stint + lap_pace), in its order.
SERVICE_FEATURES: tuple[str, ...] = (
    "Stint",
    "Compound",
    "TyreLife",
    "FreshTyre",
    "LapsInStint",
    "StintCleanLaps",
    "FuelKg",
    "FuelCorrectedLapTime",
    "StintTrendSlope",
    "StintDegSlope",
    "StintDegSlopeStderr",
    "LapTime",
    "IsClean",
    "Last3Mean",
    "Last3Median",
    "Last3Std",
    "Last3Min",
    "Last5Mean",
    "Last5Median",
    "Last5Std",
    "Last5Min",
    "PersonalBest",
    "LapsSincePB",
    "DeltaToPB",
    "DeltaToSessionBest",
    "DeltaToTeammate",
    "DeltaToCarAhead",
    "DeltaToCarBehind",
    "DeltaToFieldMedian",
)
MONOTONE_INCREASING: tuple[str, ...] = ("TyreLife",)
# Absolute lap times (s): fed to the model minus the anchor (a 1:32 lap means nothing across circuits).
RELATIVE_TO_ANCHOR: tuple[str, ...] = (
    "LapTime",
    "Last3Mean",
    "Last3Median",
    "Last3Min",
    "Last5Mean",
    "Last5Median",
    "Last5Min",
    "PersonalBest",
    "FuelCorrectedLapTime",
)
COMPOUNDS: tuple[str, ...] = (*DRY, "INTERMEDIATE", "WET")


# ------------------------------------------------------------------ labels
def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values([*STINT_KEYS, "LapNumber"], kind="stable")


def realised_rates(table: pd.DataFrame) -> pd.Series:
    """``RealisedDegRate`` per row of ``table`` (LapFeatures rows): the OLS slope (s/lap) of
    FuelCorrectedLapTime vs TyreLife over the stint's slope laps (see the module docstring); NaN
    for wet stints and stints with too few slope laps."""
    keys = list(STINT_KEYS)
    fc = table["FuelCorrectedLapTime"].astype(float)
    life = table["TyreLife"].astype(float)
    ok = table["IsClean"].fillna(False).astype(bool) & fc.notna() & life.notna()
    ok &= table["Compound"].isin(DRY) & table["Stint"].notna()
    median = fc.where(ok).groupby([table[k] for k in keys], dropna=False).transform("median")
    ok &= fc <= median + OUTLIER_S
    x, y = life.where(ok), fc.where(ok)
    frame = pd.DataFrame({"x": x, "y": y, "xx": x * x, "xy": x * y, "n": ok.astype(float)})
    groups = frame.groupby([table[k] for k in keys], dropna=False)
    s = groups.transform("sum")
    span = groups["x"].transform("max") - groups["x"].transform("min")
    sxx = s["xx"] - s["x"] ** 2 / s["n"]
    sxy = s["xy"] - s["x"] * s["y"] / s["n"]
    valid = (s["n"] >= MIN_SLOPE_LAPS) & (span >= MIN_LIFE_SPAN) & (sxx > 0)
    return (sxy / sxx).where(valid).astype(float)


def cliff_labels(table: pd.DataFrame) -> pd.DataFrame:
    """``Reference`` (s) and ``CliffNext3`` (boolean, NA when undefined) per row of ``table``
    (see the module docstring for both definitions)."""
    s = _ordered(table)
    keys = [s[k] for k in STINT_KEYS]
    clean = s["IsClean"].fillna(False).astype(bool) & s["FuelCorrectedLapTime"].notna()
    dry = s["Compound"].isin(DRY)
    fc = s["FuelCorrectedLapTime"].astype(float)
    rolled = (
        fc[clean]
        .groupby([k[clean] for k in keys], dropna=False)
        .rolling(3, min_periods=3)
        .median()
        .reset_index(level=list(range(len(STINT_KEYS))), drop=True)
    )
    reference = rolled.reindex(s.index).groupby(keys, dropna=False).ffill()
    interval = s["IntervalAhead"].astype(float)
    free = clean & (interval.isna() | (interval > FREE_AIR_S))
    g = pd.DataFrame({"n": s["LapNumber"], "fc": fc, "free": free}).groupby(keys, dropna=False)
    seen = pd.Series(False, index=s.index)
    slow = pd.Series(False, index=s.index)
    for k in range(1, CLIFF_HORIZON + 1):
        follows = g["n"].shift(-k) == s["LapNumber"] + k
        qualifies = follows & g["free"].shift(-k, fill_value=False).astype(bool)
        seen |= qualifies
        slow |= qualifies & (g["fc"].shift(-k) >= reference + CLIFF_S)
    label = pd.Series(pd.array(slow.to_numpy(), dtype="boolean"), index=s.index)
    label[~(seen & reference.notna() & dry)] = pd.NA
    return pd.DataFrame({REFERENCE: reference, CLIFF: label}).reindex(table.index)


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus ``RealisedDegRate``, ``Reference`` and ``CliffNext3``."""
    out = table.copy()
    out[RATE] = realised_rates(table)
    out[[REFERENCE, CLIFF]] = cliff_labels(table)
    return out


# ------------------------------------------------------------------ features
def anchor(table: pd.DataFrame) -> pd.Series:
    """The clean rolling median Last3Median, else this lap's LapTime (no clean lap yet)."""
    return table["Last3Median"].astype(float).fillna(table["LapTime"].astype(float))


def feature_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Model inputs for LapFeatures rows (other columns are ignored): the tyre_deg_v1 service in
    its order, Compound categorical (:data:`COMPOUNDS`), booleans 0/1, and the absolute lap times
    of :data:`RELATIVE_TO_ANCHOR` minus the :func:`anchor` (seconds off the driver's usual pace)."""
    return base.lap_matrix(table, SERVICE_FEATURES, RELATIVE_TO_ANCHOR, anchor(table), COMPOUNDS)


def monotone_constraints(columns: list[str]) -> list[int]:
    return [1 if c in MONOTONE_INCREASING else 0 for c in columns]


# ------------------------------------------------------------------ baselines and metrics
def compound_medians(frame: pd.DataFrame) -> dict[str, float]:
    """Median realised rate per dry compound, one value per stint (not per lap)."""
    stints = frame[frame[RATE].notna()].drop_duplicates(list(STINT_KEYS))
    return {str(c): float(v) for c, v in stints.groupby("Compound")[RATE].median().items()}


def rate_baselines(frame: pd.DataFrame, medians: dict[str, float]) -> dict[str, np.ndarray]:
    """``compound_median``: the training races' median rate of the compound; ``causal_slope``: the
    causal StintDegSlope so far once the stint has >= MIN_SLOPE_LAPS clean laps (the label's own
    minimum; from 3 laps it is mostly noise), the compound median before."""
    overall = float(np.median(list(medians.values()))) if medians else 0.0
    comp = frame["Compound"].map(medians).astype(float).fillna(overall)
    enough = frame["StintCleanLaps"].astype(float) >= MIN_SLOPE_LAPS
    causal = frame["StintDegSlope"].astype(float).where(enough).fillna(comp)
    return {"compound_median": comp.to_numpy(), "causal_slope": causal.to_numpy()}


def cliff_baseline(frame: pd.DataFrame, table: dict[str, float], base_rate: float) -> np.ndarray:
    """The training races' cliff frequency of the row's (Compound, TyreLife bucket)."""
    return np.array([table.get(k, base_rate) for k in _life_keys(frame)], dtype=float)


def _life_keys(frame: pd.DataFrame) -> list[str]:
    bucket = (frame["TyreLife"].astype(float).fillna(0) // LIFE_BUCKET).astype(int).clip(upper=8)
    return [f"{c}|{b}" for c, b in zip(frame["Compound"].astype(str), bucket, strict=True)]


def cliff_frequency(frame: pd.DataFrame) -> tuple[dict[str, float], float]:
    rows = frame[frame[CLIFF].notna()]
    y = rows[CLIFF].astype(bool)
    freq = y.groupby(_life_keys(rows)).mean()
    return {str(k): float(v) for k, v in freq.items()}, float(y.mean()) if len(y) else 0.0


def rate_metrics(frame: pd.DataFrame, medians: dict[str, float]) -> dict[str, float]:
    """On rows with a realised rate: ``{predictor}_rate_mae`` (s/lap) for the model and both
    baselines, the same on early-stint rows (LapsInStint <= 8: ``..._rate_mae_early_stint``),
    ``band80_coverage`` (share of rows with P10 <= realised <= P90), ``band80_mean_width``,
    ``median_rate_s_per_lap`` (realised, one value per stint) and ``model_median_rate_s_per_lap``."""
    rows = frame[frame[RATE].notna()]
    y = rows[RATE].to_numpy(float)
    preds = {"model": rows["DegRate"].to_numpy(float), **rate_baselines(rows, medians)}
    early = (rows["LapsInStint"] <= 8).to_numpy()
    out: dict[str, float] = {"rate_rows": float(len(rows)), "rate_stints": float(_stints(rows))}
    for name, p in preds.items():
        out[f"{name}_rate_mae"] = base.mae(y, p)
        out[f"{name}_rate_mae_early_stint"] = base.mae(y[early], p[early])
    lo, hi = rows["DegRateP10"].to_numpy(float), rows["DegRateP90"].to_numpy(float)
    out["band80_coverage"] = float(np.mean((lo <= y) & (y <= hi))) if len(y) else np.nan
    out["band80_mean_width"] = float(np.mean(hi - lo)) if len(y) else np.nan
    per_stint = rows.drop_duplicates(list(STINT_KEYS))[RATE]
    out["median_rate_s_per_lap"] = float(per_stint.median()) if len(per_stint) else np.nan
    out["model_median_rate_s_per_lap"] = float(np.median(preds["model"])) if len(y) else np.nan
    return out


def cliff_metrics(frame: pd.DataFrame, table: dict[str, float], base_rate: float) -> dict[str, float]:
    """On rows with a cliff label: ``cliff_{model|baseline}_{auc_roc|auc_pr|brier}``, the rows'
    ``cliff_base_rate`` and ``cliff_rows``."""
    rows = frame[frame[CLIFF].notna()]
    y = rows[CLIFF].astype(bool).to_numpy()
    preds = {
        "model": rows["CliffProbability"].to_numpy(float),
        "baseline": cliff_baseline(rows, table, base_rate),
    }
    out = {"cliff_rows": float(len(rows)), "cliff_base_rate": float(y.mean()) if len(y) else np.nan}
    for name, p in preds.items():
        out[f"cliff_{name}_auc_roc"] = base.auc_roc(y, p)
        out[f"cliff_{name}_auc_pr"] = base.auc_pr(y, p)
        out[f"cliff_{name}_brier"] = base.brier(y, p)
    return out


def _stints(frame: pd.DataFrame) -> int:
    return int(frame.groupby(list(STINT_KEYS), dropna=False).ngroups) if len(frame) else 0


# ------------------------------------------------------------------ fit, predict, evaluate
# Chosen on the validation races only.
LGB_PARAMS: dict[str, Any] = {
    "learning_rate": 0.2,
    "max_bin": 63,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "seed": 0,
    "deterministic": True,
    "num_threads": 2,
    "verbose": -1,
}
# The cliff classifier learns slower: 0.05 gave the best validation AUC (0.2 stops after 7 trees).
CLIFF_OBJECTIVE: dict[str, Any] = {"objective": "binary", "learning_rate": 0.05}
MAX_ROUNDS = 400
EARLY_STOPPING = 30
SELECTION_METRIC = "val_model_rate_mae"


def fit_booster(
    x: pd.DataFrame,
    y: pd.Series,
    split: pd.Series,
    objective: dict[str, Any],
    rounds: int = MAX_ROUNDS,
    params: dict[str, Any] | None = None,
    progress: bool = False,
    name: str = "rate",
) -> Any:
    """One LightGBM booster on the train races' rows, early-stopped on the validation races'."""
    import lightgbm as lgb

    p = {**LGB_PARAMS, **objective, **(params or {})}
    if p["objective"] != "quantile":  # LightGBM refuses it there (see life_envelope)
        p["monotone_constraints"] = monotone_constraints(list(x.columns))
    train, val = (split == "train").to_numpy(), (split == "validation").to_numpy()
    if not train.any():
        raise ValueError("no training rows: every race is a test or validation race")
    data = lgb.Dataset(x[train], y[train], categorical_feature=["Compound"])
    valid_sets, callbacks = [], []
    if val.any():
        valid_sets = [lgb.Dataset(x[val], y[val], reference=data)]
        callbacks.append(lgb.early_stopping(EARLY_STOPPING, verbose=False))
    with base.rounds_progress(rounds, f"tyre-deg {name} trees", progress) as tick:
        return lgb.train(p, data, rounds, valid_sets=valid_sets, callbacks=[*callbacks, tick])


def life_thresholds(booster: Any) -> list[float]:
    """The TyreLife split thresholds of a booster, sorted (its prediction is constant between them)."""
    model = booster.dump_model()
    column = model["feature_names"].index("TyreLife")
    found: set[float] = set()

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" in node:
            if node["split_feature"] == column:
                found.add(float(node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in model["tree_info"]:
        walk(tree["tree_structure"])
    return sorted(found)


def life_envelope(booster: Any, x: pd.DataFrame, thresholds: list[float]) -> np.ndarray:
    """The booster's prediction made monotone non-decreasing in TyreLife: per row, the maximum of
    its predictions at every TyreLife <= the row's (``thresholds`` + the row's own value stand for
    every piece of the piecewise-constant response). LightGBM refuses monotone constraints with the
    quantile objective; this gives the same guarantee. Rows without a TyreLife keep the raw value."""
    it = booster.best_iteration or None
    out = np.asarray(booster.predict(x, num_iteration=it), dtype=float)
    life = x["TyreLife"].to_numpy(dtype=float)
    for t in thresholds:
        older = np.isfinite(life) & (life > t)
        if older.any():
            younger = x[older].assign(TyreLife=t)
            out[older] = np.maximum(out[older], booster.predict(younger, num_iteration=it))
    return out


def raw_predictions(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """Uncalibrated quantiles (monotone in TyreLife) and the cliff probability per LapFeatures row."""
    x = feature_matrix(rows)
    out = pd.DataFrame(index=rows.index)
    cuts = bundle.meta.get("life_thresholds", {})
    for name in QUANTILES:
        booster = bundle.boosters[name]
        out[name] = life_envelope(booster, x, cuts.get(name) or life_thresholds(booster))
    cliff = bundle.boosters["cliff"]
    out["cliff"] = cliff.predict(x, num_iteration=cliff.best_iteration or None)
    return out


def predict(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """``DegRate``, ``DegRateP10``, ``DegRateP90`` (s/lap), ``FalloffScore`` (0..1) and
    ``CliffProbability`` per LapFeatures row."""
    raw = raw_predictions(bundle, rows)
    widen = float(bundle.meta.get("band_widening", 0.0))
    q = np.sort(np.column_stack([raw["p10"] - widen, raw["p50"], raw["p90"] + widen]), axis=1)
    life = rows["TyreLife"].astype(float).fillna(0.0).to_numpy()
    falloff = np.clip(np.maximum(q[:, 1], 0.0) * life / FALLOFF_CAP_S, 0.0, 1.0)
    return pd.DataFrame(
        {
            "DegRate": q[:, 1],
            "DegRateP10": q[:, 0],
            "DegRateP90": q[:, 2],
            "FalloffScore": falloff,
            "CliffProbability": raw["cliff"].to_numpy(),
        },
        index=rows.index,
    )


def band_widening(realised: np.ndarray, p10: np.ndarray, p90: np.ndarray, coverage: float = 0.8) -> float:
    """Split-conformal (CQR) constant: the ``coverage`` quantile of max(P10 - y, y - P90) on the
    calibration rows; adding it to both band ends makes ``coverage`` of them fall inside."""
    score = np.maximum(p10 - realised, realised - p90)
    return float(np.quantile(score, coverage)) if len(score) else 0.0


def fit(
    corpus: base.Corpus,
    split: base.Splitter = base.race_split,
    progress: bool = False,
    params: dict[str, Any] | None = None,
    rounds: int = MAX_ROUNDS,
) -> tuple[base.ModelBundle, dict[str, float]]:
    """Fit the three rate quantiles and the cliff classifier on the train races, early-stop them
    and calibrate the band on the validation races; returns the bundle and ``val_`` metrics."""
    frame = labelled(corpus.laps)
    where = split(frame)
    has_rate, has_cliff = frame[RATE].notna(), frame[CLIFF].notna()
    x = feature_matrix(frame)
    boosters: dict[str, Any] = {}
    for name, alpha in QUANTILES.items():
        objective = {"objective": "quantile", "alpha": alpha}
        y = frame.loc[has_rate, RATE]
        boosters[name] = fit_booster(
            x[has_rate], y, where[has_rate], objective, rounds, params, progress, name
        )
    y = frame.loc[has_cliff, CLIFF].astype(float)
    boosters["cliff"] = fit_booster(
        x[has_cliff], y, where[has_cliff], CLIFF_OBJECTIVE, rounds, params, progress, "cliff"
    )
    train = frame[where == "train"]
    medians = compound_medians(train)
    cliff_table, cliff_rate = cliff_frequency(train)
    meta: dict[str, Any] = {
        "target": "stint_fuel_corrected_deg_slope_s_per_lap",
        "features": list(SERVICE_FEATURES),
        "params": {**LGB_PARAMS, **(params or {})},
        "cliff_objective": CLIFF_OBJECTIVE,
        "best_iterations": {n: b.best_iteration or b.current_iteration() for n, b in boosters.items()},
        "life_thresholds": {n: life_thresholds(boosters[n]) for n in QUANTILES},
        "compound_median_rate": medians,
        "cliff_frequency": cliff_table,
        "cliff_base_rate": cliff_rate,
        "band_widening": 0.0,
    }
    bundle = base.ModelBundle("tyre_deg", boosters, meta)
    val = frame[(where == "validation") & (has_rate | has_cliff)]
    if val.empty:
        return bundle, {}
    calib = val[val[RATE].notna()]
    if not calib.empty:
        raw = raw_predictions(bundle, calib)
        p10, p50, p90 = (raw[q].to_numpy(float) for q in QUANTILES)
        lo, hi = np.minimum(p10, p50), np.maximum(p90, p50)
        meta["band_widening"] = band_widening(calib[RATE].to_numpy(float), lo, hi)
    scored = val.join(predict(bundle, val))
    metrics = {**rate_metrics(scored, medians), **cliff_metrics(scored, cliff_table, cliff_rate)}
    metrics["band80_widening"] = meta["band_widening"]
    return bundle, {f"val_{k}": v for k, v in metrics.items()}


def evaluate(bundle: base.ModelBundle, corpus: base.Corpus) -> base.Evaluation:
    frame = labelled(corpus.laps)
    frame = frame[frame[RATE].notna() | frame[CLIFF].notna()]
    if frame.empty:
        raise ValueError("no stint with a realised rate or a cliff label to score")
    scored = frame.join(predict(bundle, frame))
    medians = bundle.meta.get("compound_median_rate", {})
    table, rate = bundle.meta.get("cliff_frequency", {}), float(bundle.meta.get("cliff_base_rate", 0.0))

    def metrics(rows: pd.DataFrame) -> dict[str, float]:
        return {**rate_metrics(rows, medians), **cliff_metrics(rows, table, rate)}

    overall = metrics(scored)
    per_race = base.per_race(scored, metrics)
    return base.Evaluation(
        metrics=overall,
        scored=scored,
        races=base.race_names(scored),
        targets=[base.Target("band80_coverage", overall["band80_coverage"], "in", BAND_TARGET)],
        per_race=per_race,
        notes=[
            "Rate label: OLS slope of FuelCorrectedLapTime vs TyreLife over the stint's clean laps "
            f"(<= {OUTLIER_S} s above the stint median, >= {MIN_SLOPE_LAPS} laps); every lap of the "
            "stint is scored against it. Dry compounds only.",
            f"Cliff label: a clean free-air lap in the next {CLIFF_HORIZON} laps of the stint >= "
            f"{CLIFF_S} s slower (fuel-corrected) than the median of the last 3 clean laps.",
        ],
    )


RECIPE = base.Recipe(
    key="tyre_deg",
    model_name=MODEL_NAME,
    feature_service=FEATURE_SERVICE,
    service_features=SERVICE_FEATURES,
    selection_metric=SELECTION_METRIC,
    fit=fit,
    evaluate=evaluate,
    predict=predict,
    description="stint's fuel-corrected degradation rate (s/lap) with an 80% band, falloff 0..1, "
    "cliff probability in the next 3 laps",
)
