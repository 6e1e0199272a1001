"""`stratx train`: build the offline corpus, fit each model's recipe, track it in MLflow.

I/O only; each model's recipe (rows, targets, features, fitting, baselines, metrics) is a module
of ``stratx.functions.models``. Per model, one MLflow run logs params, validation metrics and the
model bundle (a pyfunc model whose artifacts are the LightGBM boosters + ``meta.json``); the new
registry version is tagged with its Feast FeatureService, data snapshot hash and git commit, and
becomes ``@champion`` when its validation selection metric beats the current champion's (or
there is none).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from stratx.bentos.lifecycle import feast_training, sources
from stratx.functions import models
from stratx.functions.models import base
from stratx.functions.racedata import RaceData
from stratx.functions.settings import REPO_ROOT, TrainingSettings

log = logging.getLogger(__name__)
CHAMPION = "champion"
BUNDLE_ARTIFACT = "bundle"
PYFUNC_CODE = Path(__file__).with_name("bundle_pyfunc.py")


@dataclass(frozen=True)
class TrainResult:
    key: str
    model_name: str
    run_id: str
    version: str
    champion: bool
    previous_champion_score: float | None
    metrics: dict[str, float]
    train_seconds: float


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
    from stratx.bentos.lifecycle import feature_build

    table, report = feature_build.build_lap_table(races, progress=progress)
    log.info(
        "%d driver-laps from %d races, %d laps rejected", report.rows, report.races, len(report.rejected)
    )
    return table


def _tagged(race: RaceData, name: str) -> pd.DataFrame:
    frame = race.table(name).copy()
    frame.insert(0, "EventName", race.meta.event_name)
    frame.insert(0, "Year", race.meta.year)
    return frame


def _results(races: Sequence[RaceData], results_files: Sequence[Path]) -> pd.DataFrame:
    wanted = {(r.meta.year, r.meta.event_name) for r in races}
    frames = []
    for path in results_files:
        if path.is_file():
            table = pd.read_parquet(path)
            if "SessionName" in table.columns:
                table = table[table.SessionName == "Race"]
            keep = [(int(y), str(e)) in wanted for y, e in zip(table.Year, table.EventName, strict=True)]
            frames.append(table[keep])
    if not frames:
        return pd.DataFrame(columns=["Year", "EventName", "DriverNumber", "Status"])
    out = pd.concat(frames, ignore_index=True).drop_duplicates(["Year", "EventName", "DriverNumber"])
    out["DriverNumber"] = out["DriverNumber"].astype(str)
    return out.reset_index(drop=True)


def build_corpus(
    races: Sequence[RaceData],
    progress: bool = True,
    windows: bool = False,
    results_files: Sequence[Path] = (),
    laps: pd.DataFrame | None = None,
    data_dir: Path | None = None,
) -> base.Corpus:
    """The offline tables of ``races`` through the feature functions (``laps``: reuse a built
    lap-feature table); ``windows`` also builds telemetry windows for races with car data;
    ``data_dir``: the data folder, for the bundled tables a recipe adds (``Corpus.data_dir``)."""
    laps = lap_table(races, progress) if laps is None else laps
    raw = [_tagged(r, "laps") for r in races]
    rc = [_tagged(r, "race_control") for r in races if len(r.table("race_control"))]
    corpus = base.Corpus(
        laps=laps,
        raw_laps=pd.concat(raw, ignore_index=True) if raw else pd.DataFrame(),
        results=_results(races, results_files),
        race_control=pd.concat(rc, ignore_index=True) if rc else pd.DataFrame(),
        data_dir=data_dir,
    )
    if windows:
        corpus.windows = window_table(races, progress)
    return corpus


def window_table(races: Sequence[RaceData], progress: bool) -> pd.DataFrame:
    """TelemetryWindow rows (+ Year, EventName) of the races with car telemetry."""
    from stratx.functions.features.telemetry import offline_windows

    with_car = [r for r in races if len(r.table("car_data"))]
    frames = []
    for race in tqdm(with_car, desc="telemetry windows", unit="race", disable=not progress):
        frame = offline_windows(race).copy()
        frame.insert(0, "EventName", race.meta.event_name)
        frame.insert(0, "Year", race.meta.year)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def default_results_files(data_dir: Path, exports: Sequence[Path | str] = ()) -> list[Path]:
    """The classification files: each exports folder's ``results.parquet``, then the corpus's."""
    return [
        *(Path(e) / "results.parquet" for e in exports),
        data_dir / "corpus" / "fastf1_exports" / "results.parquet",
    ]


def snapshot_hash(table: pd.DataFrame) -> str:
    """sha256 of the table's content in key order (independent of row order and parquet encoding)."""
    keys = [k for k in (*base.RACE_KEYS, "SessionKey", "DriverNumber", "LapNumber") if k in table.columns]
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


