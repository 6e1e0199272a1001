"""Feature records as typed DataFrames (offline builds and parity checks)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel


def typed_frame(rows: Iterable[Mapping[str, Any]], model: type[BaseModel], **attrs: Any) -> pd.DataFrame:
    """Records of ``model`` as a frame: ints int64, other numbers float64 (None -> NaN), Date UTC.

    ``attrs`` (e.g. counts of rejected records) are kept in ``frame.attrs``.
    """
    frame = pd.DataFrame.from_records(list(rows), columns=list(model.model_fields))
    for name, info in model.model_fields.items():
        if name == "DriverNumber":
            continue
        if name == "Date":
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        elif info.annotation in (int, Literal[1]):
            frame[name] = frame[name].astype("int64")
        else:
            frame[name] = frame[name].astype("float64")
    frame.attrs.update(attrs)
    return frame
