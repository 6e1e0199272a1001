"""`stratx train`: build the lap-feature table, fit the lap-time model, track it in MLflow.

I/O only; the recipe (targets, features, baselines, metrics, race split) is
``stratx.functions.models.lap_time``. The run logs params, validation metrics and the LightGBM
model; the new registry version of ``stratx-lap-time`` is tagged with its FeatureService, data
snapshot and git commit, and becomes ``@champion`` when its validation MAE on clean laps beats the
current champion's (or there is none).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from stratx.functions.models import lap_time as lt
from stratx.functions.racedata import RaceData
from stratx.quix_apps import sources
from stratx.quix_apps.settings import REPO_ROOT, TrainingSettings

log = logging.getLogger(__name__)
CHAMPION = "champion"
SELECTION_METRIC = "val_model_clean_mae"
EXPERIMENT = "stratx-lap-time"

# LightGBM recipe, chosen on the validation races only: Huber loss (alpha 2 s) on rows whose next
# lap is clean, early stopping on the validation races' clean laps.
LGB_PARAMS: dict[str, Any] = {
    "objective": "huber",
    "alpha": 2.0,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "seed": 0,
    "deterministic": True,
    "num_threads": 2,
    "verbose": -1,
}
MAX_ROUNDS = 3000
EARLY_STOPPING = 100


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    version: str
    champion: bool
    previous_champion_mae: float | None
    metrics: dict[str, float]
    train_seconds: float
    rounds: int


# ------------------------------------------------------------------ data
def corpus_races(data_dir: Path, export_dirs: Sequence[Path] = ()) -> list[RaceData]:
    """Bundled races + FastF1 exports (default: the bundled corpus); bundled copies win."""
    races = [sources.load_bundled(r.path) for r in sources.list_bundled(data_dir)]
    seen = {(r.meta.year, r.meta.event_name, r.meta.session_name) for r in races}
    corpus = data_dir / "corpus" / "fastf1_exports"
    for export_dir in export_dirs or ([corpus] if corpus.is_dir() else []):
        for race in sources.load_exports(Path(export_dir)):
            ident = (race.meta.year, race.meta.event_name, race.meta.session_name)
            if ident not in seen:
                seen.add(ident)
                races.append(race)
    return races


def lap_table(races: Sequence[RaceData], progress: bool) -> pd.DataFrame:
    from stratx.quix_apps import feature_build

    table, report = feature_build.build_lap_table(races, progress=progress)
    log.info(
        "%d driver-laps from %d races, %d laps rejected", report.rows, report.races, len(report.rejected)
    )
    return table


def snapshot_hash(table: pd.DataFrame) -> str:
    """sha256 of the table's content in key order (independent of row order and parquet encoding)."""
    keys = [*lt.RACE_KEYS, "DriverNumber", "LapNumber"]
    ordered = table.sort_values(keys, kind="stable").reset_index(drop=True)
    ordered = ordered[sorted(ordered.columns)].astype(str)
    return hashlib.sha256(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes()).hexdigest()


def git_commit(repo: Path = REPO_ROOT) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ------------------------------------------------------------------ fit
def fit(
    frame: pd.DataFrame,
    params: dict[str, Any] | None = None,
    rounds: int = MAX_ROUNDS,
    progress: bool = True,
    split: pd.Series | None = None,
) -> Any:
    """LightGBM booster on the train races' clean next laps, early-stopped on the validation races.

    ``frame`` = ``lt.next_lap_targets(table)``; ``split`` overrides ``lt.race_split`` (tests).
    Without validation rows, trains ``rounds`` trees.
    """
    import lightgbm as lgb

    params = {**LGB_PARAMS, **(params or {})}
    keep = lt.trainable(frame)
    frame = frame[keep]
    split = lt.race_split(frame) if split is None else split[keep]
    clean = frame[lt.NEXT_CLEAN].fillna(False).astype(bool)
    x, y = lt.feature_matrix(frame), lt.residual_target(frame)
    params["monotone_constraints"] = lt.monotone_constraints(list(x.columns))
    train = (split == "train") & clean
    val = (split == "validation") & clean
    if not train.any():
        raise ValueError("no training rows: every race is a test or validation race")
    data = lgb.Dataset(x[train], y[train], categorical_feature=list(lt.CATEGORICAL))
    valid_sets: list[Any] = []
    callbacks: list[Callable[..., Any]] = []
    if val.any():
        valid_sets = [lgb.Dataset(x[val], y[val], reference=data)]
        callbacks.append(lgb.early_stopping(EARLY_STOPPING, verbose=False))
    bar = tqdm(total=rounds, desc="lap-time trees", unit="tree", disable=not progress)
    callbacks.append(lambda env: bar.update(1))
    try:
        booster = lgb.train(params, data, rounds, valid_sets=valid_sets, callbacks=callbacks)
    finally:
        bar.close()
    return booster


def predict(booster: Any, frame: pd.DataFrame) -> Any:
    """Next-lap time (s) for rows of ``lt.next_lap_targets`` (or any frame with an Anchor column)."""
    x = lt.feature_matrix(frame)
    return lt.from_residual(frame, booster.predict(x, num_iteration=booster.best_iteration or None))


