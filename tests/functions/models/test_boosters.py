"""``booster_predict``: the numpy path gives exactly what LightGBM's own pandas path gives.

A tiny booster on a SYNTHETIC frame covers the conversion's corner cases (categories unknown,
missing, in another order; bools, ints, NaN). Then every served recipe, fitted small on real laps
(the cached fits the service tests share), scores real request rows twice: through
``booster_predict`` and with every recipe module's ``booster_predict`` swapped for
``booster.predict(DataFrame)``. The outputs must be equal, value for value.
"""

from __future__ import annotations

import sys

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from stratx.bentos.kit import serving
from stratx.bentos.kit.serving_schemas import SCHEMAS
from stratx.functions import models
from stratx.functions.models.boosters import booster_predict, matrix
from tests import bentos_support as support

COMPOUNDS = ["SOFT", "MEDIUM", "HARD"]


@pytest.fixture(scope="module")
def tiny() -> lgb.Booster:
    """SYNTHETIC: 400 rows with a categorical, a bool, an int and a float column with NaN."""
    rng = np.random.default_rng(7)
    n = 400
    frame = pd.DataFrame(
        {
            "Compound": pd.Categorical(rng.choice(COMPOUNDS, n), categories=COMPOUNDS),
            "Fresh": rng.random(n) < 0.5,
            "TyreLife": rng.integers(1, 40, n),
            "Gap": np.where(rng.random(n) < 0.1, np.nan, rng.normal(2.0, 1.0, n)),
        }
    )
    y = frame["TyreLife"] * 0.05 + frame["Compound"].cat.codes * 0.3 + frame["Fresh"] + frame["Gap"].fillna(0)
    data = lgb.Dataset(frame, y, categorical_feature=["Compound"])
    return lgb.train({"verbose": -1, "num_leaves": 7, "min_data_in_leaf": 5}, data, 30)


def probe(categories: list[str]) -> pd.DataFrame:
    values = ["HARD", "INTERMEDIATE", None, "SOFT", "MEDIUM"]
    return pd.DataFrame(
        {
            "Compound": pd.Categorical(values, categories=categories),
            "Fresh": [True, False, True, False, True],
            "TyreLife": [1, 12, 25, 39, 7],
            "Gap": [np.nan, 0.4, 2.5, -1.0, 3.3],
        }
    )


@pytest.mark.parametrize(
    "categories",
    [COMPOUNDS, ["HARD", "MEDIUM", "SOFT"], [*COMPOUNDS, "INTERMEDIATE"], ["SOFT"]],
    ids=["as-trained", "reordered", "extra", "fewer"],
)
def test_the_numpy_path_equals_lightgbms_pandas_path(tiny: lgb.Booster, categories: list[str]) -> None:
    frame = probe(categories)
    assert np.array_equal(booster_predict(tiny, frame), tiny.predict(frame), equal_nan=True)
    for i in range(len(frame)):  # one-row frames, as a service request carries
        one = frame.iloc[[i]]
        assert np.array_equal(booster_predict(tiny, one), tiny.predict(one), equal_nan=True)


def test_unknown_and_missing_categories_become_missing_values(tiny: lgb.Booster) -> None:
    x = matrix(probe([*COMPOUNDS, "INTERMEDIATE"]), tiny.pandas_categorical)
    assert x[:, 0].tolist()[:1] == [2.0] and np.isnan(x[1, 0]) and np.isnan(x[2, 0])
    assert x[:, 1].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_a_frame_that_does_not_fit_the_model_is_refused(tiny: lgb.Booster) -> None:
    no_category = probe(COMPOUNDS).assign(Compound=lambda f: f["Compound"].astype(object).fillna("SOFT"))
    with pytest.raises(ValueError, match="categorical"):
        booster_predict(tiny, no_category.assign(Compound=no_category["Compound"].map(len)))
    with pytest.raises(ValueError, match="non empty"):
        booster_predict(tiny, probe(COMPOUNDS).iloc[:0])


# ------------------------------------------------------------------ every served recipe
def lightgbm_path(booster: lgb.Booster, x: object, **kwargs: object) -> np.ndarray:
    return np.asarray(booster.predict(x, **kwargs))


@pytest.fixture(scope="module")
def fitted() -> tuple[dict[str, object], pd.DataFrame]:
    data = support.corpus()
    bundles = {}
    for key in support.SERVED_KEYS:
        recipe = support.small_recipe(key)
        bundles[key], _ = recipe.fit(data, support.split, False)
    return bundles, data.laps


@pytest.mark.integration
@pytest.mark.parametrize("key", support.SERVED_KEYS)
def test_every_recipe_predicts_the_same_through_either_path(
    key: str, fitted: tuple[dict[str, object], pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    bundles, laps = fitted
    rows = support.request_rows(key, laps[laps["Year"] == 2024], n=40)
    recipe = models.recipe(key)
    frame, _ = serving.recipe_rows(
        key, serving.rows_frame([SCHEMAS[key].row.model_validate(r) for r in rows])
    )
    fast = recipe.predict(bundles[key], frame)
    modules = [m for name, m in list(sys.modules.items()) if name.startswith("stratx.functions.models.")]
    patched = [m for m in modules if getattr(m, "booster_predict", None) is booster_predict]
    assert patched, "no recipe module scores through booster_predict"
    for module in patched:
        monkeypatch.setattr(module, "booster_predict", lightgbm_path)
    slow = recipe.predict(bundles[key], frame)
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)


@pytest.mark.integration
def test_anomaly_lap_arrays_equal_its_model_frames(fitted: tuple[dict[str, object], pd.DataFrame]) -> None:
    """The anomaly service builds the signal-independent columns once per request
    (``lap_array``): each signal's matrix equals the one its model frame (``lap_matrix``) gives,
    and the booster scores it as LightGBM scores that frame."""
    from stratx.functions.models import anomaly_rows

    bundles, laps = fitted
    bundle = bundles["anomaly"]
    rows = support.request_rows("anomaly", laps[laps["Year"] == 2024], n=40)
    frame, _ = serving.recipe_rows(
        "anomaly", serving.rows_frame([SCHEMAS["anomaly"].row.model_validate(r) for r in rows])
    )
    for signal in anomaly_rows.LAP_SIGNALS:
        booster = bundle.boosters[f"lap_{signal}"]  # type: ignore[attr-defined]
        context = matrix(anomaly_rows.lap_context(frame), booster.pandas_categorical)
        fast = anomaly_rows.lap_array(frame, signal, context)
        model_frame = anomaly_rows.lap_matrix(frame, signal)
        np.testing.assert_array_equal(fast, matrix(model_frame, booster.pandas_categorical))
        np.testing.assert_array_equal(booster_predict(booster, fast), lightgbm_path(booster, model_frame))
    assert np.isfinite(fast[:, 0]).sum() > 10  # real references, not an empty request
