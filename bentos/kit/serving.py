"""What every BentoML service under ``bentos/`` shares: loading the champion, scoring rows, responses.

Model loading (see ``bentos/README.md``): the registry's ``@champion`` is imported into the BentoML
model store by :func:`import_champion` (``stratx serve`` does it before starting the services,
``make bentos`` before ``bentoml build``, which packs the model into the Bento). A service declares
``bentoml.models.BentoModel(bento_tag(key))`` and loads it in ``__init__`` with :func:`load_served`,
so a built Bento needs neither MLflow nor the registry at run time.

This module is shipped inside every Bento (``stratx_serving`` wheel): it imports only pydantic,
pandas and the recipes at module level; MLflow and BentoML's model store only inside the functions
that need them.
"""

from __future__ import annotations

import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import BaseModel, Field

from stratx.bentos.kit.serving_schemas import MAX_ROWS, Prediction, PredictResponse
from stratx.functions.models import registry

if TYPE_CHECKING:
    import bentoml
    import pandas as pd

    from stratx.functions.models import base
    from stratx.functions.settings import TrainingSettings

R = TypeVar("R", bound=BaseModel)
P = TypeVar("P", bound=Prediction)

# Adaptive batching of the ``predict_rows`` endpoints: BentoML merges concurrent requests into one
# recipe call of at most MAX_BATCH_SIZE rows, waiting at most MAX_LATENCY_MS (503 beyond it).
MAX_BATCH_SIZE = 2000
MAX_LATENCY_MS = 2000
REQUEST_TIMEOUT_S = 30

Rows = Annotated[list[R], Field(min_length=1, max_length=MAX_ROWS)]
"""A request batch: 1..MAX_ROWS rows (an empty or oversized batch is a 400 with the reason)."""


def bento_tag(key: str) -> str:
    """The BentoML model tag a service loads: the MLflow model name, latest import."""
    return f"{registry.spec(key).model_name}:latest"


def service_name(key: str) -> str:
    """The service (and Bento) name of model ``key``, e.g. ``stratx-lap-time-service``."""
    return f"{registry.spec(key).model_name}-service"


def service_config(key: str) -> dict[str, Any]:
    """``@bentoml.service`` options, the same for every model."""
    return {
        "name": service_name(key),
        "workers": 1,
        "traffic": {"timeout": REQUEST_TIMEOUT_S},
        "metrics": {"enabled": True},
    }


@dataclass(frozen=True)
class Served:
    """A loaded champion: the recipe, its bundle and where it came from."""

    key: str
    recipe: base.Recipe
    bundle: base.ModelBundle
    model_name: str
    version: str
    bento_tag: str


def import_lightgbm_without_sklearn() -> None:
    """Import LightGBM with scikit-learn hidden, unless it is already imported. When scikit-learn is
    installed, LightGBM imports it (and most of SciPy through it) for its estimator wrappers. A
    service scores plain Boosters and needs none of that, and it cost ~60 MB of RSS per service
    (`bench/serving_latency.py` reports the RSS). scikit-learn is importable again afterwards."""
    if "lightgbm" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # the import system's "not installed"
    try:
        import lightgbm  # noqa: F401
    finally:
        if "sklearn" in sys.modules and sys.modules["sklearn"] is None:
            del sys.modules["sklearn"]


def load_served(stored: bentoml.Model, key: str) -> Served:
    """The bundle saved in a BentoML model by :func:`import_champion`, checked to be model ``key``."""
    import_lightgbm_without_sklearn()
    from stratx.functions import models
    from stratx.functions.models import base

    bundle = base.ModelBundle.load(Path(stored.path))
    if bundle.key != key:
        raise ValueError(f"BentoML model {stored.tag} holds model {bundle.key!r}, not {key!r}")
    meta = stored.info.metadata
    return Served(
        key=key,
        recipe=models.recipe(key),
        bundle=bundle,
        model_name=str(meta.get("mlflow_model", stored.tag.name)),
        version=str(meta.get("mlflow_version", stored.tag.version)),
        bento_tag=str(stored.tag),
    )


# ------------------------------------------------------------------ scoring
def rows_frame(rows: Sequence[BaseModel]) -> pd.DataFrame:
    """Validated request rows as the feature frame a recipe's ``predict`` takes."""
    import pandas as pd

    return pd.DataFrame.from_records([r.model_dump() for r in rows])


