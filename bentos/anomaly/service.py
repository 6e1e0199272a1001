"""BentoML service of model 5, anomaly (lap level): one session's LapFeatures rows in (the cars that
completed the current lap earlier, the driver's recent laps, the row to score last); per row the
calibrated ``AnomalyScore``, ``AnomalyFlag`` and the ``AnomalySignal`` behind it out.

The recipe's references come from the batch (``serving.recipe_rows`` runs ``anomaly.lap_rows``);
window-level scoring is offline only. Serve: ``bentoml serve`` in this folder (or ``stratx serve``);
build: ``make bentos``.
"""

import bentoml

from stratx.bentos.kit import serving, serving_limits
from stratx.bentos.kit.serving_schemas import AnomalyPrediction, AnomalyRow, PredictResponse

KEY = "anomaly"


@bentoml.service(**serving_limits.loopback(serving.service_config(KEY)))
class Anomaly:
    """The registry's champion anomaly model."""

    champion = bentoml.models.BentoModel(serving.bento_tag(KEY))

    def __init__(self) -> None:
        self.served = serving.load_served(self.champion, KEY)

    @bentoml.api
    async def predict(self, rows: serving.Rows[AnomalyRow]) -> PredictResponse[AnomalyPrediction]:
        """One scoring context (the prediction app reads the last prediction): model name and version."""
        return serving.respond(self.served, rows, AnomalyPrediction)

    @bentoml.api(batchable=True, max_batch_size=serving.MAX_BATCH_SIZE, max_latency_ms=serving.MAX_LATENCY_MS)
    def predict_rows(self, rows: serving.Rows[AnomalyRow]) -> list[AnomalyPrediction]:
        """Adaptive batching: concurrent contexts are merged into one model call; driver-laps sent twice
        are scored once and, the references being causal, each context's last row keeps its score."""
        return serving.score(self.served, rows, AnomalyPrediction)


Anomaly.add_asgi_middleware(serving_limits.BodyLimit, max_bytes=serving_limits.MAX_REQUEST_BYTES)  # type: ignore[attr-defined]  # bentoml.service returns a Service at run time
