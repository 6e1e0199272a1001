"""Model 2 (tyre degradation): labels on hand-made stints, data checks on real laps, and behaviour of
a small model (few trees) fitted on the bundled races: train on 2023 Bahrain, calibrate and
early-stop on 2024 Bahrain, hold out 2023 Las Vegas."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stratx.bentos.lifecycle import sources, training
from stratx.bentos.lifecycle.cards import tyre_deg as card
from stratx.functions.models import base
from stratx.functions.models import tyre_deg as td
from tests.conftest import BAHRAIN_2023, DATA_DIR, LAS_VEGAS_2023

BAHRAIN_2024 = DATA_DIR / "races" / "2024_bahrain_grand_prix_race"
SMALL = {"learning_rate": 0.2, "num_leaves": 7, "min_data_in_leaf": 40}
ROUNDS = 30
ROLES = {(2023, "Bahrain Grand Prix"): "train", (2023, "Las Vegas Grand Prix"): "test"}


def split(frame: pd.DataFrame) -> pd.Series:
    keys = zip(frame["Year"].astype(int), frame["EventName"].astype(str), strict=True)
    return pd.Series([ROLES.get(k, "validation") for k in keys], index=frame.index, dtype=object)


@pytest.fixture(scope="module")
def corpus() -> base.Corpus:
    races = [sources.load_bundled(p) for p in (BAHRAIN_2023, BAHRAIN_2024, LAS_VEGAS_2023)]
    return training.build_corpus(races, progress=False)


@pytest.fixture(scope="module")
def fitted(corpus: base.Corpus) -> tuple[base.ModelBundle, dict[str, float]]:
    return td.fit(corpus, split, params=SMALL, rounds=ROUNDS)


@pytest.fixture(scope="module")
def held_out(corpus: base.Corpus) -> pd.DataFrame:
    frame = td.labelled(corpus.laps)
    return frame[(split(frame) == "test") & frame[td.RATE].notna()]


def stint(fc: list[float], **cols: list[object]) -> pd.DataFrame:
    """One driver's stint of consecutive laps 2.. with the given FuelCorrectedLapTime (s)."""
    n = len(fc)
    frame = pd.DataFrame(
        {
            "Year": 2023,
            "EventName": "X",
            "DriverNumber": "1",
            "Stint": 1.0,
            "Compound": "MEDIUM",
            "LapNumber": range(2, n + 2),
            "TyreLife": [float(i) for i in range(1, n + 1)],
            "FuelCorrectedLapTime": fc,
            "IsClean": True,
            "IntervalAhead": 3.0,
        }
    )
    for name, values in cols.items():
        frame[name] = values
    return frame


# ------------------------------------------------------------------ labels
def test_realised_rate_is_the_ols_slope_over_the_stints_clean_laps() -> None:
    fc = [90.0 + 0.1 * i for i in range(1, 8)]
    assert td.realised_rates(stint(fc)).to_numpy() == pytest.approx([0.1] * 7)
    # a traffic lap 3 s off the stint median and an unclean lap are left out of the slope
    noisy = fc.copy()
    noisy[3], noisy[5] = noisy[3] + 3.0, noisy[5] - 2.0
    clean = [True, True, True, True, True, False, True]
    assert td.realised_rates(stint(noisy, IsClean=clean)).to_numpy() == pytest.approx([0.1] * 7)


def test_realised_rate_needs_five_dry_clean_laps() -> None:
    fc = [90.0, 90.1, 90.2, 90.3, 90.4, 90.5]
    assert td.realised_rates(stint(fc, IsClean=[True] * 4 + [False] * 2)).isna().all()
    assert td.realised_rates(stint(fc, Compound=["INTERMEDIATE"] * 6)).isna().all()
    two = pd.concat([stint(fc), stint(fc, Stint=[2.0] * 6, FuelCorrectedLapTime=fc[::-1])])
    assert td.realised_rates(two).to_numpy() == pytest.approx([0.1] * 6 + [-0.1] * 6)


def test_cliff_is_a_clean_free_air_lap_a_second_off_the_last_three() -> None:
    fc = [90.0, 90.2, 90.1, 90.0, 90.1, 91.3, 90.2, 90.1, 90.0]
    out = td.cliff_labels(stint(fc))
    # Reference: median of the last 3 clean laps (from the 3rd clean lap on)
    assert out[td.REFERENCE].isna().tolist()[:2] == [True, True]
    assert out[td.REFERENCE].iloc[2] == pytest.approx(90.1)
    # lap 7 (index 5) is 1.2 s off a 90.1 reference: rows 2..4 see it within 3 laps, row 5 does not
    assert out[td.CLIFF].tolist() == [pd.NA, pd.NA, True, True, True, False, False, False, pd.NA]


