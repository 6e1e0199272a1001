"""A local OpenF1-compatible HTTP server that replays recorded real OpenF1 data.

``create_app(data_dir, clock)`` builds a plain ASGI app serving ``GET /v1/<endpoint>`` with
OpenF1's query syntax, gated by a simulated clock, with runtime-configurable faults.
``serve(app)`` runs it under uvicorn in a background thread on a free loopback port.
See ``tests/openf1_server/README.md``.
"""

from __future__ import annotations

import asyncio
import bisect
import gzip
import itertools
import json
import math
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from stratx.functions.settings import REPO_ROOT

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# the recorded real session the tests use (a recording made with `stratx record` has the same layout)
DEFAULT_DATA_DIR = REPO_ROOT / "tests" / "fixtures" / "openf1_session"

#: OpenF1's published limit for unauthenticated use: 30 requests per 10 seconds.
OPENF1_RATE_LIMIT = 30
OPENF1_RATE_WINDOW_S = 10.0

#: Every endpoint served. Endpoints without a fixture file answer ``[]``.
ENDPOINTS = (
    "sessions",
    "meetings",
    "drivers",
    "laps",
    "stints",
    "weather",
    "car_data",
    "location",
    "intervals",
    "position",
    "race_control",
    "pit",
    "overtakes",
    "team_radio",
    "session_result",
    "starting_grid",
)
#: Query keys that are accepted and ignored (OpenF1 output options).
IGNORED_KEYS = frozenset({"csv"})

_NEG_INF = -math.inf
_FILTER_RE = re.compile(r"^([A-Za-z0-9_]+)(>=|<=|>|<|=)(.*)$", re.S)


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
# data
# --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Rec:
    arrival: float
    data: dict[str, Any]
    dates: dict[str, float]
    idx: int = 0


@dataclass
class _Slice:
    """Records of one endpoint (or one driver of it) in file order, with their arrivals.
    ``arrival_sorted``: arrivals never decrease, so the clock cut is a bisect;
    ``by_date``: arrival is the ``date`` field, so ``date>``/``date>=`` cuts are bisects too."""

    recs: list[_Rec]
    arrivals: list[float]
    arrival_sorted: bool
    by_date: bool

    @classmethod
    def of(cls, recs: list[_Rec]) -> _Slice:
        arr = [r.arrival for r in recs]
        by_date = bool(recs) and all(r.dates.get("date") == r.arrival for r in recs)
        return cls(recs, arr, all(a <= b for a, b in itertools.pairwise(arr)), by_date)

    def candidates(self, now: float, lower: tuple[str, float] | None) -> list[_Rec]:
        if not self.arrival_sorted:
            return [r for r in self.recs if r.arrival <= now]
        lo, hi = 0, bisect.bisect_right(self.arrivals, now)
        if lower is not None and self.by_date:
            op, bound = lower
            lo = (bisect.bisect_right if op == ">" else bisect.bisect_left)(self.arrivals, bound)
        return self.recs[lo:hi]


class SessionData:
    """The recorded records of every endpoint, each with its arrival time."""

    def __init__(self, data_dir: str | Path = DEFAULT_DATA_DIR) -> None:
        self.data_dir = Path(data_dir)
        raw: dict[str, list[dict[str, Any]]] = {}
        for ep in ENDPOINTS:
            path = self.data_dir / f"{ep}.jsonl.gz"
            if path.exists():
                with gzip.open(path, "rt", encoding="utf-8") as fh:
                    raw[ep] = [json.loads(line) for line in fh if line.strip()]
            else:
                raw[ep] = []
        manifest = self.data_dir / "MANIFEST.json"
        self.manifest: dict[str, Any] = json.loads(manifest.read_text()) if manifest.exists() else {}

        # per driver: sorted lap start times and lap numbers (for stint arrival and lap_end)
        self._lap_starts: dict[int, tuple[list[float], list[int]]] = {}
        for lap in sorted(raw["laps"], key=lambda r: (r["driver_number"], r["lap_number"])):
            if lap.get("date_start"):
                ts, nums = self._lap_starts.setdefault(lap["driver_number"], ([], []))
                ts.append(to_ts(lap["date_start"]))
                nums.append(lap["lap_number"])

        self.records: dict[str, list[_Rec]] = {}
        for ep, recs in raw.items():
            out = []
            for r in recs:
                dates = {k: to_ts(v) for k, v in r.items() if k.startswith("date") and isinstance(v, str)}
                out.append(_Rec(self._arrival(ep, r, dates), r, dates))
            for i, rec in enumerate(out):
                rec.idx = i
            self.records[ep] = out
        # a driver's laps arrive in lap order (a lap without lap_duration arrives at its
        # date_start, which must not overtake the previous lap's arrival)
        last: dict[int, float] = {}
        for rec in sorted(
            self.records["laps"], key=lambda r: (r.data["driver_number"], r.data["lap_number"])
        ):
            rec.arrival = max(rec.arrival, last.get(rec.data["driver_number"], _NEG_INF))
            last[rec.data["driver_number"]] = rec.arrival
        self._index()
        sessions = sorted(self.records["sessions"], key=lambda r: r.dates.get("date_start", _NEG_INF))
        self.latest_session_key = sessions[-1].data["session_key"] if sessions else None
        self.latest_meeting_key = sessions[-1].data["meeting_key"] if sessions else None

    def _index(self) -> None:
        self.slices: dict[str, _Slice] = {}
        self.driver_slices: dict[str, dict[int, _Slice]] = {}
        for ep, recs in self.records.items():
            self.slices[ep] = _Slice.of(recs)
            per: dict[int, list[_Rec]] = {}
            for r in recs:
                d = r.data.get("driver_number")
                if isinstance(d, int):
                    per.setdefault(d, []).append(r)
            self.driver_slices[ep] = {d: _Slice.of(v) for d, v in per.items()}

    def _arrival(self, ep: str, r: dict[str, Any], dates: dict[str, float]) -> float:
        if "date" in dates:
            return dates["date"]
        if ep == "laps":
            start = dates.get("date_start")
            if start is None:
                return _NEG_INF
            return start + (r.get("lap_duration") or 0.0)
        if ep == "stints":
            return self.lap_start_ts(r["driver_number"], r.get("lap_start")) or _NEG_INF
        return _NEG_INF  # sessions, meetings, drivers, ...: known before the session

    def lap_start_ts(self, driver: int, lap_number: int | None) -> float | None:
        ts, nums = self._lap_starts.get(driver, ([], []))
        if lap_number in nums:
            return ts[nums.index(lap_number)]
        return None

    def current_lap(self, driver: int, now: float) -> int | None:
        ts, nums = self._lap_starts.get(driver, ([], []))
        i = bisect.bisect_right(ts, now)
        return nums[i - 1] if i else None

    @property
    def lights_out(self) -> datetime | None:
        v = self.manifest.get("lights_out")
        return parse_date(v) if v else None