def _native(value: Any) -> Any:
    """NaN -> None; everything else as it is (``tolist`` already made it a Python scalar)."""
    return None if isinstance(value, float) and math.isnan(value) else value


# Request rows that identify one driver-lap of one session (anomaly batches are deduplicated on them).
LAP_KEYS = ["SessionKey", "DriverNumber", "LapNumber"]


def recipe_rows(key: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Any] | None]:
    """The rows model ``key``'s ``predict`` takes, built from a request frame (:func:`rows_frame`),
    and for each request row, in order, the index label of its recipe row (None: the same rows).

    Every model but anomaly takes the request rows as they are. Anomaly: the recipe's ``lap_rows``
    over the batch (one session's LapFeatures rows: the references come from the driver's earlier
    laps and the cars that completed the same lap earlier in the batch); a driver-lap sent twice
    (e.g. two requests merged by adaptive batching) is built once, from its first row, and both
    rows get its prediction. ``EventName`` is dropped so that the session is keyed by SessionKey."""
    if key != "anomaly":
        return frame, None
    import numpy as np
    import pandas as pd

    from stratx.functions.models import anomaly

    # each row's first row with the same driver-lap (plain Python: ~20 rows, cheaper than pandas)
    seen: dict[tuple[Any, ...], int] = {}
    first = [
        seen.setdefault(key, i)
        for i, key in enumerate(zip(*(frame[k].tolist() for k in LAP_KEYS), strict=True))
    ]
    unique = np.fromiter((f == i for i, f in enumerate(first)), dtype=bool, count=len(first))
    fields = [c for c in anomaly.ROW_FIELDS if c in frame.columns]
    built = anomaly.lap_rows(frame.loc[unique, fields].assign(_RequestRow=np.flatnonzero(unique)))
    built.index = pd.Index(built.pop("_RequestRow"))
    return built, first


def score(served: Served, rows: Sequence[BaseModel], prediction: type[P]) -> list[P]:
    """One prediction per row, in order (NaN outputs become null)."""
    return score_frame(served, rows_frame(rows), prediction)


def score_frame(served: Served, request: pd.DataFrame, prediction: type[P]) -> list[P]:
    """One prediction per row of a request frame (:func:`rows_frame`, or feature rows read by key)."""
    recipe_frame, labels = recipe_rows(served.key, request)
    frame = served.recipe.predict(served.bundle, recipe_frame)
    if labels is not None:
        frame = frame.loc[labels]
    columns = {c: [_native(v) for v in frame[c].tolist()] for c in frame.columns}
    return [
        prediction(**dict(zip(columns, values, strict=True)))
        for values in zip(*columns.values(), strict=True)
    ]


def respond(served: Served, rows: Sequence[BaseModel], prediction: type[P]) -> PredictResponse[P]:
    """The ``/predict`` response: the predictions plus the model name and registry version."""
    predictions = score(served, rows, prediction)
    return PredictResponse[prediction](  # type: ignore[valid-type]
        model=served.model_name, version=served.version, rows=len(predictions), predictions=predictions
    )


# ------------------------------------------------------------------ registry -> BentoML store
def import_champion(settings: TrainingSettings, key: str, alias: str = "champion") -> str:
    """Copy the registry's ``<model>@alias`` bundle into the BentoML model store (``$BENTOML_HOME``)
    as ``<model>:<new version>``; returns its tag. When the store's latest already holds the same
    registry version with the same tags, nothing is copied and that tag is returned."""
    import bentoml
    from bentoml.exceptions import NotFound

    from stratx.bentos.lifecycle import model_store

    with tempfile.TemporaryDirectory(prefix=f"stratx-{key}-") as tmp:
        registered = model_store.load_registered(settings, key, alias, dst=Path(tmp))
        metadata = {
            "mlflow_model": registered.model_name,
            "mlflow_version": registered.version,
            "mlflow_alias": alias,
            "mlflow_tags": registered.tags,
        }
        try:
            latest = bentoml.models.get(f"{registered.model_name}:latest")
            if {k: latest.info.metadata.get(k) for k in metadata} == metadata:
                return str(latest.tag)
        except NotFound:
            pass
        labels = {"stratx_model": key, "mlflow_version": registered.version, "mlflow_alias": alias}
        with bentoml.models.create(registered.model_name, labels=labels, metadata=metadata) as stored:
            registered.bundle.save(Path(stored.path))
        return str(stored.tag)
