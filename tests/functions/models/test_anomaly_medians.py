"""The anomaly references' grouped medians (numpy) equal pandas' grouped shift / rolling /
expanding medians, which they replaced for speed: on real laps of 2023 Bahrain (the helpers and
``lap_rows``' own columns) and on SYNTHETIC frames with NaN, ties, interleaved groups and groups
shorter than the window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stratx.bentos.lifecycle import sources, training
from stratx.functions.models.anomaly_rows import KEYS, _group_ids, _in_order, lap_rows, rolling_median
from tests.conftest import BAHRAIN_2023


def pandas_rolling(
    values: pd.Series, keys: list[pd.Series], window: int, min_periods: int, shift: int
) -> pd.Series:
    shifted = values.groupby(keys, sort=False).shift(shift)
    rolled = shifted.groupby(keys, sort=False).rolling(window, min_periods=min_periods).median()
    return rolled.reset_index(level=list(range(len(keys))), drop=True).reindex(values.index)


def pandas_earlier(values: pd.Series, keys: list[pd.Series], order: pd.Series) -> pd.Series:
    frame = pd.DataFrame(
        {
            "v": values.to_numpy(),
            "o": order.to_numpy(),
            **{f"k{i}": k.to_numpy() for i, k in enumerate(keys)},
        },
        index=values.index,
    ).sort_values("o", kind="stable")
    cols = [f"k{i}" for i in range(len(keys))]
    running = frame.groupby(cols, sort=False)["v"].expanding().median()
    running = running.reset_index(level=list(range(len(cols))), drop=True)
    return running.groupby([frame[c] for c in cols], sort=False).shift(1).reindex(values.index)


def earlier_median(values: pd.Series, keys: list[pd.Series], order: pd.Series) -> pd.Series:
    """``lap_rows``' field reference for one signal, from its own primitives: per group, the median
    of the values of the rows earlier in ``order``."""
    groups = _group_ids(keys)
    rank = np.lexsort((order.to_numpy(dtype=float), groups))
    width = max(1, int(np.bincount(groups).max())) if len(groups) else 1
    return pd.Series(_in_order(values.to_numpy(dtype=float), rank, groups, width, 1), index=values.index)


def assert_same(a: pd.Series, b: pd.Series) -> None:
    assert a.index.equals(b.index)
    np.testing.assert_array_equal(a.to_numpy(dtype=float), b.to_numpy(dtype=float))


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    corpus = training.build_corpus([sources.load_bundled(BAHRAIN_2023)], progress=False)
    return lap_rows(corpus.laps).sample(frac=1.0, random_state=3)  # rows in no particular order


@pytest.mark.parametrize(
    ("window", "min_periods", "shift"), [(5, 2, 1), (3, 1, 1), (8, 6, 1), (4, 1, 0), (2, 2, 3)]
)
def test_rolling_median_equals_pandas_on_real_laps(
    real: pd.DataFrame, window: int, min_periods: int, shift: int
) -> None:
    for column in ("LapTime", "SpeedST", "SpeedI1"):
        values = real[column].astype(float).where(real["InScope"])
        keys = [real[k] for k in KEYS]
        assert_same(
            rolling_median(values, keys, window, min_periods, shift),
            pandas_rolling(values, keys, window, min_periods, shift),
        )


def test_lap_rows_references_equal_pandas_on_real_laps(real: pd.DataFrame) -> None:
    """``lap_rows`` builds every reference from groups and orders computed once: each column
    equals pandas' grouped median of that signal alone (rows in the drivers' lap order)."""
    rows = real.sort_values([*KEYS, "LapNumber"], kind="stable")
    lap = [rows.Year, rows.EventName, rows.LapNumber]
    order = rows["Time"].astype(float).rank(method="first")
    for column in ("SpeedI1", "SpeedI2", "SpeedFL", "SpeedST", "LapTime"):
        values = rows[column].astype(float).where(rows["InScope"])
        assert_same(rows[f"Field_{column}"].astype(float), pandas_earlier(values, lap, order))
        if column != "LapTime":  # LapTime's reference is the lap features' Last3Median
            expected = pandas_rolling(values, [rows[k] for k in KEYS], 5, 2, 1)
            assert_same(rows[f"Ref_{column}"].astype(float), expected)
    assert rows["Field_LapTime"].notna().sum() > 500 and rows["Ref_SpeedST"].notna().sum() > 500


@pytest.mark.parametrize("seed", range(6))
def test_both_equal_pandas_on_synthetic_frames(seed: int) -> None:
    """SYNTHETIC: random groups (some of one row), values with NaN and ties, order with ties."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    groups = pd.Series(rng.choice(["a", "b", "c", "d", "e"], n), index=rng.permutation(n) + 100)
    lap = pd.Series(rng.integers(1, 4, n), index=groups.index)
    values = pd.Series(np.round(rng.normal(90, 2, n), 1), index=groups.index)
    values[rng.random(n) < 0.3] = np.nan
    order = pd.Series(rng.integers(0, 10, n).astype(float), index=groups.index).rank(method="first")
    for window, min_periods in ((3, 1), (5, 2), (1, 1)):
        assert_same(
            rolling_median(values, [groups], window, min_periods),
            pandas_rolling(values, [groups], window, min_periods, 1),
        )
    assert_same(earlier_median(values, [groups, lap], order), pandas_earlier(values, [groups, lap], order))


def test_an_empty_frame_gives_an_empty_series() -> None:
    empty = pd.Series([], dtype=float)
    assert rolling_median(empty, [empty.astype(object)], 3, 1).empty
    assert earlier_median(empty, [empty.astype(object)], empty).empty


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_lap_statistics_row_median_equals_numpys_nanmedian(seed: int) -> None:
    """SYNTHETIC deficits, five signals a row, NaN in any pattern, ties: ``row_medians`` (the
    lap statistic's median without NumPy's masked-array path) equals ``np.nanmedian`` bit for bit."""
    from stratx.functions.models.anomaly_scoring import row_medians

    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 2.0, (4000, 5))
    values[rng.random(values.shape) < 0.3] = np.nan
    values[::7, 1] = values[::7, 2]  # ties
    present = np.count_nonzero(~np.isnan(values), axis=1)
    some = present >= 1
    with np.errstate(all="ignore"):
        expected = np.nanmedian(values[some], axis=1)
    np.testing.assert_array_equal(row_medians(values, present)[some], expected)
    for row in values[some][:300]:  # one-row requests
        one = row[None, :]
        got = row_medians(one, np.count_nonzero(~np.isnan(one), axis=1))
        np.testing.assert_array_equal(got, np.nanmedian(one, axis=1))
