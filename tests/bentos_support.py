"""Small real champions for the BentoML service tests and benchmark (few trees, two bundled races).

Train on 2023 Bahrain, validate on 2024 Bahrain: every model is fitted by its own recipe on real
laps, registered in a temp MLflow registry, promoted to ``@champion`` and imported into a temp
BentoML model store, as ``stratx serve`` does with the real registry.

The fitted bundles are cached in ``tests/artifacts/champions/<key>/`` (git-ignored), keyed by a
hash of the corpus tables, the ``functions/`` sources, this file and the LightGBM/numpy/pandas
versions: a second run registers the cached bundles instead of fitting again, a change refits.
``pytest`` shares one registry and store per session (the ``trained_champions`` fixture in
tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd

from stratx.bentos.kit import serving
from stratx.bentos.kit.serving_schemas import SCHEMAS

# mlflow.pyfunc is imported only through model_store.import_pyfunc (its import-time UserWarning
# silenced: an error under filterwarnings=error).
from stratx.bentos.lifecycle import sources, training
from stratx.functions import models
from stratx.functions.models import anomaly, base, overtake
from stratx.functions.settings import TrainingSettings

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "tests" / "artifacts" / "champions"
RACES = (
    REPO / "data" / "races" / "2023_bahrain_grand_prix_race",
    REPO / "data" / "races" / "2024_bahrain_grand_prix_race",
)
SERVED_KEYS: tuple[str, ...] = tuple(
    k for k in models.MODEL_KEYS if (REPO / "bentos" / k / "service.py").is_file() and k in models.available()
)
# Few trees: the serving path is under test, not the model's quality.
SMALL: dict[str, dict[str, float]] = {
    "lap_time": {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 20},
    "tyre_deg": {"learning_rate": 0.1, "num_leaves": 15},
    "pit_window": {"learning_rate": 0.1, "num_leaves": 15},
    "overtake": {"learning_rate": 0.1, "num_leaves": 15},
}
ROUNDS = 40


def split(frame: pd.DataFrame) -> pd.Series:
    """2023 races train, 2024 races validate."""
    return pd.Series(
        ["train" if int(y) == 2023 else "validation" for y in frame["Year"]], index=frame.index, dtype=object
    )


def lap_level_anomaly_fit(*args: Any, **kwargs: Any) -> tuple[base.ModelBundle, dict[str, float]]:
    """The anomaly recipe's fit without its window level: the services score laps only, and the
    bundled telemetry windows belong to races whose laps are not in this two-race corpus."""
    with mock.patch.object(anomaly, "training_windows", lambda *_a, **_k: pd.DataFrame()):
        return anomaly.fit(*args, **kwargs)


def small_recipe(key: str, cache: Path | None = CACHE) -> base.Recipe:
    """Model ``key``'s recipe with few trees; ``cache``: its fit is looked up there first."""
    recipe = models.recipe(key)
    if key == "anomaly":
        recipe = dataclasses.replace(recipe, fit=lap_level_anomaly_fit)
    elif key in SMALL:
        module = importlib.import_module(f"stratx.functions.models.{key}")
        recipe = dataclasses.replace(
            recipe, fit=functools.partial(module.fit, params=SMALL[key], rounds=ROUNDS)
        )
    if cache is None:
        return recipe
    return dataclasses.replace(recipe, fit=functools.partial(cached_fit, recipe, cache))


def fit_key(data: base.Corpus, split: base.Splitter) -> str:
    """What a small fit depends on: the corpus tables, the split, the ``functions/`` sources
    (recipes and feature functions), this file (sizes) and the numeric libraries."""
    digest = hashlib.sha256(f"{split.__module__}.{split.__qualname__}".encode())
    for path in [*sorted((REPO / "functions").rglob("*.py")), Path(__file__)]:
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    for name in ("laps", "raw_laps", "results", "race_control", "windows"):
        frame = getattr(data, name)
        digest.update(f"{name}:{'-' if frame is None else training.snapshot_hash(frame)}".encode())
    for package in ("lightgbm", "numpy", "pandas"):
        digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
    return digest.hexdigest()[:20]


def cached_fit(
    recipe: base.Recipe, cache: Path, data: base.Corpus, split: base.Splitter, progress: bool = False
) -> tuple[base.ModelBundle, dict[str, float]]:
    """``recipe.fit`` through ``cache/<model key>/<fit_key>/``: on a miss, fit and save the bundle
    and its validation metrics there (atomically, older keys removed). Hit or miss, the bundle is
    the one loaded back from the cache, so a first and a second run register the same model."""
    folder = cache / recipe.key / fit_key(data, split)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers share the cache: one fits under the lock, the others wait and load it
    lock_path = folder.parent / ".lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "metrics.json").is_file():
            bundle, metrics = recipe.fit(data, split, progress)
            staging = Path(tempfile.mkdtemp(prefix=".fit-", dir=folder.parent))
            bundle.save(staging / "bundle")
            (staging / "metrics.json").write_text(json.dumps({k: float(v) for k, v in metrics.items()}))
            for old in folder.parent.iterdir():
                if old not in (staging, lock_path):
                    shutil.rmtree(old, ignore_errors=True)
            staging.rename(folder)
        metrics = json.loads((folder / "metrics.json").read_text())
        return base.ModelBundle.load(folder / "bundle"), metrics


def corpus() -> base.Corpus:
    races = [sources.load_bundled(p) for p in RACES]
    return training.build_corpus(races, progress=False)


def settings(folder: Path) -> TrainingSettings:
    return TrainingSettings(
        mlflow_uri=f"sqlite:///{folder / 'mlflow.db'}",
        mlflow_artifact_dir=folder / "artifacts",
        reports_dir=folder / "reports",
    )


@dataclasses.dataclass(frozen=True)
class Champions:
    tags: dict[str, str]  # key -> BentoML model tag
    corpus: base.Corpus
    settings: TrainingSettings  # the temp MLflow registry
    failed: dict[str, str]  # key -> why its recipe could not be trained and registered
    home: Path  # the $BENTOML_HOME the champions were imported into

    def require(self, key: str) -> None:
        """Skip the calling test when model ``key`` has no champion (its recipe failed)."""
        import pytest

        if key in self.failed:
            pytest.skip(f"{key}: no champion ({self.failed[key]})")


def train_and_import(folder: Path, keys: Sequence[str] = SERVED_KEYS) -> Champions:
    """Champions of ``keys`` in ``folder``'s MLflow registry, imported into the BentoML store of
    ``$BENTOML_HOME`` (set it first)."""
    assert os.environ.get("BENTOML_HOME"), "set BENTOML_HOME to a temp folder first"
    data = corpus()
    conf = settings(folder)
    tags, failed = {}, {}
    for key in keys:
        try:
            training.train(conf, small_recipe(key), data, progress=False, split=split)
        except Exception as exc:  # a recipe still in progress must not hide the other services
            failed[key] = f"{type(exc).__name__}: {str(exc)[:300]}"
            continue
        tags[key] = serving.import_champion(conf, key)
    return Champions(tags, data, conf, failed, Path(os.environ["BENTOML_HOME"]))


def request_rows(key: str, laps: pd.DataFrame, n: int = 40) -> list[dict[str, Any]]:
    """Real rows for model ``key``'s service (2024 Bahrain), JSON-ready: laps 20-21 of the corpus;
    overtake: their pair rows (``overtake.pair_rows``); anomaly: laps 17-21 of the cars crossing the
    line in the top 8, so every lap has earlier cars and every driver previous laps."""
    row_type = SCHEMAS[key].row
    race = laps[laps["Year"] == 2024]
    if key == "overtake":
        table = overtake.pair_rows(race[race["LapNumber"].isin([20, 21])]).head(n)
    elif key == "anomaly":
        window = race[race["LapNumber"].between(17, 21) & (race["PositionOnLap"] <= 8)]
        table = window.sort_values(["LapNumber", "PositionOnLap"]).head(n)
    else:
        table = race[race["LapNumber"].isin([20, 21])].head(n)
    table = table[[c for c in table.columns if c in row_type.model_fields]]
    records = table.astype(object).where(table.notna(), None).to_dict("records")
    return [row_type.model_validate(r).model_dump(mode="json") for r in records]


def app_requests(laps: pd.DataFrame, lap: int = 21) -> list[dict[str, list[dict[str, Any]]]]:
    """The prediction app's requests per model (``prediction_requests.request_step`` over the
    LapFeatures records of 2024 Bahrain in line-crossing order, JSON mode), for each record of ``lap``."""
    from stratx.functions.prediction_requests import new_cache, request_step
    from stratx.functions.schemas import LapFeatures

    race = laps[(laps["Year"] == 2024) & (laps["LapNumber"] <= lap)].sort_values("SessionTime")
    table = race[[c for c in race.columns if c in LapFeatures.model_fields]]
    records = table.astype(object).where(table.notna(), None).to_dict("records")
    context = {"EventName": str(race["EventName"].iloc[0]), "TotalLaps": 57}
    state, cache, out = None, new_cache(), []
    for record in records:
        row = LapFeatures.model_validate(record).model_dump(mode="json")
        state, requests = request_step(state, row, context, cache)
        if record["LapNumber"] == lap:
            out.append(requests)
    return out


def load_service(key: str) -> Any:
    """The ``@bentoml.service`` object of ``bentos/<key>/service.py`` (bentos/ is not a package)."""
    import bentoml

    path = REPO / "bentos" / key / "service.py"
    spec = importlib.util.spec_from_file_location(f"stratx_bento_{key}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return next(v for v in vars(module).values() if isinstance(v, bentoml.Service))


def isolated_metrics() -> None:
    """A fresh Prometheus registry for the next in-process BentoML app: BentoML registers its
    metrics in prometheus_client's global registry, so a second ``to_asgi()`` app in one process
    fails with "Duplicated timeseries" (``bentoml serve`` runs one service per process)."""
    import prometheus_client
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.server.metrics.prometheus import PrometheusClient

    client = PrometheusClient(multiproc=False)
    client._registry = prometheus_client.CollectorRegistry()
    BentoMLContainer.metrics_client.set(client)


@contextmanager
def bentoml_home(folder: Path) -> Iterator[Path]:
    """``$BENTOML_HOME`` = ``folder`` for this process (BentoML's container caches the store: point
    it there too) and its subprocesses; restored on exit."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    saved = {k: os.environ.get(k) for k in ("BENTOML_HOME", "BENTOML_DO_NOT_TRACK")}
    os.environ.update(BENTOML_HOME=str(folder), BENTOML_DO_NOT_TRACK="true")
    (folder / "models").mkdir(parents=True, exist_ok=True)
    BentoMLContainer.bentoml_home.set(str(folder))
    BentoMLContainer.model_store.set(ModelStore(str(folder / "models")))
    try:
        yield folder
    finally:
        BentoMLContainer.model_store.reset()
        BentoMLContainer.bentoml_home.reset()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