def validation_metrics(booster: Any, frame: pd.DataFrame, split: pd.Series) -> dict[str, float]:
    val = frame[split == "validation"]
    if val.empty:
        return {}
    return {f"val_{k}": v for k, v in lt.metrics_table(val, predict(booster, val)).items()}


# ------------------------------------------------------------------ MLflow
def _client(settings: TrainingSettings) -> Any:
    import mlflow

    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment(client: Any, settings: TrainingSettings) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return str(found.experiment_id)
    settings.mlflow_artifact_dir.mkdir(parents=True, exist_ok=True)
    return str(client.create_experiment(EXPERIMENT, artifact_location=settings.mlflow_artifact_dir.as_uri()))


def champion_mae(client: Any) -> float | None:
    """Validation MAE of the current @champion, or None if there is none."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(lt.MODEL_NAME, CHAMPION)
    except MlflowException:
        return None
    value = client.get_run(version.run_id).data.metrics.get(SELECTION_METRIC)
    return float(value) if value is not None else None


def log_and_register(
    settings: TrainingSettings,
    booster: Any,
    metrics: dict[str, float],
    params: dict[str, Any],
    tags: dict[str, str],
) -> tuple[str, str, bool, float | None]:
    """Log a run with the model, register a version, tag it, promote it if it wins."""
    import mlflow
    import mlflow.lightgbm

    client = _client(settings)
    experiment_id = _experiment(client, settings)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        info = mlflow.lightgbm.log_model(booster, name="model", registered_model_name=lt.MODEL_NAME)
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(lt.MODEL_NAME, version, key, value)
    previous = champion_mae(client)
    new = metrics.get(SELECTION_METRIC)
    wins = new is not None and (previous is None or new < previous)
    if wins:
        client.set_registered_model_alias(lt.MODEL_NAME, CHAMPION, version)
    return run.info.run_id, version, wins, previous


def train(
    settings: TrainingSettings,
    table: pd.DataFrame,
    params: dict[str, Any] | None = None,
    rounds: int = MAX_ROUNDS,
    progress: bool = True,
    split: pd.Series | None = None,
) -> TrainResult:
    """Fit on ``table`` (LapFeatures rows of many races), log to MLflow, register, maybe promote.

    ``split`` ('train'/'validation'/'test' per row of ``table``) overrides the race split (tests)."""
    frame = lt.next_lap_targets(table)
    split = lt.race_split(frame) if split is None else split.loc[frame.index]
    started = time.perf_counter()
    booster = fit(frame, params, rounds, progress, split)
    seconds = time.perf_counter() - started
    metrics = {**validation_metrics(booster, frame, split), "train_seconds": seconds}
    logged = {
        **LGB_PARAMS,
        **(params or {}),
        "target": lt.TARGET_KIND,
        "max_rounds": rounds,
        "best_iteration": booster.best_iteration or booster.current_iteration(),
        "train_races": int(frame[split == "train"].groupby(list(lt.RACE_KEYS)).ngroups),
        "validation_races": "; ".join(f"{y} {e}" for y, e in lt.VALIDATION_RACES),
        "test_races": "; ".join(f"{y} {e}" for y, e in lt.TEST_RACES),
    }
    tags = {
        "feast_feature_service": lt.FEATURE_SERVICE,
        "data_snapshot_hash": snapshot_hash(table),
        "git_commit": git_commit(),
        "target": lt.TARGET_KIND,
    }
    run_id, version, wins, previous = log_and_register(settings, booster, metrics, logged, tags)
    return TrainResult(
        run_id, version, wins, previous, metrics, seconds, int(booster.best_iteration or rounds)
    )


# ------------------------------------------------------------------ CLI entry
def train_main(args: argparse.Namespace, settings: TrainingSettings | None = None) -> int:
    """`stratx train [--model lap_time] [--exports DIR ...] [--features PARQUET] [--no-progress]`."""
    settings = settings or TrainingSettings()
    if getattr(args, "model", "lap_time") != "lap_time":
        raise ValueError(f"unknown model {args.model!r}; available: lap_time")
    progress = not getattr(args, "no_progress", False)
    if getattr(args, "features", None):
        table = pd.read_parquet(args.features)
    else:
        exports = [Path(p) for p in (getattr(args, "exports", None) or [])]
        races = corpus_races(settings.data_dir, exports)
        if not races:
            raise ValueError(f"no races to train on in {settings.data_dir} (and no --exports)")
        table = lap_table(races, progress)
    result = train(settings, table, progress=progress)
    m = result.metrics
    print(
        f"lap_time: trained {result.rounds} trees in {result.train_seconds:.1f} s; run {result.run_id}, "
        f"{lt.MODEL_NAME} version {result.version}"
    )
    print(
        f"  validation clean laps: MAE model {m.get('val_model_clean_mae', float('nan')):.3f} s, "
        f"persistence {m.get('val_persistence_clean_mae', float('nan')):.3f} s, "
        f"rolling median {m.get('val_rolling_median_clean_mae', float('nan')):.3f} s"
    )
    before = "none" if result.previous_champion_mae is None else f"{result.previous_champion_mae:.3f} s"
    verdict = "is the new @champion" if result.champion else "did not beat the @champion"
    print(f"  version {result.version} {verdict} (previous champion MAE {before})")
    return 0