# ------------------------------------------------------------------ MLflow
def client(settings: TrainingSettings) -> Any:
    import mlflow

    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment(mlflow_client: Any, settings: TrainingSettings, name: str) -> str:
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    settings.mlflow_artifact_dir.mkdir(parents=True, exist_ok=True)
    return str(mlflow_client.create_experiment(name, artifact_location=settings.mlflow_artifact_dir.as_uri()))


def champion_score(mlflow_client: Any, recipe: base.Recipe) -> float | None:
    """The current @champion's selection metric, or None if there is none."""
    from mlflow.exceptions import MlflowException

    try:
        version = mlflow_client.get_model_version_by_alias(recipe.model_name, CHAMPION)
    except MlflowException:
        return None
    value = mlflow_client.get_run(version.run_id).data.metrics.get(recipe.selection_metric)
    return float(value) if value is not None else None


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("lightgbm", "numpy", "pandas", "mlflow")]


def log_and_register(
    settings: TrainingSettings,
    recipe: base.Recipe,
    bundle: base.ModelBundle,
    metrics: dict[str, float],
    params: dict[str, Any],
    tags: dict[str, str],
    artifacts: Sequence[Path] = (),
) -> tuple[str, str, bool, float | None]:
    """Log a run with the bundle (and ``artifacts``, e.g. the data-quality report), register a
    version, tag it, promote it if it wins."""
    import mlflow

    from stratx.bentos.lifecycle.model_store import import_pyfunc

    pyfunc = import_pyfunc()
    mlflow_client = client(settings)
    experiment_id = _experiment(mlflow_client, settings, recipe.model_name)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=experiment_id) as run:
        folder = bundle.save(Path(tmp) / BUNDLE_ARTIFACT)
        mlflow.log_params(params)
        mlflow.log_metrics({k: v for k, v in metrics.items() if pd.notna(v)})
        mlflow.set_tags(tags)
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="data_quality")
        info = pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={BUNDLE_ARTIFACT: str(folder)},
            registered_model_name=recipe.model_name,
            pip_requirements=_requirements(),
        )
    version = str(info.registered_model_version)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(recipe.model_name, version, key, value)
    previous = champion_score(mlflow_client, recipe)
    new = metrics.get(recipe.selection_metric)
    wins = new is not None and pd.notna(new) and (previous is None or new < previous)
    if wins:
        mlflow_client.set_registered_model_alias(recipe.model_name, CHAMPION, version)
    return run.info.run_id, version, bool(wins), previous


def _flat_params(meta: dict[str, Any], limit: int = 40) -> dict[str, Any]:
    """MLflow params from a bundle's meta: scalars, lists (joined) and small dicts of scalars one
    level deep (``key.sub``); bigger tables stay in the bundle's meta.json (logged with the model).
    Keys are reduced to the characters MLflow accepts."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if isinstance(value, dict):
            if len(value) <= limit and all(not isinstance(v, dict | list) for v in value.values()):
                out.update({f"{key}.{k}": v for k, v in value.items()})
        elif isinstance(value, list):
            out[key] = ", ".join(map(str, value))[:500]
        else:
            out[key] = value
    return {re.sub(r"[^0-9A-Za-z_\-. :/]", "_", k): v for k, v in out.items()}


def train(
    settings: TrainingSettings,
    recipe: base.Recipe,
    corpus: base.Corpus,
    progress: bool = True,
    split: base.Splitter = base.race_split,
    artifacts: Sequence[Path] = (),
) -> TrainResult:
    """Fit ``recipe`` on ``corpus``, log to MLflow (with ``artifacts``), register, maybe promote
    (``split`` overrides the race split, for tests)."""
    started = time.perf_counter()
    bundle, val_metrics = recipe.fit(corpus, split, progress)
    seconds = time.perf_counter() - started
    metrics = {**val_metrics, "train_seconds": seconds}
    where = split(corpus.laps)
    params = {
        **_flat_params(bundle.meta),
        "train_races": int(corpus.laps[where == "train"].groupby(list(base.RACE_KEYS)).ngroups),
        "validation_races": "; ".join(f"{y} {e}" for y, e in base.VALIDATION_RACES),
        "test_races": "; ".join(f"{y} {e}" for y, e in base.TEST_RACES),
    }
    tags = {
        "feast_feature_service": recipe.feature_service,
        "data_snapshot_hash": snapshot_hash(corpus.laps),
        "git_commit": git_commit(),
        "model_key": recipe.key,
        "target": str(bundle.meta.get("target", recipe.key)),
    }
    run_id, version, wins, previous = log_and_register(
        settings, recipe, bundle, metrics, params, tags, artifacts
    )
    return TrainResult(recipe.key, recipe.model_name, run_id, version, wins, previous, metrics, seconds)


# ------------------------------------------------------------------ CLI entry
def quiet_mlflow() -> None:
    """MLflow's INFO/WARNING chatter (uv detection, signature inference, artifact progress bars)
    says nothing a `stratx` user acts on; errors still show."""
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def selected(name: str | None) -> list[base.Recipe]:
    keys = models.available() if name in (None, "all") else [str(name)]
    return [models.recipe(k) for k in keys]


def missing_champions(settings: TrainingSettings, keys: Sequence[str]) -> list[str]:
    """The model keys whose registered model has no ``@champion`` yet."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(settings)
    missing = []
    for key in keys:
        try:
            mlflow_client.get_model_version_by_alias(models.recipe(key).model_name, CHAMPION)
        except MlflowException:
            missing.append(key)
    return missing


def train_main(args: argparse.Namespace, settings: TrainingSettings | None = None) -> int:
    """`stratx train [--model all|KEY] [--if-missing] [--exports DIR ...] [--features PARQUET]
    [--no-progress]`."""
    settings = settings or TrainingSettings()
    quiet_mlflow()
    recipes = selected(getattr(args, "model", None))
    if getattr(args, "if_missing", False):
        missing = set(missing_champions(settings, [r.key for r in recipes]))
        recipes = [r for r in recipes if r.key in missing]
        if not recipes:
            print("every model has a @champion; nothing to train (--if-missing)")
            return 0
    progress = not getattr(args, "no_progress", False)
    exports = [Path(p) for p in (getattr(args, "exports", None) or [])]
    races = corpus_races(settings.data_dir, exports)
    if not races:
        raise ValueError(f"no races to train on in {settings.data_dir} (and no --exports)")
    laps = pd.read_parquet(args.features) if getattr(args, "features", None) else None
    results_files = default_results_files(settings.data_dir, exports)
    corpus = build_corpus(
        races,
        progress,
        any(r.needs_windows for r in recipes),
        results_files=results_files,
        laps=laps,
        data_dir=settings.data_dir,
    )
    quality_report = check_quality(settings, corpus)
    started = time.perf_counter()
    feast = feast_training.FeastRows.open(settings, corpus.laps) if settings.train_from_feast else None
    for recipe in recipes:
        rows = feast.corpus(recipe, corpus) if feast else corpus  # the recipe fits on what Feast returns
        result = train(settings, recipe, rows, progress=progress, artifacts=[quality_report])
        print(summary(recipe, result))
    print(f"trained {len(recipes)} model(s) in {time.perf_counter() - started:.1f} s")
    return 0


def check_quality(settings: TrainingSettings, corpus: base.Corpus) -> Path:
    """Run the data-quality suite on the corpus tables, write its JSON report to
    ``<reports_dir>/data_quality.json``; raise ``DataQualityError`` (nothing is trained) on failure."""
    from stratx.bentos.lifecycle import data_quality

    report = data_quality.check_tables({"laps": corpus.laps, "windows": corpus.windows})
    path = data_quality.write_report(report, settings.reports_dir / "data_quality.json")
    data_quality.require(report, path)
    print(f"{report.summary()}; report {path}")
    return path


def summary(recipe: base.Recipe, result: TrainResult) -> str:
    score = result.metrics.get(recipe.selection_metric, float("nan"))
    before = "none" if result.previous_champion_score is None else f"{result.previous_champion_score:.4f}"
    verdict = "is the new @champion" if result.champion else "did not beat the @champion"
    return (
        f"{recipe.key}: {result.model_name} v{result.version} in {result.train_seconds:.1f} s, "
        f"{recipe.selection_metric} {score:.4f} ({verdict}; previous {before}); run {result.run_id}"
    )
