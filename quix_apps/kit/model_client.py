"""HTTP client of the five model services, for the prediction app.

Every call is a batch ``POST <url>/predict`` with ``{"rows": [...]}`` (the services' contract,
``bentos/kit/serving_schemas.py``). The calls for one feature record go out concurrently on one
asyncio loop in a background thread (one pooled ``httpx.AsyncClient``), so a record costs the
slowest model's round trip, not the sum.

Failure policy, per model call: a timeout, a connection error, a 429 or a 5xx is retried up to
``retries`` times with exponential backoff and full jitter (``backoff_s * 2**attempt``, capped at
``max_backoff_s``, times a uniform draw in [0.5, 1.0]); a 4xx other than 429 is not retried (the
request is wrong; retrying cannot help). What still fails comes back as an :class:`Outcome`
with ``predictions`` None and the reason, so the app emits ``Status="unavailable"`` and goes on.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from stratx.quix_apps.kit import metrics

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Outcome:
    key: str
    version: str | None
    predictions: list[dict[str, Any]] | None
    reason: str | None = None
    attempts: int = 1
    seconds: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float = 2.0
    retries: int = 3
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2**attempt) * rng.uniform(0.5, 1.0))


class ModelClient:
    """Blocking facade over an asyncio loop thread; :meth:`predict_all` is safe to call from the
    Quix processing thread. Close it (or use it as a context manager) to stop the loop."""

    def __init__(
        self,
        urls: Mapping[str, str],
        policy: RetryPolicy | None = None,
        seed: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.urls = {k: u.rstrip("/") for k, u in urls.items()}
        self.policy = policy or RetryPolicy()
        self._rng = random.Random(seed)
        self._transport = transport  # tests: httpx.MockTransport
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="model-client", daemon=True)
        self._thread.start()
        self._client: httpx.AsyncClient = self._run(self._open())

    async def _open(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        return httpx.AsyncClient(timeout=self.policy.timeout_s, limits=limits, transport=self._transport)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._client.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def predict_all(self, requests: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Outcome]:
        """One concurrent batch call per model key with rows; keys without a URL are unavailable."""
        return dict(self._run(self._gather(requests)))

    async def _gather(self, requests: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[tuple[str, Outcome]]:
        keys = [k for k, rows in requests.items() if rows]
        outcomes = await asyncio.gather(*(self._call(k, requests[k]) for k in keys))
        return list(zip(keys, outcomes, strict=True))

    async def _call(self, key: str, rows: Sequence[Mapping[str, Any]]) -> Outcome:
        url = self.urls.get(key)
        if url is None:
            return _counted(Outcome(key, None, None, f"no service URL configured for {key}", attempts=0))
        loop = asyncio.get_running_loop()
        started = loop.time()
        reason = "not attempted"
        attempt = 0
        for attempt in range(self.policy.retries + 1):
            if attempt:
                await asyncio.sleep(self.policy.delay(attempt - 1, self._rng))
            try:
                response = await self._client.post(f"{url}/predict", json={"rows": list(rows)})
            except httpx.TimeoutException:
                reason = f"timeout after {self.policy.timeout_s:g} s"
                continue
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
                continue
            if response.status_code == 200:
                return _counted(_parsed(key, response, attempt + 1, loop.time() - started))
            reason = f"HTTP {response.status_code}: {response.text[:300]}"
            if response.status_code not in RETRY_STATUS:
                break
        return _counted(Outcome(key, None, None, reason, attempts=attempt + 1, seconds=loop.time() - started))


def _counted(outcome: Outcome) -> Outcome:
    """``outcome``, after counting it (calls by status, latency, retries) in the app's metrics."""
    metrics.model_call(outcome.key, outcome.predictions is not None, outcome.seconds, outcome.attempts)
    return outcome


def _parsed(key: str, response: httpx.Response, attempts: int, seconds: float) -> Outcome:
    try:
        body = response.json()
        predictions = list(body["predictions"])
        version = str(body["version"])
    except (ValueError, KeyError, TypeError) as exc:
        return Outcome(key, None, None, f"unreadable response: {exc}", attempts, seconds)
    return Outcome(key, version, predictions, None, attempts, seconds)