# --------------------------------------------------------------------------------------------
# filters
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filter:
    key: str
    op: str
    value: str


def parse_query(query_string: str) -> list[Filter]:
    """OpenF1 query string -> filters. Each ``&`` part is percent-decoded, then split at its
    first operator (``>=``, ``<=``, ``>``, ``<``, ``=``). A literal ``+`` stays ``+`` (dates
    like ``...+00:00``). Bare keys without an operator (``&date`` in OpenF1's docs) are
    ignored."""
    out = []
    for part in query_string.split("&"):
        if not part:
            continue
        m = _FILTER_RE.match(unquote(part))
        if m and m.group(1) not in IGNORED_KEYS:
            out.append(Filter(m.group(1), m.group(2), m.group(3)))
    return out


def _coerce(sample: Any, text: str) -> Any:
    if isinstance(sample, bool):
        return text.strip().lower() in ("true", "1")
    if isinstance(sample, int | float):
        return float(text)
    return text


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "=": lambda a, b: a == b,
}


class _Compiled:
    """Filters grouped: equality on the same key ORs (``driver_number=1&driver_number=11``),
    everything else ANDs."""

    def __init__(self, filters: list[Filter]) -> None:
        self.eq: dict[str, list[str]] = {}
        self.cmp: list[Filter] = []
        for f in filters:
            if f.op == "=":
                self.eq.setdefault(f.key, []).append(f.value)
            else:
                self.cmp.append(f)
        self._date_cache: dict[str, float] = {}

    def date(self, text: str) -> float:
        v = self._date_cache.get(text)
        if v is None:
            v = self._date_cache[text] = to_ts(text)
        return v

    def _test(self, rec: _Rec, key: str, op: str, text: str) -> bool:
        if key in rec.dates:
            return _OPS[op](rec.dates[key], self.date(text))
        v = rec.data.get(key, None)
        if v is None:
            return op == "=" and text.lower() in ("null", "none")
        try:
            return _OPS[op](v, _coerce(v, text))
        except (TypeError, ValueError):
            return False

    def match(self, rec: _Rec, skip: frozenset[int] = frozenset()) -> bool:
        for key, texts in self.eq.items():
            if not any(self._test(rec, key, "=", t) for t in texts):
                return False
        for i, f in enumerate(self.cmp):
            if i not in skip and not self._test(rec, f.key, f.op, f.value):
                return False
        return True


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
# ASGI helpers
# --------------------------------------------------------------------------------------------
async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def _json(
    send: Send, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": hdrs + (headers or [])})
    await send({"type": "http.response.body", "body": body})


async def _drop(send: Send) -> None:
    """Close the TCP connection without sending a byte. Under uvicorn the ASGI ``send`` is a
    bound method of its RequestResponseCycle, which holds the asyncio transport: closing it
    makes an httpx client raise ``httpx.RemoteProtocolError`` ("Server disconnected without
    sending a response"). Elsewhere (TestClient, ASGITransport) ``DroppedConnection`` is raised
    and surfaces in the client."""
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(cycle, "disconnected"):
        raise DroppedConnection("connection dropped (injected)")
    transport.close()
    for _ in range(100):  # let connection_lost run so uvicorn does not answer 500
        if cycle.disconnected:
            return
        await asyncio.sleep(0.001)


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
