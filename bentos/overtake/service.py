"""BentoML service of model 4, overtake: pair rows (the car behind's LapFeatures + the car ahead's as
``Ahead<column>``, optional ``EventName``) in; P(the car behind passes within 1, 2, 3 laps) out.

Pair rows are built client-side by the recipe's ``overtake.pair_rows`` (the prediction app sends one
per car behind). Serve: ``bentoml serve`` in this folder (or ``stratx serve``); build: ``make bentos``.
"""

import bentoml

from stratx.bentos.kit import serving, serving_limits
from stratx.bentos.kit.serving_schemas import OvertakePrediction, OvertakeRow, PredictResponse

KEY = "overtake"


@bentoml.service(**serving_limits.loopback(serving.service_config(KEY)))
class Overtake:
    """The registry's champion overtake model."""

    champion = bentoml.models.BentoModel(serving.bento_tag(KEY))

    def __init__(self) -> None:
        self.served = serving.load_served(self.champion, KEY)

    @bentoml.api
    async def predict(self, rows: serving.Rows[OvertakeRow]) -> PredictResponse[OvertakePrediction]:
        """A client-side batch (e.g. every pair of one lap): predictions, model name and version."""
        return serving.respond(self.served, rows, OvertakePrediction)

    @bentoml.api(batchable=True, max_batch_size=serving.MAX_BATCH_SIZE, max_latency_ms=serving.MAX_LATENCY_MS)
    def predict_rows(self, rows: serving.Rows[OvertakeRow]) -> list[OvertakePrediction]:
        """Adaptive batching: concurrent requests are merged into one model call."""
        return serving.score(self.served, rows, OvertakePrediction)


Overtake.add_asgi_middleware(serving_limits.BodyLimit, max_bytes=serving_limits.MAX_REQUEST_BYTES)  # type: ignore[attr-defined]  # bentoml.service returns a Service at run time
