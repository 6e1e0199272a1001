"""Scoring a LightGBM booster on a model matrix without LightGBM's pandas path.

``Booster.predict(DataFrame)`` copies the frame, maps each categorical column onto the categories
saved at training (``pandas_categorical``), replaces codes -1 by NaN and converts to numpy: about
1 ms a call, more than the trees take on the one to thirty rows a service request carries, and a
lap record makes about fifteen such calls across the five models. :func:`matrix` does the same
conversion directly (float64, which holds every integer, bool and category code exactly), so
:func:`booster_predict` returns what ``booster.predict(frame)`` returns, value for value
(``tests/functions/models/test_boosters.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def matrix(frame: pd.DataFrame, categories: list[list[Any]] | None) -> np.ndarray:
    """``frame`` as the float64 matrix LightGBM scores: categorical columns as their codes over
    ``categories`` (the booster's ``pandas_categorical``, one list per categorical column in
    order; None: the frame's own), unknown or missing categories NaN."""
    cat_columns = [j for j, dtype in enumerate(frame.dtypes) if isinstance(dtype, pd.CategoricalDtype)]
    if categories is not None and len(categories) != len(cat_columns):
        raise ValueError(
            f"the model has {len(categories)} categorical features, the frame {len(cat_columns)}"
        )
    out = np.empty(frame.shape, dtype=np.float64)
    numeric = [j for j in range(frame.shape[1]) if j not in cat_columns]
    if numeric:  # one conversion of every non-categorical column (per-column Series cost more)
        out[:, numeric] = frame.iloc[:, numeric].to_numpy(dtype=np.float64, na_value=np.nan)
    trained: list[list[Any] | None] = (
        list(categories) if categories is not None else [None] * len(cat_columns)
    )
    for j, category in zip(cat_columns, trained, strict=True):
        column = frame.iloc[:, j]
        if category is not None and list(column.cat.categories) != list(category):
            column = column.cat.set_categories(category)
        codes = column.cat.codes.to_numpy()
        out[:, j] = np.where(codes < 0, np.nan, codes)
    return out


def booster_predict(booster: Any, x: pd.DataFrame | np.ndarray, **kwargs: Any) -> np.ndarray:
    """``booster.predict(x, **kwargs)``, with a DataFrame converted by :func:`matrix` first."""
    if isinstance(x, pd.DataFrame):
        if x.shape[0] == 0:
            raise ValueError("Input data must be 2 dimensional and non empty.")
        x = matrix(x, booster.pandas_categorical)
    return np.asarray(booster.predict(x, **kwargs))
