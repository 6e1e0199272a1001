"""The runtime knobs and gauges of the local OpenF1 server: injected faults (errors, 429s, latency,
dropped connections, OpenF1's rate limit) and the request log the tests read back to verify rate
limits (``GET /_stats``). Re-exported by :mod:`stratx.quix_apps.kit.openf1_server`.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from dataclasses import dataclass, fields
from typing import Any

#: OpenF1's published limit for unauthenticated use: 30 requests per 10 seconds.
OPENF1_RATE_LIMIT = 30
OPENF1_RATE_WINDOW_S = 10.0


# --------------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------------
@dataclass
class Faults:
    """Injected faults, changeable at runtime (attribute writes or ``POST /_control``).

    Order per ``/v1`` request: rate limit -> ``burst_429`` -> drop -> 500 -> delay -> answer.
    ``*_next`` fields are one-shot counters (the next N requests); ``*_rate`` are
    probabilities drawn from a ``random.Random(seed)``.
    """

    rate_limit: int | None = None  # max requests per rate_window_s (OPENF1_RATE_LIMIT); None = off
    rate_window_s: float = OPENF1_RATE_WINDOW_S
    burst_429: int = 0  # the next N requests answer 429
    retry_after_s: int = 1  # Retry-After of burst_429 answers (whole seconds, as HTTP requires)
    error_rate: float = 0.0  # probability of a 500
    error_next: int = 0  # the next N requests answer 500
    delay_s: float = 0.0  # sleep before every answer
    drop_rate: float = 0.0  # probability of closing the connection without a response
    drop_next: int = 0  # the next N requests are dropped
    duplicate_records: int = 0  # repeat up to N already-served records per response
    seed: int = 0

    def update(self, **changes: Any) -> None:
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        for k, v in changes.items():
            setattr(self, k, v)
        if "seed" in changes:
            self._rng = random.Random(self.seed)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._rng_lock = threading.Lock()

    def draw(self) -> float:
        """The next number in [0, 1) of the seeded fault RNG (``update(seed=...)`` restarts it)."""
        with self._rng_lock:
            return self._rng.random()


class DroppedConnection(Exception):
    """Raised where the connection cannot be closed directly (in-process transports)."""


# --------------------------------------------------------------------------------------------
# stats
# --------------------------------------------------------------------------------------------
class Stats:
    """Request log for rate-limit verification (``GET /_stats``). Thread-safe."""

    def __init__(self, keep: int = 5000) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.total = 0
            self.by_endpoint: Counter[str] = Counter()
            self.by_status: Counter[str] = Counter()
            self.records_served = 0
            self.log: deque[dict[str, Any]] = deque(maxlen=self._keep)

    def add(self, endpoint: str, query: str, status: int | str, n_records: int, t: float) -> None:
        with self._lock:
            self.total += 1
            self.by_endpoint[endpoint] += 1
            self.by_status[str(status)] += 1
            self.records_served += n_records
            self.log.append(
                {"t": t, "endpoint": endpoint, "query": query, "status": status, "records": n_records}
            )

    def snapshot(self, with_log: bool = True) -> dict[str, Any]:
        with self._lock:
            snap: dict[str, Any] = {
                "total": self.total,
                "by_endpoint": dict(self.by_endpoint),
                "by_status": dict(self.by_status),
                "records_served": self.records_served,
            }
            if with_log:
                snap["log"] = list(self.log)
            return snap

    def max_in_window(self, window_s: float) -> int:
        """Largest number of requests inside any ``window_s`` span (monotonic ``t``)."""
        with self._lock:
            ts = [e["t"] for e in self.log]
        best, lo = 0, 0
        for hi, t in enumerate(ts):
            while t - ts[lo] >= window_s:
                lo += 1
            best = max(best, hi - lo + 1)
        return best
