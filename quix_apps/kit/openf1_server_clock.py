"""The simulated clock of the local OpenF1 server: OpenF1 date parsing and a thread-safe clock that
runs at any speed, pauses, jumps and gates which recorded records have "arrived".
Re-exported by :mod:`stratx.quix_apps.kit.openf1_server`.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any


# --------------------------------------------------------------------------------------------
# time helpers
# --------------------------------------------------------------------------------------------
def parse_date(value: str | datetime) -> datetime:
    """ISO date/time as OpenF1 accepts it; naive values are UTC. ``2023-11-19`` is midnight."""
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(value.strip().replace(" ", "+") if "T" in value else value.strip())
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def to_ts(value: str | datetime) -> float:
    return parse_date(value).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


# --------------------------------------------------------------------------------------------
# simulated clock
# --------------------------------------------------------------------------------------------
class SimClock:
    """Simulated session time, controlled by the test. Thread-safe.

    ``now = start + (real seconds since start) * speed + manual advances``.
    ``speed=0`` (or ``paused=True``) gives a manual clock moved only by ``advance``/``set``.
    """

    def __init__(self, start: str | datetime, speed: float = 1.0, paused: bool = False) -> None:
        self._lock = threading.Lock()
        self._anchor_sim = to_ts(start)
        self._anchor_real = time.monotonic()
        self._speed = float(speed)
        self._paused = paused

    def _now_locked(self) -> float:
        if self._paused:
            return self._anchor_sim
        return self._anchor_sim + (time.monotonic() - self._anchor_real) * self._speed

    def _reanchor(self, sim: float) -> None:
        self._anchor_sim = sim
        self._anchor_real = time.monotonic()

    def now_ts(self) -> float:
        with self._lock:
            return self._now_locked()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ts(), UTC)

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._reanchor(self._now_locked() + seconds)
        return self.now()

    def set(self, when: str | datetime) -> datetime:
        with self._lock:
            self._reanchor(to_ts(when))
        return self.now()

    @property
    def speed(self) -> float:
        return self._speed

    def set_speed(self, speed: float) -> None:
        with self._lock:
            self._reanchor(self._now_locked())
            self._speed = float(speed)

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        with self._lock:
            self._reanchor(self._now_locked())
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._reanchor(self._now_locked())
            self._paused = False

    def state(self) -> dict[str, Any]:
        return {"now": self.now().isoformat(), "speed": self._speed, "paused": self._paused}
