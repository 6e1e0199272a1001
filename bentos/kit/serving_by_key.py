"""Prediction by entity key: a service reads its model's FeatureService from the Feast online store.

The BentoML + Feast pattern: the caller sends only ``[{"SessionKey": 9472, "DriverNumber": "1"}]``;
the service reads the latest values of its versioned FeatureService (``lap_time_v1``, ...) that the
lap-features app pushed for each key, and scores them with the same recipe call as ``predict``. The
response is ``predict``'s (model, version, rows, one prediction per key, in order) plus, per key,
the lap that was scored (``LapNumbers``) and the keys that could not be answered (``unavailable``,
with the reason; their prediction is all null): no online row for the key, Feast not installed, the
feature service not in the registry.

The store is the one the apps push to, configured by the same variables (``STRATX_FEAST_REPO``,
``STRATX_FEAST_DATA_DIR``, ``STRATX_FEAST_REDIS_CONNECTION``; ``stratx.functions.settings.FeastSettings``)
and opened on the first by-key request, so a service that is never asked by key needs no Feast.
The models whose request row is one LapFeatures record have it (lap_time, tyre_deg, pit_window:
``BY_KEY_MODELS``); overtake's rows are pairs of cars and anomaly's a session's history, which one
key does not name.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from stratx.bentos.kit.serving import Served, score_frame
from stratx.bentos.kit.serving_schemas import MAX_ROWS, SCHEMAS, Prediction, PredictResponse
from stratx.functions.schemas import DRIVER_NUMBER

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

P = TypeVar("P", bound=Prediction)
BY_KEY_MODELS = ("lap_time", "tyre_deg", "pit_window")


class FeatureKey(BaseModel):
    """One entity key of the per-lap feature views."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    SessionKey: int = Field(description="OpenF1 session_key")
    DriverNumber: str = Field(pattern=DRIVER_NUMBER, description='car number, e.g. "1"')


Keys = Annotated[list[FeatureKey], Field(min_length=1, max_length=MAX_ROWS)]


class Unavailable(BaseModel):
    """A key the service could not answer, and why."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, description="position of the key in the request")
    SessionKey: int
    DriverNumber: str
    reason: str


class ByKeyResponse(PredictResponse[P], Generic[P]):
    """``predict``'s response plus the lap scored per key and the keys that were not answered."""

    LapNumbers: list[int | None] = Field(description="per key, the lap whose features were scored")
    unavailable: list[Unavailable] = Field(default_factory=list)


class OnlineReader:
    """The model's FeatureService read from the online store; the store opens on first use."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._store: FeatureStore | None = None
        self._lock = threading.Lock()

    def store(self) -> FeatureStore:
        with self._lock:
            if self._store is None:
                from stratx.bentos.kit import feature_store as fs

                store = fs.open_store()  # FeastSettings from the environment, as the apps read them
                try:
                    fs.feature_service(store, self.service)
                except Exception:  # a fresh registry: apply the repo (what the apps do at start)
                    fs.apply_repo(store)
                self._store = store
            return self._store

    def read(self, keys: list[FeatureKey]) -> dict[str, list[Any]]:
        from stratx.bentos.kit import feature_store as fs

        rows = [{"SessionKey": k.SessionKey, "DriverNumber": k.DriverNumber} for k in keys]
        return fs.online_features(self.store(), self.service, rows)


def predict_by_key(served: Served, reader: OnlineReader, keys: list[FeatureKey]) -> ByKeyResponse[Any]:
    """Score each key's latest online features with ``served``; keys without them are unavailable."""
    schema = SCHEMAS[served.key]
    prediction = schema.prediction
    empty = prediction(**dict.fromkeys(prediction.model_fields))
    predictions: list[Any] = [empty] * len(keys)
    laps: list[int | None] = [None] * len(keys)
    unavailable: list[Unavailable] = []
    try:
        values = reader.read(keys)
    except Exception as exc:  # Feast missing or unreachable: every key is unavailable, loudly
        reason = f"online store not readable: {type(exc).__name__}: {exc}"
        unavailable = [Unavailable(index=i, **k.model_dump(), reason=reason) for i, k in enumerate(keys)]
    else:
        names = [n for n in values if n not in ("SessionKey", "DriverNumber")]
        found = [i for i in range(len(keys)) if any(values[n][i] is not None for n in names)]
        answered = set(found)
        for i, key in enumerate(keys):
            if i not in answered:
                reason = f"no online row in {reader.service} for this key (no lap pushed for it yet)"
                unavailable.append(Unavailable(index=i, **key.model_dump(), reason=reason))
        if found:
            frame = request_frame(schema.row, values, found)
            for i, scored in zip(found, score_frame(served, frame, prediction), strict=True):
                predictions[i] = scored
                lap = values.get("LapNumber", [None] * len(keys))[i]
                laps[i] = None if lap is None else int(lap)
    return ByKeyResponse[prediction](  # type: ignore[valid-type]
        model=served.model_name,
        version=served.version,
        rows=len(predictions),
        predictions=predictions,
        LapNumbers=laps,
        unavailable=unavailable,
    )


def request_frame(row: type[BaseModel], values: dict[str, list[Any]], found: list[int]) -> pd.DataFrame:
    """The online values of the ``found`` keys as a request frame: every field of the request row
    model, those the feature service does not hold null (the recipe reads only the service's)."""
    columns = {
        name: [values[name][i] if name in values else None for i in found] for name in row.model_fields
    }
    import pandas as pd

    return pd.DataFrame(columns)
