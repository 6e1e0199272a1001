"""Model 4 (overtake): pair rows, labels, baseline, metrics, data checks and behaviour.

Hand-made frames for the label rules; real laps of the bundled races for the data checks and the
behavioural tests, on small models (few trees): train on 2023 and 2024 Bahrain, hold out 2023
Las Vegas.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stratx.bentos.lifecycle import sources, training
from stratx.functions import schemas
from stratx.functions.models import base
from stratx.functions.models import overtake as ov
from tests.conftest import BAHRAIN_2023, DATA_DIR, LAS_VEGAS_2023

BAHRAIN_2024 = DATA_DIR / "races" / "2024_bahrain_grand_prix_race"
SMALL = {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 20}
ROUNDS = 60


@pytest.fixture(scope="module")
def corpus() -> base.Corpus:
    races = [sources.load_bundled(p) for p in (BAHRAIN_2023, BAHRAIN_2024, LAS_VEGAS_2023)]
    return training.build_corpus(races, progress=False)


def held_out_split(frame: pd.DataFrame) -> pd.Series:
    """2023 Las Vegas is the test race, both Bahrains train (no validation: fixed rounds)."""
    return pd.Series(
        np.where(frame["EventName"] == "Las Vegas Grand Prix", "test", "train"),
        index=frame.index,
        dtype=object,
    )


@pytest.fixture(scope="module")
def bundle(corpus: base.Corpus) -> base.ModelBundle:
    fitted, metrics = ov.fit(corpus, held_out_split, params=SMALL, rounds=ROUNDS)
    assert metrics == {}  # no validation races in this split
    return fitted


@pytest.fixture(scope="module")
def pairs(corpus: base.Corpus) -> pd.DataFrame:
    return ov.labelled_pairs(corpus)


@pytest.fixture(scope="module")
def held_out(pairs: pd.DataFrame) -> pd.DataFrame:
    return pairs[held_out_split(pairs) == "test"]


# ------------------------------------------------------------------ hand-made laps
def race(ends: dict[str, list[float]], pits: dict[tuple[str, int], str] | None = None) -> base.Corpus:
    """A toy race: ``ends[driver]`` = line-crossing SessionTime of laps 1, 2, ... (a shorter list:
    the car stopped); ``pits[(driver, lap)]`` = 'in' / 'out' / a TrackStatus code for that lap."""
    pits = pits or {}
    rows = []
    for drv, times in ends.items():
        for n, t in enumerate(times, start=1):
            rows.append({"DriverNumber": drv, "LapNumber": n, "SessionTime": t})
    laps = pd.DataFrame(rows).assign(Year=2099, EventName="Toy Grand Prix", SessionKey=1)
    laps = laps.sort_values(["LapNumber", "SessionTime"]).reset_index(drop=True)
    laps["PositionOnLap"] = laps.groupby("LapNumber").cumcount() + 1
    laps["IntervalAhead"] = laps.groupby("LapNumber")["SessionTime"].diff()
    for col in ov.PAIR_COLUMNS:
        if col not in laps.columns:
            laps[col] = np.nan
    raw = laps[["Year", "EventName", "DriverNumber", "LapNumber"]].copy()
    event = [pits.get((d, n), "1") for d, n in zip(raw.DriverNumber, raw.LapNumber, strict=True)]
    raw["PitInTime"] = [1.0 if e == "in" else np.nan for e in event]
    raw["PitOutTime"] = [1.0 if e == "out" else np.nan for e in event]
    raw["TrackStatus"] = ["1" if e in ("in", "out") else e for e in event]
    return base.Corpus(laps=laps, raw_laps=raw)


def labels_of(corpus: base.Corpus, behind: str = "2", lap: int = 1) -> list[object]:
    frame = ov.labelled_pairs(corpus)
    row = frame[(frame["DriverNumber"] == behind) & (frame["LapNumber"] == lap)]
    assert len(row) == 1, f"expected one pair row for car {behind} on lap {lap}"
    return [None if pd.isna(v) else int(v) for v in row[[ov.label(h) for h in ov.HORIZONS]].iloc[0]]


def test_pairs_are_adjacent_cars_on_the_same_lap() -> None:
    toy = race({"1": [100, 200], "2": [101, 201.5], "3": [103, 201]})
    pairs = ov.pair_rows(toy.laps)
    got = sorted(zip(pairs.LapNumber, pairs.DriverNumber, pairs.AheadDriverNumber, strict=True))
    assert got == [(1, "2", "1"), (1, "3", "2"), (2, "2", "3"), (2, "3", "1")]
    lap1 = pairs[(pairs.LapNumber == 1) & (pairs.DriverNumber == "3")].iloc[0]
    assert lap1.AheadSessionTime == 101 and lap1.IntervalAhead == pytest.approx(2.0)
    assert (pairs.index.isin(toy.laps.index)).all()  # the car behind's row index


@pytest.mark.parametrize(
    ("ends_b", "pits", "expected"),
    [
        ([101, 199, 299, 399], {}, [1, 1, 1]),  # passes on lap 2
        ([101, 201, 299, 399], {}, [0, 1, 1]),  # passes on lap 3
        ([101, 201, 301, 401], {}, [0, 0, 0]),  # stays behind
        ([101, 199, 301, 401], {}, [1, 1, 1]),  # passes, then is re-passed: still a pass
        ([101, 199, 299, 399], {("1", 2): "in"}, [None, None, None]),  # A pits: not an overtake
        ([101, 201, 299, 399], {("1", 3): "in"}, [0, None, None]),  # stop inside horizons 2, 3
        ([101, 199, 299, 399], {("1", 3): "in"}, [1, 1, 1]),  # the pass came before the stop
        ([101, 201, 299, 399], {("2", 3): "out"}, [0, None, None]),  # B's pit exit on lap 3
        ([101, 201, 299, 399], {("2", 2): "4"}, [0, 1, 1]),  # SC later: outcome kept as it is
    ],
)
def test_label_rules(ends_b: list[float], pits: dict[tuple[str, int], str], expected: list[object]) -> None:
    assert labels_of(race({"1": [100, 200, 300, 400], "2": ends_b}, pits)) == expected


def test_retirement_and_finish_censor_the_horizons() -> None:
    assert labels_of(race({"1": [100, 200], "2": [101, 201, 301, 401]})) == [0, None, None]  # A retires
    assert labels_of(race({"1": [100, 200, 300], "2": [101, 199, 301]}), lap=1) == [1, 1, 1]
    assert labels_of(race({"1": [100, 200, 300], "2": [101, 201, 301]}), lap=2) == [0, None, None]  # finish


def test_rows_with_a_pit_entry_or_neutralised_lap_n_are_dropped() -> None:
    ends = {"1": [100, 200, 300], "2": [101, 201, 301]}
    assert labels_of(race(ends), lap=1) == [0, 0, None]
    for pits in ({("1", 1): "in"}, {("2", 1): "in"}, {("2", 1): "6"}, {("2", 1): "41"}):
        frame = ov.labelled_pairs(race(ends, pits))
        assert 1 not in set(frame["LapNumber"]), pits
    kept = ov.labelled_pairs(race(ends, {("2", 1): "2"}))  # a yellow flag is still racing
    assert 1 in set(kept["LapNumber"])


def test_gap_logistic_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(0)  # synthetic draws from a known logistic model (code test only)
    x = rng.uniform(0, 5, 200_000)
    y = (rng.uniform(size=x.size) < ov.logistic((0.5, -1.2), x)).astype(float)
    coef = ov.fit_logistic(x, y)
    assert coef[0] == pytest.approx(0.5, abs=0.05) and coef[1] == pytest.approx(-1.2, abs=0.03)
    residual = y - ov.logistic(coef, x)  # the maximum-likelihood score equations hold
    assert abs(residual.sum()) < 1e-6 * x.size and abs((x * residual).sum()) < 1e-6 * x.size


def test_horizon_metrics_on_hand_checked_rows() -> None:
    y = np.array([1.0, 0.0, 1.0, 0.0])
    m = ov.horizon_metrics(y, {"model": np.array([0.9, 0.1, 0.4, 0.6])}, 2)
    assert m["rows_h2"] == 4 and m["base_rate_h2"] == 0.5
    assert m["model_h2_auc_roc"] == pytest.approx(0.75)
    assert m["model_h2_auc_pr"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["model_h2_brier"] == pytest.approx((0.01 + 0.01 + 0.36 + 0.36) / 4)


def test_circuit_rate_leaves_the_own_race_out_and_shrinks() -> None:
    pairs = pd.DataFrame(
        {
            "Year": [2022, 2022, 2023, 2023, 2023],
            "EventName": ["A GP", "A GP", "A GP", "A GP", "B GP"],
            ov.label(1): pd.array([1, 0, 1, 1, 0], dtype="Int8"),
        }
    )
    rates = ov.circuit_rates(pairs, prior_rows=1.0)
    assert rates["overall"] == pytest.approx(0.6)
    full = ov.circuit_rate(pairs, rates)
    assert full.iloc[0] == pytest.approx((3 + 0.6) / (4 + 1))
    loo = ov.circuit_rate(pairs, rates, leave_race_out=True)
    assert loo.iloc[0] == pytest.approx((2 + 0.6) / (2 + 1))  # 2022 sees only 2023's two passes
    assert loo.iloc[4] == pytest.approx(0.6)  # B GP's only race left out: the overall rate
    unknown = ov.circuit_rate(pd.DataFrame({"EventName": ["C GP"]}), rates)
    assert unknown.iloc[0] == pytest.approx(0.6)


# ------------------------------------------------------------------ data checks (real laps)
def test_pair_features_come_from_lap_features() -> None:
    assert set(ov.SERVICE_FEATURES) <= set(schemas.LapFeatures.model_fields)
    assert {"Driver", "DriverNumber", "Team"}.isdisjoint(ov.FEATURES)


def test_labels_on_real_laps(pairs: pd.DataFrame) -> None:
    assert len(pairs) > 1500
    labels = pairs[[ov.label(h) for h in ov.HORIZONS]]
    for col in labels.columns:
        assert set(labels[col].dropna().unique()) <= {0, 1}
    rates = [labels[c].dropna().mean() for c in labels.columns]
    assert 0.01 < rates[0] < rates[1] < rates[2] < 0.3  # more laps, more passes
    both = labels.dropna()
    assert (both.iloc[:, 0] <= both.iloc[:, 1]).all() and (both.iloc[:, 1] <= both.iloc[:, 2]).all()
    assert (pairs["IntervalAhead"] >= 0).all() and (pairs["PositionOnLap"] >= 2).all()


def test_labels_agree_with_official_positions(corpus: base.Corpus, pairs: pd.DataFrame) -> None:
    """Where both cars complete lap N+1 with no stop, a 1-lap pass is exactly B's official
    Position being ahead of A's on lap N+1."""
    raw = corpus.raw_laps.assign(DriverNumber=lambda f: f.DriverNumber.astype(str))
    position = raw.set_index(["Year", "EventName", "DriverNumber", "LapNumber"])["Position"]
    rows = pairs[pairs[ov.label(1)].notna()]

    def official(who: str) -> np.ndarray:
        idx = pd.MultiIndex.from_arrays(
            [rows.Year, rows.EventName, rows[who + "DriverNumber"].astype(str), rows.LapNumber + 1]
        )
        return position.reindex(idx).to_numpy(dtype=float)

    b, a = official(""), official(ov.AHEAD)
    known = np.isfinite(b) & np.isfinite(a)
    assert known.mean() > 0.95
    np.testing.assert_array_equal(rows[ov.label(1)].to_numpy(dtype=float)[known], (b < a)[known])


