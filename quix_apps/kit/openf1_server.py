"""A local OpenF1-compatible HTTP server that replays recorded real OpenF1 data.

``create_app(data_dir, clock)`` builds a plain ASGI app serving ``GET /v1/<endpoint>`` with
OpenF1's query syntax, gated by a simulated clock, with runtime-configurable faults.
``serve(app)`` runs it under uvicorn in a background thread on a free loopback port.
See ``tests/openf1_server/README.md``.

This module holds the app and its runner; the clock, the faults and stats, the recorded data, the
query filters and the ASGI plumbing live in ``openf1_server_{clock,control,data,query,asgi}.py``
and are re-exported here (the public import path).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stratx.quix_apps.kit.openf1_server_asgi import Message, Receive, Scope, Send, _drop, _json, _read_body
from stratx.quix_apps.kit.openf1_server_clock import SimClock, iso, parse_date, to_ts
from stratx.quix_apps.kit.openf1_server_control import (
    OPENF1_RATE_LIMIT,
    OPENF1_RATE_WINDOW_S,
    DroppedConnection,
    Faults,
    Stats,
)
from stratx.quix_apps.kit.openf1_server_data import DEFAULT_DATA_DIR, ENDPOINTS, SessionData, _Rec
from stratx.quix_apps.kit.openf1_server_query import IGNORED_KEYS, Filter, _Compiled, parse_query

__all__ = [
    "DEFAULT_DATA_DIR",
    "ENDPOINTS",
    "IGNORED_KEYS",
    "OPENF1_RATE_LIMIT",
    "OPENF1_RATE_WINDOW_S",
    "DroppedConnection",
    "Faults",
    "Filter",
    "Message",
    "OpenF1App",
    "Receive",
    "Scope",
    "Send",
    "SessionData",
    "SimClock",
    "Stats",
    "_Compiled",
    "create_app",
    "iso",
    "lights_out_clock",
    "parse_date",
    "parse_query",
    "serve",
    "to_ts",
]


# --------------------------------------------------------------------------------------------
# the ASGI app
# --------------------------------------------------------------------------------------------
class OpenF1App:
    """Plain ASGI app. Attributes ``data``, ``clock`` (None = everything has arrived),
    ``faults`` and ``stats`` may be changed by the test at any time."""

    def __init__(
        self, data: SessionData, clock: SimClock | None = None, faults: Faults | None = None
    ) -> None:
        self.data = data
        self.clock = clock
        self.faults = faults or Faults()
        self.stats = Stats()
        self._accepted: deque[float] = deque()  # monotonic times of requests the rate limiter let through
        self._lock = threading.Lock()

    # ---- ASGI entry --------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        query = scope.get("query_string", b"").decode("latin-1")
        if path.startswith("/v1/"):
            if method != "GET":
                await _json(send, 405, {"detail": "Method Not Allowed"})
                return
            await self._v1(path[4:].strip("/"), query, send)
        elif path == "/_stats" and method == "GET":
            await _json(send, 200, self.stats.snapshot(with_log="log=0" not in query))
        elif path == "/_control" and method == "GET":
            await _json(send, 200, self.control_state())
        elif path == "/_control" and method == "POST":
            body = await _read_body(receive)
            try:
                state = self.control(json.loads(body or b"{}"))
            except (ValueError, TypeError, KeyError) as exc:
                await _json(send, 400, {"detail": str(exc)})
                return
            await _json(send, 200, state)
        else:
            await _json(send, 404, {"detail": "Not Found"})

    # ---- control -----------------------------------------------------------------------------
    def control(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply a control document (the body of ``POST /_control``)::

        {"faults": {"burst_429": 3, ...}, "reset_faults": true,
         "clock": {"set": "2023-11-19T06:10:00Z", "advance_s": 30, "speed": 20, "paused": false},
         "reset_stats": true}
        """
        if body.get("reset_faults"):
            self.faults = Faults()
        if "faults" in body:
            self.faults.update(**body["faults"])
        c = body.get("clock")
        if c:
            if self.clock is None:
                self.clock = SimClock(c.get("set") or self.data.lights_out or datetime.now(UTC), speed=0.0)
            if "set" in c:
                self.clock.set(c["set"])
            if "speed" in c:
                self.clock.set_speed(c["speed"])
            if "paused" in c:
                (self.clock.pause if c["paused"] else self.clock.resume)()
            if "advance_s" in c:
                self.clock.advance(float(c["advance_s"]))
        if body.get("reset_stats"):
            self.stats.reset()
            with self._lock:
                self._accepted.clear()
        return self.control_state()

    def control_state(self) -> dict[str, Any]:
        return {
            "faults": asdict(self.faults),
            "clock": self.clock.state() if self.clock else None,
            "session_key": self.data.latest_session_key,
            "lights_out": self.data.manifest.get("lights_out"),
        }

    # ---- /v1 ---------------------------------------------------------------------------------
    def _rate_limited(self, now: float) -> int | None:
        """Seconds to wait if over the limit, else None (and the request is counted)."""
        f = self.faults
        if f.rate_limit is None:
            return None
        with self._lock:
            while self._accepted and now - self._accepted[0] >= f.rate_window_s:
                self._accepted.popleft()
            if len(self._accepted) >= f.rate_limit:
                return max(1, math.ceil(self._accepted[0] + f.rate_window_s - now))
            self._accepted.append(now)
            return None

    async def _v1(self, endpoint: str, query: str, send: Send) -> None:
        t = time.monotonic()
        f = self.faults
        if endpoint not in ENDPOINTS:
            self.stats.add(endpoint, query, 404, 0, t)
            await _json(send, 404, {"detail": "Not Found"})
            return
        wait = self._rate_limited(t)
        if wait is not None:
            self.stats.add(endpoint, query, 429, 0, t)
            await _json(send, 429, {"detail": "Rate limit exceeded"}, [(b"retry-after", str(wait).encode())])
            return
        with self._lock:
            burst = f.burst_429 > 0
            if burst:
                f.burst_429 -= 1
            drop = f.drop_next > 0
            if drop:
                f.drop_next -= 1
            error = f.error_next > 0
            if error:
                f.error_next -= 1
        if burst:
            self.stats.add(endpoint, query, 429, 0, t)
            hdr = [(b"retry-after", str(int(f.retry_after_s)).encode())]
            await _json(send, 429, {"detail": "Too Many Requests (injected)"}, hdr)
            return
        if drop or (f.drop_rate and f.draw() < f.drop_rate):
            self.stats.add(endpoint, query, "dropped", 0, t)
            await _drop(send)
            return
        if error or (f.error_rate and f.draw() < f.error_rate):
            self.stats.add(endpoint, query, 500, 0, t)
            await _json(send, 500, {"detail": "Internal Server Error (injected)"})
            return
        if f.delay_s > 0:
            await asyncio.sleep(f.delay_s)
        try:
            records = self.query(endpoint, query)
        except ValueError as exc:
            self.stats.add(endpoint, query, 422, 0, t)
            await _json(send, 422, {"detail": f"invalid filter: {exc}"})
            return
        self.stats.add(endpoint, query, 200, len(records), t)
        await _json(send, 200, records)

    def query(self, endpoint: str, query_string: str = "") -> list[dict[str, Any]]:
        """The records ``GET /v1/<endpoint>?<query_string>`` answers now (no faults except
        ``duplicate_records``)."""
        filters = []
        for flt in parse_query(query_string):
            if flt.key in ("session_key", "meeting_key") and flt.value == "latest":
                latest = (
                    self.data.latest_session_key if flt.key == "session_key" else self.data.latest_meeting_key
                )
                flt = Filter(flt.key, flt.op, str(latest))
            filters.append(flt)
        comp = _Compiled(filters)
        now = self.clock.now_ts() if self.clock else math.inf
        n_dup = self.faults.duplicate_records
        result = [r for r in self._candidates(endpoint, comp, now) if comp.match(r)]
        if n_dup > 0:
            visible = [r for r in self.data.records[endpoint] if r.arrival <= now]
            lower = frozenset(
                i for i, c in enumerate(comp.cmp) if c.op in (">", ">=") and c.key.startswith("date")
            )
            if lower:
                chosen = {id(r) for r in result}
                before = [r for r in visible if id(r) not in chosen and comp.match(r, skip=lower)]
                result = before[-n_dup:] + result
            else:
                result = result + result[-n_dup:]
        out = [r.data for r in result]
        if endpoint == "stints" and self.clock is not None:
            out = [self._live_stint(s, now) for s in out]
        return out

    def _candidates(self, endpoint: str, comp: _Compiled, now: float) -> list[_Rec]:
        """A superset of the matching records, cut by index (driver, clock, date cursor)."""
        lower = None
        for c in comp.cmp:
            if c.key == "date" and c.op in (">", ">="):
                lower = (c.op, comp.date(c.value))
                break
        drivers = comp.eq.get("driver_number")
        if drivers and all(v.strip().lstrip("-").isdigit() for v in drivers):
            per = self.data.driver_slices[endpoint]
            slices = [per[n] for n in sorted({int(v) for v in drivers}) if n in per]
            out = [r for sl in slices for r in sl.candidates(now, lower)]
            return sorted(out, key=lambda r: r.idx) if len(slices) > 1 else out
        return self.data.slices[endpoint].candidates(now, lower)

    def _live_stint(self, stint: dict[str, Any], now: float) -> dict[str, Any]:
        """While a stint runs, ``lap_end`` is the driver's current lap (as OpenF1 live)."""
        cur = self.data.current_lap(stint["driver_number"], now)
        end = stint.get("lap_end")
        if cur is not None and end is not None and cur < end:
            return {**stint, "lap_end": cur}
        return stint


