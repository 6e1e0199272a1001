"""Live app: follow a session through the OpenF1 API and feed the same raw topics as the replay.

Each poll cycle fetches every endpoint once for the whole session, incrementally (date cursors per
endpoint and driver, ``functions/openf1.py``; 6-9 requests a cycle, was 66 when the high-rate
endpoints were asked per car), drops repeats by stable event id, normalises the new records into the
topic schemas and publishes them through Quix Streams. Late (older than the cursor) and malformed
records go to the dead letters with the reason. After each cycle the producer is flushed and the
poll state (cursors, recent ids, Seq counter) is checkpointed on the compacted checkpoint topic,
so ``resume`` continues with no gap and no duplicate.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from quixstreams import Application
from quixstreams.kafka import Producer

from stratx.functions import catalog, dead_letters, ingest, openf1
from stratx.functions.kafka_auth import PLAINTEXT, KafkaAuth
from stratx.functions.settings import LiveSettings
from stratx.quix_apps.kit import admin, kafka_io, metrics
from stratx.quix_apps.kit.openf1_client import OpenF1Client, OpenF1ResponseError
from stratx.quix_apps.kit.recording import Recorder
from stratx.quix_apps.replay import DeliveryTracker, StopFlag

log = logging.getLogger(__name__)
STAGE = "live"
APP = "live"  # metrics app label and exporter port offset
# one request per endpoint a cycle, for the whole session (functions/openf1_records.py); stints and
# pit are fetched whole, and only in a cycle that brought new laps (they enrich those laps)
POLLED = ("laps", "car_data", "location", "intervals", "position", "race_control", "weather")
EVERY_S = {"weather": 30.0}  # endpoints that change slowly: polled at most this often (s)


@dataclass(frozen=True)
class LiveOptions:
    session_key: str = "latest"
    max_cycles: int | None = None  # stop after this many poll cycles
    idle_cycles: int | None = None  # stop after this many cycles in a row without new records
    resume: bool = True


@dataclass
class LiveResult:
    session_key: int = 0
    cycles: int = 0
    published: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    requests: int = 0
    seq: int = 0
    interrupted: bool = False
    push: Counter[str] = field(default_factory=Counter)  # `--push`: messages, mode changes (live_push.py)


# ---------------------------------------------------------------- poll state <-> checkpoint
def state_to_json(state: openf1.PollState, seq: int) -> str:
    return json.dumps(
        {
            "seq": seq,
            "cursors": [[ep, drv, d.isoformat()] for (ep, drv), d in state.cursors.items()],
            "seen": {ep: {i: d.isoformat() for i, d in ids.items()} for ep, ids in state.seen.items()},
        }
    )


def state_from_json(text: str) -> tuple[openf1.PollState, int]:
    raw = json.loads(text)
    state = openf1.PollState()
    state.cursors = {(ep, drv): datetime.fromisoformat(d) for ep, drv, d in raw["cursors"]}
    state.seen = {
        ep: {i: datetime.fromisoformat(d) for i, d in ids.items()} for ep, ids in raw["seen"].items()
    }
    return state, int(raw["seq"])


def _checkpoint_id(session_key: int) -> str:
    return f"live-{session_key}"


def load_checkpoint(
    broker_address: str, session_key: int, auth: KafkaAuth = PLAINTEXT
) -> tuple[openf1.PollState, int] | None:
    found = None
    for msg in kafka_io.read_all(broker_address, catalog.REPLAY_CHECKPOINTS.name, auth=auth):
        if msg.key() is not None and msg.key().decode() == _checkpoint_id(session_key):
            found = msg.value()
    if not found:
        return None
    cp = json.loads(found)
    return state_from_json(cp["PollState"]) if "PollState" in cp else None


# ---------------------------------------------------------------- the poller
class LivePoller:
    def __init__(
        self,
        client: OpenF1Client,
        producer: Producer,
        settings: LiveSettings,
        recorder: Recorder | None = None,
    ) -> None:
        self.client, self.producer, self.settings, self.recorder = client, producer, settings, recorder
        self.tracker = DeliveryTracker()
        self.result = LiveResult()
        self.state = openf1.PollState()
        self.ctx: openf1.SessionContext | None = None
        self._asked: dict[str, float] = {}  # endpoint -> when it was last asked (EVERY_S)
        # the push feed (live_push.py) accepts and publishes from another thread than the poll's fetches
        self.lock = threading.RLock()
        self.stints: list[Any] = []  # the last /stints and /pit answers (the push feed enriches laps too)
        self.pits: list[Any] = []

    def start(self, session_key: str, resume: bool) -> None:
        sessions = self.client.fetch("sessions", {"session_key": session_key})
        if not sessions:
            raise ValueError(f"OpenF1 has no session {session_key!r}")
        session = sessions[-1]
        drivers = self.client.fetch("drivers", {"session_key": session["session_key"]})
        if self.recorder is not None:
            self.recorder.add("sessions", [session])
            self.recorder.add("drivers", drivers)
            self.recorder.add(
                "meetings", self.client.fetch("meetings", {"meeting_key": str(session.get("meeting_key"))})
            )
        ctx = openf1.session_context(session, drivers)
        if isinstance(ctx, ingest.Rejected):
            raise ValueError(f"OpenF1 session {session_key!r} is unusable: {ctx.reason}")
        self.ctx = ctx
        self.result.session_key = ctx.session_key
        restored = (
            load_checkpoint(self.settings.broker_address, ctx.session_key, self.settings.kafka_auth())
            if resume
            else None
        )
        if restored is not None:
            self.state, self.result.seq = restored
            log.info("resuming session %s after Seq %s", ctx.session_key, self.result.seq)
            return
        info = openf1.session_info(session, ctx, 0)
        self._emit(info, None)
        self.result.seq = 1

    def cycle(self) -> int:
        """One poll of every endpoint that is due; returns how many new records were published.
        Laps first: only when new laps came in are the stints and pit stops fetched to enrich them
        (2 requests saved in most cycles); ``EVERY_S`` endpoints are asked at most that often."""
        assert self.ctx is not None
        key = self.ctx.session_key
        before = sum(self.result.published.values())
        rows = self._fetch("laps", self._params("laps", key))
        with self.lock:
            laps = self.state.accept("laps", rows)
            self.state.unpin("laps")
        stints: list[Any] = []
        pits: list[Any] = []
        if laps.new:
            stints = self.stints = self._fetch("stints", {"session_key": key})
            pits = self.pits = self._fetch("pit", {"session_key": key})
        with self.lock:
            self._publish("laps", laps, stints, pits)
        now = time.monotonic()
        for endpoint in POLLED[1:]:
            if now - self._asked.get(endpoint, -math.inf) < EVERY_S.get(endpoint, 0.0):
                continue
            self._asked[endpoint] = now
            rows = self._fetch(endpoint, self._params(endpoint, key))
            self.accept_and_publish(endpoint, rows, stints, pits, polled=True)
        self.checkpoint()
        self.result.cycles += 1
        return sum(self.result.published.values()) - before

    def _params(self, endpoint: str, session_key: int) -> dict[str, str]:
        """The poll's query; its cursor is pinned until the answer is accepted (PollState.pin)."""
        with self.lock:
            self.state.pin(endpoint)
            return self.state.params(endpoint, session_key)

    def accept_and_publish(
        self, endpoint: str, rows: list[Any], stints: list[Any], pits: list[Any], polled: bool = False
    ) -> None:
        """The one path of a polled or pushed batch: accept (dedup, cursors) -> normalise -> publish."""
        with self.lock:
            accepted = self.state.accept(endpoint, rows)
            if polled:
                self.state.unpin(endpoint)
            self._publish(endpoint, accepted, stints, pits)

    def _fetch(self, endpoint: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.result.requests += 1
        try:
            rows = self.client.fetch(endpoint, params)
            if self.recorder is not None:
                self.recorder.add(endpoint, rows)
            return rows
        except OpenF1ResponseError as exc:  # a broken response: dead-letter it, keep polling
            with self.lock:
                self.dead(
                    endpoint, {"params": params, "body": str(exc.body)[:2000]}, f"openf1 {endpoint}: {exc}"
                )
            return []

    def _publish(self, endpoint: str, accepted: openf1.Accepted, stints: list[Any], pits: list[Any]) -> None:
        assert self.ctx is not None
        for record, reason in (*accepted.late, *accepted.malformed):
            self.dead(endpoint, record, reason)
        for record in accepted.new:
            seq = self.result.seq
            if endpoint == "laps":
                out = openf1.normalise_lap(record, self.ctx, seq, stints, pits)
            else:
                out = openf1.NORMALISERS[endpoint](record, self.ctx, seq)
            self._emit(out, record)

    def _emit(self, out: ingest.RawRecord | ingest.Rejected, source: Any) -> None:
        if isinstance(out, ingest.Rejected):
            self.dead("openf1", source, out.reason)
            return
        self.result.seq = max(self.result.seq, out.payload["Seq"]) + 1
        encoded = ingest.encode(out)
        if isinstance(encoded, ingest.Rejected):
            self.dead(out.topic.name, out.payload, encoded.reason)
            return
        date = out.payload.get("Date")
        self.producer.produce(
            out.topic.name,
            value=encoded,
            key=out.key,
            on_delivery=self.tracker,
            timestamp=int(date.timestamp() * 1000) if date is not None else None,
        )
        self.result.published[out.topic.name] += 1
        if self.settings.metrics_enabled:
            metrics.RECORDS_PRODUCED.labels(APP, out.topic.name).inc()

    def dead(self, source: str, record: Any, reason: str) -> None:
        if self.settings.metrics_enabled:
            metrics.dead_letter(APP, reason)
            metrics.RECORDS_PRODUCED.labels(APP, catalog.DEAD_LETTER.name).inc()
        letter = dead_letters.build(
            f"openf1:{source}", record, reason, stage=STAGE, key=str(self.result.session_key)
        )
        self.producer.produce(
            catalog.DEAD_LETTER.name, value=letter.model_dump_json(), key=letter.Key, on_delivery=self.tracker
        )
        self.result.dead_letters += 1

    def checkpoint(self) -> None:
        with self.lock:
            self._checkpoint()

    def _checkpoint(self) -> None:
        self.producer.flush()
        self.tracker.raise_if_failed()  # never checkpoint past a lost message
        value = json.dumps(
            {
                "ReplayId": _checkpoint_id(self.result.session_key),
                "SessionKey": self.result.session_key,
                "Date": datetime.now(UTC).isoformat(),
                "PollState": state_to_json(self.state, self.result.seq),
            }
        )
        self.producer.produce(
            catalog.REPLAY_CHECKPOINTS.name,
            value=value,
            key=_checkpoint_id(self.result.session_key),
            on_delivery=self.tracker,
        )
        self.producer.flush()
        self.tracker.raise_if_failed()


def cycle_period(interval_s: float, requests: int, limiter: Any) -> float:
    """Seconds from one cycle's start to the next: the poll interval, or longer when the rate limit
    allows ``requests`` only that often. Cycles then come evenly spaced: waiting on the limiter
    instead would send bursts of cycles and then stall for most of its window (30 requests / 10 s:
    lag p99 8.4 s that way, measured with bench/live_lag.py)."""
    return max(interval_s, requests * limiter.window / limiter.limit)


def application(settings: LiveSettings) -> Application:
    """The raw topics created up front, and the Quix application whose producer publishes them."""
    conn = admin.connect(settings.broker_address, settings.connect_timeout_s, settings.kafka_auth())
    admin.create_topics(conn)
    conn.close()
    return Application(
        broker_address=settings.kafka_auth().connection(settings.broker_address),
        consumer_group="stratx-live",
        auto_create_topics=False,
        loglevel=logging.WARNING,
        producer_extra_config={"linger.ms": 20, "compression.type": "lz4"},
    )


def run(
    client: OpenF1Client, settings: LiveSettings, options: LiveOptions, recorder: Recorder | None = None
) -> LiveResult:
    """Follow the session until Ctrl-C, ``max_cycles`` or ``idle_cycles`` polls without news."""
    with application(settings).get_producer() as producer, StopFlag() as stop:
        poller = LivePoller(client, producer, settings, recorder)
        poller.start(options.session_key, options.resume)
        idle = 0
        while not stop.requested:
            started, requests = time.monotonic(), poller.result.requests
            new = poller.cycle()
            idle = 0 if new else idle + 1
            if options.max_cycles is not None and poller.result.cycles >= options.max_cycles:
                break
            if options.idle_cycles is not None and idle >= options.idle_cycles:
                break
            period = cycle_period(settings.poll_interval_s, poller.result.requests - requests, client.limiter)
            time.sleep(max(0.0, period - (time.monotonic() - started)))
        poller.result.interrupted = stop.requested
        if recorder is not None:
            recorder.save(poller.result.session_key)
        return poller.result