def test_feature_matrix_schema(pairs: pd.DataFrame) -> None:
    x = ov.feature_matrix(pairs, pd.Series(0.05, index=pairs.index))
    assert list(x.columns) == list(ov.FEATURES)
    assert all(pd.api.types.is_float_dtype(t) for t in x.dtypes)
    assert x["IntervalAhead"].notna().all() and x["CompoundCode"].notna().mean() > 0.99


# ------------------------------------------------------------------ behaviour (STYLE 7)
def test_driver_identity_does_not_change_the_call(bundle: base.ModelBundle, held_out: pd.DataFrame) -> None:
    swapped = held_out.copy()
    for col in ("Driver", "DriverNumber", "AheadDriverNumber", "Team"):
        swapped[col] = swapped[col].iloc[::-1].to_numpy()
    pd.testing.assert_frame_equal(ov.predict(bundle, swapped), ov.predict(bundle, held_out))


def test_close_car_on_fresher_tyres_beats_the_same_car_far_behind(
    bundle: base.ModelBundle, held_out: pd.DataFrame
) -> None:
    fresher = held_out.assign(TyreLife=held_out["AheadTyreLife"] - 10).query("TyreLife >= 0")
    close = ov.predict(bundle, fresher.assign(IntervalAhead=0.3, InDRSRange=True))
    far = ov.predict(bundle, fresher.assign(IntervalAhead=3.0, InDRSRange=False))
    assert len(fresher) > 50
    assert (close.to_numpy() >= far.to_numpy() - 1e-12).all()  # monotone in the gap, row by row
    assert (close.mean() > far.mean() + 0.02).all()
    closer = ov.predict(bundle, fresher.assign(IntervalAhead=np.linspace(0.1, 0.9, len(fresher))))
    assert (closer.to_numpy() >= far.to_numpy() - 1e-12).all()


