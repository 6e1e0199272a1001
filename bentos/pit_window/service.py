"""BentoML service of model 3, pit window: LapFeatures rows (+ optional EventName, RaceLaps,
TrackStatus) in; P(pit within 3 laps), the recommended in-lap window, pit loss and undercut score out.

Serve: ``bentoml serve`` in this folder (or ``stratx serve``); build: ``make bentos``.
"""

import bentoml

from stratx.bentos.kit import serving, serving_by_key, serving_limits
from stratx.bentos.kit.serving_schemas import PitWindowPrediction, PitWindowRow, PredictResponse

KEY = "pit_window"


@bentoml.service(**serving_limits.loopback(serving.service_config(KEY)))
class PitWindow:
    """The registry's champion pit-window model."""

    champion = bentoml.models.BentoModel(serving.bento_tag(KEY))

    def __init__(self) -> None:
        self.served = serving.load_served(self.champion, KEY)
        self.online = serving_by_key.OnlineReader(self.served.recipe.feature_service)

    @bentoml.api
    async def predict(self, rows: serving.Rows[PitWindowRow]) -> PredictResponse[PitWindowPrediction]:
        """A client-side batch (e.g. one lap of every car): predictions, model name and version."""
        return serving.respond(self.served, rows, PitWindowPrediction)

    @bentoml.api
    def predict_by_key(self, keys: serving_by_key.Keys) -> serving_by_key.ByKeyResponse[PitWindowPrediction]:
        """[{SessionKey, DriverNumber}]: the latest features of each key from the Feast online store."""
        return serving_by_key.predict_by_key(self.served, self.online, keys)

    @bentoml.api(batchable=True, max_batch_size=serving.MAX_BATCH_SIZE, max_latency_ms=serving.MAX_LATENCY_MS)
    def predict_rows(self, rows: serving.Rows[PitWindowRow]) -> list[PitWindowPrediction]:
        """Adaptive batching: concurrent requests are merged into one model call."""
        return serving.score(self.served, rows, PitWindowPrediction)


PitWindow.add_asgi_middleware(serving_limits.BodyLimit, max_bytes=serving_limits.MAX_REQUEST_BYTES)  # type: ignore[attr-defined]  # bentoml.service returns a Service at run time