def create_app(
    data_dir: str | Path = DEFAULT_DATA_DIR, clock: SimClock | None = None, faults: Faults | None = None
) -> OpenF1App:
    """The ASGI app over the fixture in ``data_dir``. ``clock=None``: every record has arrived."""
    return OpenF1App(SessionData(data_dir), clock, faults)


# --------------------------------------------------------------------------------------------
# runner
# --------------------------------------------------------------------------------------------
def serve(
    app: Any, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 10.0
) -> tuple[str, Callable[[], None]]:
    """Run ``app`` under uvicorn in a daemon thread. Returns ``(base_url, stop)`` once the
    server accepts connections; ``base_url`` has no trailing slash (``http://127.0.0.1:PORT``)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ws="none", access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"openf1-{bound_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("OpenF1 test server did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=timeout_s)
        sock.close()

    return f"http://{host}:{bound_port}", stop


def lights_out_clock(data: SessionData | OpenF1App, offset_s: float = 0.0, speed: float = 0.0) -> SimClock:
    """A clock at the recorded lights-out (+ ``offset_s``); ``speed=0`` = manual."""
    d = data.data if isinstance(data, OpenF1App) else data
    lo = d.lights_out
    if lo is None:
        raise ValueError("fixture has no lights_out in MANIFEST.json")
    return SimClock(lo + timedelta(seconds=offset_s), speed=speed)