def test_probability_never_rises_with_the_gap(bundle: base.ModelBundle, held_out: pd.DataFrame) -> None:
    rows = held_out.iloc[::5]
    grid = np.linspace(0.0, 5.0, 26)
    preds = np.stack(
        [ov.predict(bundle, rows.assign(IntervalAhead=g, InDRSRange=g < 1.0)).to_numpy() for g in grid]
    )
    assert (np.diff(preds, axis=0) <= 1e-12).all()
    assert (preds[0] > preds[-1]).mean() > 0.9  # and the gap matters


def test_horizons_are_probabilities_in_order(bundle: base.ModelBundle, held_out: pd.DataFrame) -> None:
    got = ov.predict(bundle, held_out)
    assert list(got.columns) == [ov.prediction(h) for h in ov.HORIZONS]
    assert ((got >= 0) & (got <= 1)).all().all()
    means = got.mean().to_numpy()
    assert means[0] < means[1] < means[2]


def test_held_out_race_ranks_passes_better_than_the_gap(
    bundle: base.ModelBundle, corpus: base.Corpus
) -> None:
    result = ov.evaluate(bundle, corpus.only(lambda f: held_out_split(f) == "test"))
    m = result.metrics
    assert result.races == ["2023 Las Vegas Grand Prix"]
    assert m["rows_h1"] > 300 and m["model_h1_auc_roc"] > 0.8
    for h in ov.HORIZONS:
        assert m[f"model_h{h}_auc_pr"] > 2 * m[f"base_rate_h{h}"]
        assert m[f"model_h{h}_auc_roc"] > m[f"gap_logistic_h{h}_auc_roc"]
    assert result.targets[0].name == "model_h1_auc_pr" and not math.isnan(result.targets[0].value)


def test_bundle_round_trip(bundle: base.ModelBundle, held_out: pd.DataFrame, tmp_path: object) -> None:
    from pathlib import Path

    folder = bundle.save(Path(str(tmp_path)) / "overtake")
    loaded = base.ModelBundle.load(folder)
    pd.testing.assert_frame_equal(ov.predict(loaded, held_out), ov.predict(bundle, held_out))


def test_serving_scores_the_pairs_of_one_lap(bundle: base.ModelBundle, corpus: base.Corpus) -> None:
    """The serving path: LapFeatures rows of one lap of one session (no race names) -> pair rows."""
    laps = corpus.laps[(corpus.laps.EventName == "Las Vegas Grand Prix") & (corpus.laps.LapNumber == 30)]
    rows = ov.pair_rows(laps.drop(columns=["Year", "EventName"]))
    assert len(rows) == len(laps) - 1
    assert set(rows.index) == set(laps.index[laps.PositionOnLap > 1])
    got = ov.predict(bundle, rows)
    assert got.notna().all().all() and got.index.equals(rows.index)