def test_traffic_or_a_new_stint_does_not_make_a_cliff() -> None:
    fc = [90.0, 90.0, 90.0, 92.0, 90.0]
    in_traffic = td.cliff_labels(stint(fc, IntervalAhead=[3.0, 3.0, 3.0, 0.6, 3.0]))
    # row 2 sees the 2 s lap only in traffic (not qualifying) and then a normal lap: no cliff
    assert in_traffic[td.CLIFF].tolist() == [pd.NA, pd.NA, False, False, pd.NA]
    new_stint = td.cliff_labels(stint(fc, Stint=[1.0, 1.0, 1.0, 2.0, 2.0]))
    assert new_stint[td.CLIFF].isna().all()


def test_band_widening_is_the_conformal_quantile() -> None:
    realised = np.array([0.0, 0.1, 0.2, 0.5, -0.3])
    p10, p90 = np.full(5, 0.0), np.full(5, 0.2)
    # scores max(p10 - y, y - p90): [0, -0.1, 0, 0.3, 0.3]
    assert td.band_widening(realised, p10, p90, coverage=0.5) == pytest.approx(0.0)
    assert td.band_widening(realised, p10, p90, coverage=1.0) == pytest.approx(0.3)


def test_baselines_and_metrics_on_hand_checked_rows() -> None:
    rows = stint([90.0, 90.1, 90.2, 90.3, 90.4, 90.5])
    rows[td.RATE] = 0.1
    rows["StintDegSlope"] = [None, None, 0.5, 0.3, 0.2, 0.1]
    rows["StintCleanLaps"] = [1, 2, 3, 4, 5, 6]
    rows["LapsInStint"] = rows["StintCleanLaps"]
    rows["DegRate"], rows["DegRateP10"], rows["DegRateP90"] = 0.12, 0.05, [0.2, 0.2, 0.2, 0.2, 0.09, 0.09]
    m = td.rate_metrics(rows, {"MEDIUM": 0.04})
    assert m["model_rate_mae"] == pytest.approx(0.02)
    assert m["compound_median_rate_mae"] == pytest.approx(0.06)
    assert m["causal_slope_rate_mae"] == pytest.approx((4 * 0.06 + 0.1 + 0.0) / 6)
    assert m["band80_coverage"] == pytest.approx(4 / 6) and m["rate_stints"] == 1


# ------------------------------------------------------------------ data checks
def test_features_are_the_tyre_deg_v1_service() -> None:
    spec = importlib.util.spec_from_file_location(
        "lap_features_repo", Path(__file__).resolve().parents[3] / "feature_repo" / "lap_features.py"
    )
    assert spec is not None and spec.loader is not None
    repo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(repo)
    service = repo.tyre_deg_v1
    names = [f.name for p in service.feature_view_projections for f in p.features]
    assert service.name == td.FEATURE_SERVICE == td.RECIPE.feature_service
    assert sorted(names) == sorted(td.SERVICE_FEATURES)


def test_feature_matrix_schema(corpus: base.Corpus) -> None:
    x = td.feature_matrix(corpus.laps)
    assert list(x.columns) == list(td.SERVICE_FEATURES)
    assert isinstance(x["Compound"].dtype, pd.CategoricalDtype)
    assert all(pd.api.types.is_float_dtype(t) for t in x.drop(columns="Compound").dtypes)


def test_labels_on_real_laps_are_plausible(corpus: base.Corpus) -> None:
    frame = td.labelled(corpus.laps)
    rates = frame[frame[td.RATE].notna()]
    per_stint = rates.groupby(list(td.STINT_KEYS))[td.RATE]
    assert (per_stint.nunique() == 1).all() and per_stint.ngroups > 100
    assert rates["Compound"].isin(td.DRY).all()
    assert 0.0 < per_stint.first().median() < 0.15  # s/lap; ~0.04 is the 2014-2019 anchor
    cliffs = frame[td.CLIFF].dropna().astype(bool)
    assert len(cliffs) > 1000 and 0.01 < cliffs.mean() < 0.3


# ------------------------------------------------------------------ behaviour (STYLE 7)
def test_outputs_are_ordered_and_bounded(
    fitted: tuple[base.ModelBundle, dict], held_out: pd.DataFrame
) -> None:
    out = td.predict(fitted[0], held_out)
    assert list(out.columns) == ["DegRate", "DegRateP10", "DegRateP90", "FalloffScore", "CliffProbability"]
    assert out.notna().all().all()
    assert (out["DegRateP10"] <= out["DegRate"]).all() and (out["DegRate"] <= out["DegRateP90"]).all()
    assert out["FalloffScore"].between(0, 1).all() and out["CliffProbability"].between(0, 1).all()


def test_older_tyres_never_predict_less_wear(
    fitted: tuple[base.ModelBundle, dict], held_out: pd.DataFrame
) -> None:
    base_pred = td.predict(fitted[0], held_out)
    for extra in (1, 5, 15):
        aged = td.predict(fitted[0], held_out.assign(TyreLife=held_out["TyreLife"] + extra))
        assert (aged >= base_pred - 1e-12).all().all(), f"TyreLife + {extra}"


def test_a_worn_high_deg_stint_scores_higher_falloff_than_a_fresh_one(
    fitted: tuple[base.ModelBundle, dict], held_out: pd.DataFrame
) -> None:
    rates = held_out.groupby(list(td.STINT_KEYS))[td.RATE].first()
    worst = held_out.set_index(list(td.STINT_KEYS)).loc[[rates.idxmax()]].reset_index()
    assert worst[td.RATE].iloc[0] > 0.1
    scored = td.predict(fitted[0], worst)
    fresh = scored["FalloffScore"][worst["TyreLife"] == worst["TyreLife"].min()]
    worn = scored["FalloffScore"][worst["TyreLife"] == worst["TyreLife"].max()]
    assert worn.iloc[0] > fresh.iloc[0] + 0.2


def test_driver_identity_does_not_change_the_prediction(
    fitted: tuple[base.ModelBundle, dict], held_out: pd.DataFrame
) -> None:
    swapped = held_out.assign(Driver=held_out["Driver"].iloc[::-1].to_numpy(), Team="X")
    pd.testing.assert_frame_equal(td.predict(fitted[0], swapped), td.predict(fitted[0], held_out))


def test_held_out_race_beats_the_causal_slope(
    fitted: tuple[base.ModelBundle, dict], corpus: base.Corpus
) -> None:
    bundle, val = fitted
    assert val["val_rate_stints"] > 30 and np.isfinite(val[td.SELECTION_METRIC])
    # the band is calibrated on the validation race's rows, so they are covered as asked
    assert val["val_band80_coverage"] == pytest.approx(0.8, abs=0.02)
    ev = td.evaluate(bundle, corpus.only(lambda f: split(f) == "test"))
    m = ev.metrics
    assert ev.races == ["2023 Las Vegas Grand Prix"]
    assert m["model_rate_mae"] < m["causal_slope_rate_mae"]
    assert 0.0 < m["band80_coverage"] <= 1.0 and ev.targets[0].name == "band80_coverage"
    # one training race is too little to learn cliffs (the full corpus's model is scored in the card)
    assert m["cliff_rows"] > 300 and 0 < m["cliff_base_rate"] < 0.3 and np.isfinite(m["cliff_model_brier"])


def test_bundle_round_trip_and_card(
    tmp_path: Path, fitted: tuple[base.ModelBundle, dict], corpus: base.Corpus, held_out: pd.DataFrame
) -> None:
    bundle = fitted[0]
    loaded = base.ModelBundle.load(bundle.save(tmp_path / "bundle"))
    pd.testing.assert_frame_equal(td.predict(loaded, held_out), td.predict(bundle, held_out))
    ev = td.evaluate(bundle, corpus.only(lambda f: split(f) == "test"))
    text = card.card(ev, tmp_path)
    assert "band" in text and "| model |" in text
    assert (tmp_path / card.RATE_PNG).stat().st_size > 1000 and (
        tmp_path / card.STINTS_PNG
    ).stat().st_size > 1000


def lightgbm_raw(bundle: base.ModelBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """The envelope by its definition, scored through LightGBM's own pandas path, threshold by threshold."""
    x, out = td.feature_matrix(rows), {}
    for name in td.QUANTILES:
        booster = bundle.boosters[name]
        out[name] = booster.predict(x)
        for t in bundle.meta["life_thresholds"][name]:
            older = (x["TyreLife"] > t).to_numpy()
            younger = booster.predict(x.assign(TyreLife=np.where(older, t, x["TyreLife"])))
            out[name] = np.where(older, np.maximum(out[name], younger), out[name])
    out["cliff"] = bundle.boosters["cliff"].predict(x)
    return pd.DataFrame(out, index=rows.index)


def test_the_scored_matrices_are_the_feature_frame_as_lightgbm_reads_it(
    fitted: tuple[base.ModelBundle, dict], held_out: pd.DataFrame
) -> None:
    """``raw_predictions`` builds the boosters' matrix once (``base.lap_array``) and scores each
    row with its younger-tyre copies in one call: equal, value for value, to the definition over
    ``feature_matrix``, on a whole race and on one-row request frames (object columns holding None)."""
    from stratx.bentos.kit import serving
    from stratx.functions.schemas import LapFeatures

    bundle = fitted[0]
    pd.testing.assert_frame_equal(td.raw_predictions(bundle, held_out), lightgbm_raw(bundle, held_out))
    fields = [c for c in held_out.columns if c in LapFeatures.model_fields]
    some = held_out[fields].iloc[::61]
    for record in some.astype(object).where(some.notna(), None).to_dict("records"):
        one = serving.rows_frame([LapFeatures.model_validate(record)])
        pd.testing.assert_frame_equal(td.raw_predictions(bundle, one), lightgbm_raw(bundle, one))
