"""The prediction app's HTTP client: concurrency, retries with backoff, no retry on 4xx, outcomes.

httpx.MockTransport stands in for the services here (unit tier); the integration tier calls real
``bentoml serve`` processes.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from stratx.quix_apps.kit.model_client import ModelClient, RetryPolicy

URLS = {"lap_time": "http://lap", "tyre_deg": "http://tyre"}
FAST = RetryPolicy(timeout_s=0.5, retries=3, backoff_s=0.01, max_backoff_s=0.05)


def ok(request: httpx.Request) -> httpx.Response:
    rows = json.loads(request.content)["rows"]
    body = {
        "model": "m",
        "version": "7",
        "rows": len(rows),
        "predictions": [{"X": r["LapNumber"]} for r in rows],
    }
    return httpx.Response(200, json=body)


def test_calls_every_model_with_rows_and_returns_predictions_in_order() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        assert request.url.path == "/predict"
        return ok(request)

    with ModelClient(URLS, FAST, seed=1, transport=httpx.MockTransport(handler)) as client:
        out = client.predict_all({"lap_time": [{"LapNumber": 3}, {"LapNumber": 4}], "tyre_deg": []})
    assert list(out) == ["lap_time"] and sorted(seen) == ["lap"]  # no rows, no call
    assert out["lap_time"].predictions == [{"X": 3}, {"X": 4}]
    assert out["lap_time"].version == "7" and out["lap_time"].attempts == 1


def test_5xx_and_timeouts_are_retried_then_succeed() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(503, text="warming up")
        if calls["n"] == 2:
            raise httpx.ConnectTimeout("slow", request=request)
        return ok(request)

    with ModelClient(URLS, FAST, seed=1, transport=httpx.MockTransport(handler)) as client:
        out = client.predict_all({"lap_time": [{"LapNumber": 9}]})["lap_time"]
    assert out.predictions == [{"X": 9}] and out.attempts == 3 and calls["n"] == 3


def test_a_service_that_stays_down_gives_an_unavailable_outcome_with_the_reason() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with ModelClient(URLS, FAST, seed=1, transport=httpx.MockTransport(handler)) as client:
        out = client.predict_all({"tyre_deg": [{"LapNumber": 1}]})["tyre_deg"]
    assert out.predictions is None and out.attempts == FAST.retries + 1
    assert out.reason is not None and "connection refused" in out.reason


def test_a_4xx_is_not_retried() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(422, json={"error": "row 0: LapNumber must be >= 1"})

    with ModelClient(URLS, FAST, seed=1, transport=httpx.MockTransport(handler)) as client:
        out = client.predict_all({"lap_time": [{"LapNumber": 0}]})["lap_time"]
    assert calls["n"] == 1 and out.predictions is None
    assert out.reason is not None and out.reason.startswith("HTTP 422") and "LapNumber" in out.reason


def test_models_are_called_concurrently() -> None:
    inside, peak = [0], [0]

    async def handler(request: httpx.Request) -> httpx.Response:
        inside[0] += 1
        peak[0] = max(peak[0], inside[0])
        await asyncio.sleep(0.2)
        inside[0] -= 1
        return ok(request)

    with ModelClient(URLS, FAST, seed=1, transport=httpx.MockTransport(handler)) as client:
        started = time.perf_counter()
        out = client.predict_all({"lap_time": [{"LapNumber": 1}], "tyre_deg": [{"LapNumber": 1}]})
        elapsed = time.perf_counter() - started
    assert all(o.predictions for o in out.values())
    assert peak[0] == 2 and elapsed < 0.35  # both in flight at once: one round trip, not two


def test_backoff_grows_and_is_capped_with_jitter() -> None:
    import random

    rng = random.Random(0)
    policy = RetryPolicy(backoff_s=0.1, max_backoff_s=0.5)
    delays = [policy.delay(a, rng) for a in range(6)]
    assert all(0.05 <= delays[0] <= 0.1 for _ in range(1))
    assert all(d <= 0.5 for d in delays) and delays[-1] >= 0.25
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered
