"""Reliability tables, calibration error and the percentile check of the model cards, on hand-made
(SYNTHETIC) probabilities whose answers are known; every card says what its model cannot do."""

from __future__ import annotations

import numpy as np
import pytest

from stratx.bentos.lifecycle import evaluation
from stratx.bentos.lifecycle.cards import calibration
from stratx.functions.models.registry import MODEL_KEYS


def test_a_calibrated_predictor_has_a_small_error_and_a_biased_one_its_bias() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    y = rng.uniform(0, 1, 20_000) < p  # SYNTHETIC: outcomes drawn at the stated probability
    table = calibration.reliability(y, p, edges=None, bins=10)
    assert len(table) == 10 and table["n"].sum() == 20_000
    assert calibration.calibration_error(table) < 0.02
    biased = calibration.reliability(y, np.clip(p + 0.2, 0, 1), edges=None)
    assert calibration.calibration_error(biased) == pytest.approx(0.2, abs=0.05)


def test_fixed_edges_drop_thin_bins_and_missing_rows() -> None:
    p = np.r_[np.full(50, 0.01), np.full(5, 0.9), [np.nan]]
    y = np.r_[np.zeros(49), [1.0], np.ones(5), [1.0]]
    table = calibration.reliability(y, p)  # RARE_EDGES; the 0.8-1.0 bin has 5 rows < MIN_BIN_ROWS
    assert list(table["n"]) == [50]
    assert table["observed"].iloc[0] == pytest.approx(0.02) and table["predicted"].iloc[0] == pytest.approx(
        0.01
    )
    assert calibration.calibration_error(table) == pytest.approx(0.01)
    assert np.isnan(calibration.calibration_error(calibration.reliability([], [])))


def test_exceedance_of_a_percentile_score() -> None:
    scores = np.linspace(0, 1, 10_001)  # a perfect percentile: P(score >= s) = 1 - s
    table = calibration.exceedance(scores, levels=(0.5, 0.9))
    np.testing.assert_allclose(table["observed"], [0.5, 0.1], atol=1e-3)
    assert table["expected"].tolist() == pytest.approx([0.5, 0.1])


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_every_model_card_says_what_the_model_cannot_do(key: str) -> None:
    limits = evaluation.card_limits(key)
    assert len(limits) >= 2 and all(len(text) > 40 for text in limits)
