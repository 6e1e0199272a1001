"""Training reads its rows through Feast (``bentos/lifecycle/feast_training.py``): the built lap-feature
table of a real bundled race goes to the offline store's parquet, and each model's FeatureService read
back point-in-time (``get_historical_features`` at every driver-lap's end) equals the built table:
same rows in the same order, every value within 1e-9, nulls where it has nulls."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stratx.bentos.kit import feature_store as fs
from stratx.bentos.lifecycle import feast_training, training
from stratx.functions import models
from stratx.functions.models import base
from stratx.functions.racedata import RaceData
from stratx.functions.settings import FeastSettings

REPO_DIR = Path(__file__).resolve().parents[2] / "feature_repo"


@pytest.fixture(scope="module")
def laps(las_vegas: RaceData) -> pd.DataFrame:
    return training.lap_table([las_vegas], progress=False)


@pytest.fixture(scope="module")
def rows(laps: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> feast_training.FeastRows:
    settings = FeastSettings(feast_repo=REPO_DIR, feast_data_dir=tmp_path_factory.mktemp("feast"))
    return feast_training.FeastRows.open(settings, laps)


def test_the_offline_parquet_holds_every_built_driver_lap(
    rows: feast_training.FeastRows, laps: pd.DataFrame
) -> None:
    stored = pd.read_parquet(fs.offline_path(rows.store))
    assert len(stored) == len(laps) > 900
    assert set(stored.columns) >= {"DriverNumber", "SessionKey", "LapNumber", "event_timestamp", "LapTime"}


def test_the_registered_parquet_path_is_absolute_under_the_data_dir(rows: feast_training.FeastRows) -> None:
    # Feast's DuckDB offline store reads a FileSource's path as given (from the working directory)
    path = Path(rows.store.get_data_source("lap_features_file").path)
    assert path.is_absolute() and path.parent == Path(rows.store.repo_path).resolve()
    assert path == fs.offline_path(rows.store)


@pytest.mark.parametrize("key", models.available())
def test_each_models_feature_service_read_through_feast_equals_the_built_table(
    key: str, rows: feast_training.FeastRows, laps: pd.DataFrame
) -> None:
    recipe = models.recipe(key)
    corpus = rows.corpus(recipe, base.Corpus(laps=laps))
    result = rows.parities[-1]
    assert result.service == recipe.feature_service
    assert result.rows == len(corpus.laps) == len(laps)
    assert result.columns >= len(recipe.service_features) > 0
    assert (result.mismatched_cells, result.mismatched_rows) == (0, [])
    # the columns the service holds came from Feast, typed as the built table's
    assert list(corpus.laps.columns) == list(laps.columns)
    assert (corpus.laps.dtypes == laps.dtypes).all()
    for name in recipe.service_features:
        if laps[name].dtype.kind == "f":
            pd.testing.assert_series_equal(corpus.laps[name], laps[name], rtol=0, atol=1e-9)


def test_parity_counts_a_changed_cell_and_a_null(laps: pd.DataFrame) -> None:
    changed = laps.reset_index(drop=True)
    timed = [int(i) for i in changed.index[changed["LapTime"].notna() & changed["Compound"].notna()][:2]]
    changed.loc[timed[0], "LapTime"] += 1e-6
    changed.loc[timed[1], "Compound"] = None
    result = feast_training.parity(laps, changed, ["LapTime", "Compound", "TyreLife"])
    assert result.mismatched_cells == 2 and result.mismatched_rows == timed
