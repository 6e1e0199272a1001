"""The contract every model recipe follows, and what the recipes share.

A *recipe* (one module per model under ``functions/models/``) turns offline feature tables into
training rows, fits LightGBM boosters, predicts, and scores itself and its baselines. It does no
I/O: ``stratx.bentos.lifecycle.training`` builds the :class:`Corpus`, logs the :class:`ModelBundle` to
MLflow and registers it; ``stratx.bentos.lifecycle.evaluation`` loads the ``@champion`` bundle and
writes the report. Serving loads the same bundle and calls the recipe's ``predict``.

Races are split, never laps: :data:`TEST_RACES` are never used for training or tuning (every
model scores on them), :data:`VALIDATION_RACES` pick early stopping, calibration and the
champion, every other race trains. A recipe may narrow the split when its data only exists for a
few races (the anomaly model's telemetry), and says so in its docstring.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RACE_KEYS: tuple[str, ...] = ("Year", "EventName")
SPLITS = ("train", "validation", "test")

# Test: the 3 bundled races + 3 more of 2023/24, never used for tuning.
TEST_RACES: tuple[tuple[int, str], ...] = (
    (2023, "Bahrain Grand Prix"),
    (2023, "Las Vegas Grand Prix"),
    (2024, "Bahrain Grand Prix"),
    (2024, "Saudi Arabian Grand Prix"),
    (2023, "Abu Dhabi Grand Prix"),
    (2023, "São Paulo Grand Prix"),
)
# Validation: 4 late-2023 races, for early stopping, calibration and choosing the champion.
VALIDATION_RACES: tuple[tuple[int, str], ...] = (
    (2023, "Qatar Grand Prix"),
    (2023, "Singapore Grand Prix"),
    (2023, "United States Grand Prix"),
    (2023, "Mexico City Grand Prix"),
)


def race_split(frame: pd.DataFrame) -> pd.Series:
    """'test', 'validation' or 'train' per row, by (Year, EventName) (never by lap)."""
    race = list(zip(frame["Year"].astype(int), frame["EventName"].astype(str), strict=True))
    test, val = set(TEST_RACES), set(VALIDATION_RACES)
    return pd.Series(
        ["test" if r in test else "validation" if r in val else "train" for r in race],
        index=frame.index,
        dtype=object,
    )


Splitter = Callable[[pd.DataFrame], pd.Series]


@dataclass
class Corpus:
    """The offline tables a recipe builds its rows from, all produced by the feature functions
    (or read as recorded) for a set of races. Every frame carries ``Year`` and ``EventName``.

    * ``laps``: LapFeatures rows (``feature_build.build_lap_table``), one per driver-lap.
    * ``raw_laps``: the validated Lap events (sector times, speed traps, PitInTime/PitOutTime,
      TrackStatus, Position), one per driver-lap.
    * ``results``: classification per driver (DriverNumber, Status, ClassifiedPosition, Laps);
      may be empty (races loaded without results).
    * ``race_control``: RaceControl messages (Category, Message, Flag, Lap, RacingNumber ...).
    * ``windows``: TelemetryWindow rows of the races with car telemetry, or None when the caller
      did not build them (only recipes with ``needs_windows`` get them).
    * ``data_dir``: the data folder the races came from, for bundled tables a recipe may add (the
      anomaly model's windows of training races, ``data/corpus/``); None: only these tables.
    """

    laps: pd.DataFrame
    raw_laps: pd.DataFrame = field(default_factory=pd.DataFrame)
    results: pd.DataFrame = field(default_factory=pd.DataFrame)
    race_control: pd.DataFrame = field(default_factory=pd.DataFrame)
    windows: pd.DataFrame | None = None
    data_dir: Path | None = None

    def races(self) -> list[str]:
        """'<Year> <EventName>' of every race in ``laps``, sorted."""
        if self.laps.empty:
            return []
        pairs = self.laps[list(RACE_KEYS)].drop_duplicates().itertuples(index=False)
        return sorted(f"{y} {e}" for y, e in pairs)

    def only(self, keep: Callable[[pd.DataFrame], pd.Series]) -> Corpus:
        """The same corpus restricted to the rows where ``keep(frame)`` holds (e.g. test races)."""

        def cut(frame: pd.DataFrame | None) -> pd.DataFrame | None:
            if frame is None or frame.empty:
                return frame
            return frame[keep(frame).to_numpy()]

        return Corpus(
            laps=self.laps[keep(self.laps).to_numpy()],
            raw_laps=cut(self.raw_laps),  # type: ignore[arg-type]
            results=cut(self.results),  # type: ignore[arg-type]
            race_control=cut(self.race_control),  # type: ignore[arg-type]
            windows=cut(self.windows),
            data_dir=self.data_dir,
        )


@dataclass
class ModelBundle:
    """A trained model: named LightGBM boosters plus JSON metadata (feature lists, categories,
    calibration tables, thresholds). Saved as ``<name>.txt`` per booster + ``meta.json``."""

    key: str
    boosters: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            booster.save_model(str(folder / f"{name}.txt"), num_iteration=booster.best_iteration or None)
        manifest = {"key": self.key, "boosters": sorted(self.boosters), "meta": self.meta}
        (folder / "meta.json").write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path, num_threads: int = 1) -> ModelBundle:
        """Load a saved bundle; ``num_threads`` for prediction (1: a service scales by processes,
        and one-row calls pay OpenMP start-up and spin on a busy machine with more)."""
        import lightgbm as lgb

        manifest_path = folder / "meta.json"
        if not manifest_path.is_file():
            raise ValueError(f"{folder} is not a saved model bundle (no meta.json)")
        manifest = json.loads(manifest_path.read_text())
        boosters: dict[str, Any] = {}
        for name in manifest["boosters"]:
            booster = lgb.Booster(model_file=str(folder / f"{name}.txt"))
            booster.predict = functools.partial(booster.predict, num_threads=num_threads)  # type: ignore[method-assign]
            boosters[name] = booster
        return cls(manifest["key"], boosters, manifest.get("meta", {}))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@dataclass(frozen=True)
class Target:
    """A number the issue sets: ``value`` compared with ``threshold`` by ``op`` ('<=' or '>=' or
    'in' for a [low, high] band)."""

    name: str
    value: float
    op: str
    threshold: float | tuple[float, float]

    @property
    def met(self) -> bool:
        if not math.isfinite(self.value):
            return False
        if self.op == "<=":
            return self.value <= float(self.threshold)  # type: ignore[arg-type]
        if self.op == ">=":
            return self.value >= float(self.threshold)  # type: ignore[arg-type]
        low, high = self.threshold  # type: ignore[misc]
        return bool(low <= self.value <= high)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "op": self.op,
            "threshold": self.threshold,
            "met": self.met,
        }


@dataclass
class Evaluation:
    """A recipe's score on some races. ``metrics``: flat, self-explaining names for the model and
    each baseline (e.g. ``model_clean_mae``, ``persistence_clean_mae``); ``scored``: the rows with
    their predictions (for plots and the model card); ``targets``: the issue's numbers."""

    metrics: dict[str, float]
    scored: pd.DataFrame
    races: list[str]
    targets: list[Target] = field(default_factory=list)
    per_race: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


FitFn = Callable[["Corpus", "Splitter", bool], tuple["ModelBundle", dict[str, float]]]
EvaluateFn = Callable[["ModelBundle", "Corpus"], "Evaluation"]
PredictFn = Callable[["ModelBundle", pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class Recipe:
    """One model. ``fit(corpus, split, progress)`` returns the bundle and its validation metrics
    (keys prefixed ``val_``, including ``selection_metric``: lower is better, it picks the
    champion); ``evaluate(bundle, corpus)`` scores on the corpus it is given (the caller passes the
    test races); ``predict(bundle, rows)`` maps feature rows to prediction columns (serving).
    ``service_features``: the LapFeatures fields it reads, exactly what its versioned Feast
    ``feature_service`` holds (tests check both against the schema and ``feature_repo/``)."""

    key: str
    model_name: str
    feature_service: str
    selection_metric: str
    fit: FitFn
    evaluate: EvaluateFn
    predict: PredictFn
    needs_windows: bool = False
    description: str = ""
    service_features: tuple[str, ...] = ()


# ------------------------------------------------------------------ shared helpers
@contextmanager
def rounds_progress(total: int, desc: str, enabled: bool) -> Iterator[Callable[..., None]]:
    """A LightGBM callback that advances a progress bar (stderr) one tree at a time."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="tree", disable=not enabled, leave=False)

    def tick(env: Any) -> None:
        bar.update(1)

    try:
        yield tick
    finally:
        bar.close()


def lap_matrix(
    table: pd.DataFrame,
    features: tuple[str, ...],
    relative: tuple[str, ...],
    anchor: pd.Series,
    categories: tuple[str, ...],
) -> pd.DataFrame:
    """The LapFeatures model matrix the lap recipes share: ``features`` in order, ``Compound``
    categorical over ``categories`` (unknown -> missing), the absolute lap times of ``relative``
    minus ``anchor`` (seconds off the driver's usual pace), everything else float (bools 0/1).
    Built in one DataFrame construction: column-by-column inserts cost more than the model on
    one-row service calls."""
    columns: dict[str, Any] = {}
    base_values = anchor.to_numpy(dtype=float)
    plain = [name for name in features if name != "Compound" and name not in relative]
    block = floats(table, plain)
    for name in features:
        col = table[name]
        if name == "Compound":
            columns[name] = pd.Categorical(
                col.astype(object).where(col.isin(categories)), categories=categories
            )
        elif name in relative:
            columns[name] = col.to_numpy(dtype=float, na_value=np.nan) - base_values
        else:
            columns[name] = block[:, plain.index(name)]
    return pd.DataFrame(columns, index=table.index)


def lap_array(
    table: pd.DataFrame,
    features: tuple[str, ...],
    relative: tuple[str, ...],
    anchor: np.ndarray,
    categories: tuple[str, ...],
    trained: list[list[Any]] | None,
    given: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """What ``boosters.matrix(lap_matrix(table, ...), trained)`` returns (the float64 matrix the
    booster scores; ``trained``: its ``pandas_categorical``), without the two frames in between:
    on the one-row frames of a service request those cost several times the trees. ``given``:
    float columns computed by the caller, read instead of the table's (e.g. derived features)."""
    given = given or {}
    plain = [name for name in features if name != "Compound" and name not in given]
    out = np.empty((len(table), len(features)))
    out[:, [features.index(name) for name in plain]] = floats(table, plain)
    for name, values in given.items():
        out[:, features.index(name)] = values
    out[:, [features.index(name) for name in relative if name in features]] -= anchor[:, None]
    if "Compound" in features:
        if trained is not None and len(trained) != 1:
            raise ValueError(f"the model has {len(trained)} categorical features, the frame 1")
        codes = {c: float(i) for i, c in enumerate(categories if trained is None else trained[0])}
        known = set(categories)
        out[:, features.index("Compound")] = [
            codes.get(c, np.nan) if c in known else np.nan for c in table["Compound"].tolist()
        ]
    return out


def anchor_values(table: pd.DataFrame, inputs: tuple[str, str] = ("Last3Median", "LapTime")) -> np.ndarray:
    """The pace anchor of the lap recipes as floats: the clean rolling median, else this lap's
    time (their ``anchor``: ``median.astype(float).fillna(lap.astype(float))``), in one conversion."""
    median, lap = floats(table, list(inputs)).T
    return np.where(np.isnan(median), lap, median)


SMALL_FRAME = 64  # rows: up to this many, one object conversion of the frame beats pandas' selection


def floats(table: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Columns ``names`` of ``table`` as one float matrix, as :func:`as_float` converts each: one
    conversion of the whole block when every value is a number, a bool or missing (the service's
    few-row requests carry ``None`` in object columns), column by column otherwise."""
    if not names:
        return np.empty((len(table), 0))
    if len(table) <= SMALL_FRAME and table.columns.is_unique:  # the numpy cast pandas' would make
        where = table.columns.get_indexer(pd.Index(names))
        try:
            if (where >= 0).all():
                return table.to_numpy(dtype=object)[:, where].astype(float)
        except (TypeError, ValueError):
            pass
    try:
        return table[names].to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        return np.column_stack([as_float(table[name]) for name in names])


def as_float(col: pd.Series) -> np.ndarray:
    """A feature column as floats: numbers and bools as they are, missing NaN, anything else
    through ``pd.to_numeric`` (unparseable: NaN). The numeric case skips the object round trip,
    which cost more than the model on one-row service calls."""
    if col.dtype.kind in "biuf":
        return col.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(col.astype(object), errors="coerce").to_numpy(dtype=float)


def best_iteration(booster: Any) -> int | None:
    return booster.best_iteration or None


def auc_roc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (rank form, ties averaged); NaN with one class only."""
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_pr(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve, step form)."""
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=float)
    if y.sum() == 0:
        return math.nan
    order = np.argsort(-p, kind="stable")
    hits = y[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / hits.sum())


def brier(y: np.ndarray, p: np.ndarray) -> float:
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    return float(np.mean((p - y) ** 2)) if len(y) else math.nan


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    a, p = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    ok = np.isfinite(a) & np.isfinite(p)
    return float(np.mean(np.abs(p[ok] - a[ok]))) if ok.any() else math.nan


def per_race(
    frame: pd.DataFrame, metrics: Callable[[pd.DataFrame], dict[str, float]]
) -> dict[str, dict[str, float]]:
    """``metrics`` of each race's rows, keyed '<Year> <EventName>', races in order."""
    return {f"{y} {e}": metrics(g) for (y, e), g in frame.groupby(list(RACE_KEYS), sort=True)}


def race_names(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    return sorted(f"{y} {e}" for y, e in frame[list(RACE_KEYS)].drop_duplicates().itertuples(index=False))
