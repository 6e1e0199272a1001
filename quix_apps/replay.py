"""Replay app: publish a FastF1 session's events to the raw topics through Quix Streams.

Events go out in event-time order, paced against the event clock (``speed`` 1 = real time,
0 = as fast as possible). Records that fail their schema go to the dead-letter topic with the
reason and the original payload. Progress is checkpointed on a compacted topic, so ``resume``
continues after the last event known to be on the broker (at-least-once; a clean stop or
Ctrl-C writes an exact checkpoint, a hard kill may repeat up to ``checkpoint_every`` events).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from quixstreams import Application
from quixstreams.kafka import Producer
from tqdm import tqdm

from stratx.functions import catalog, dead_letters, ingest, schemas
from stratx.functions.kafka_auth import PLAINTEXT, KafkaAuth
from stratx.functions.racedata import EVENT_TABLES, RaceData
from stratx.functions.settings import ReplaySettings
from stratx.quix_apps.kit import admin, kafka_io, metrics

APP = "replay"  # metrics app label and exporter port offset


@dataclass(frozen=True)
class ReplayOptions:
    speed: float = 0.0  # 1.0 real time, 10.0 ten times faster, 0 as fast as possible
    resume: bool = False
    replay_id: str | None = None  # default: the session key
    max_events: int | None = None  # stop after this many events (a partial replay; resume continues)
    progress: bool = True
    pace_from_lap: int | None = None  # events before this lap's start go out at full speed


def lap_start_time(race: RaceData, lap: int) -> float | None:
    """Session time at which the first car starts ``lap`` (lap 1: lights out), if known."""
    laps = race.table("laps")
    starts = laps.loc[laps.LapNumber == lap, "LapStartTime"].dropna()
    return float(starts.min()) if len(starts) else None


class DeliveryError(Exception):
    """The broker did not acknowledge some messages; no checkpoint covers them."""


class DeliveryTracker:
    """Delivery-report callback: counts failures, keeps the first error."""

    def __init__(self) -> None:
        self.failed = 0
        self.first_error: str | None = None

    def __call__(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            if self.first_error is None:
                self.first_error = f"{msg.topic() if msg is not None else '?'}: {err}"

    def raise_if_failed(self) -> None:
        if self.failed:
            raise DeliveryError(f"{self.failed} messages were not delivered (first: {self.first_error})")


@dataclass
class ReplayResult:
    replay_id: str
    published: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    skipped: int = 0
    last_seq: int = -1
    last_session_time: float = 0.0
    finished: bool = False
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.published.values()) + self.dead_letters


def last_checkpoint(
    broker_address: str, replay_id: str, auth: KafkaAuth = PLAINTEXT
) -> schemas.ReplayCheckpoint | None:
    """The newest checkpoint of ``replay_id`` on the compacted checkpoint topic, if any."""
    found = None
    for msg in kafka_io.read_all(broker_address, catalog.REPLAY_CHECKPOINTS.name, auth=auth):
        key = msg.key()
        if key is not None and key.decode() == replay_id:
            found = schemas.ReplayCheckpoint.model_validate_json(msg.value() or b"")
    return found


class StopFlag:
    """Turns Ctrl-C / SIGTERM into a flag checked between events, so no event is half-published."""

    def __init__(self) -> None:
        self.requested = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: object) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


class Pacer:
    """Sleeps so that event time advances ``speed`` times faster than wall time."""

    def __init__(
        self,
        speed: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        pace_from: float | None = None,
    ) -> None:
        self.speed, self.clock, self.sleep, self.pace_from = speed, clock, sleep, pace_from
        self.origin: tuple[float, float] | None = None  # (event time, wall time)

    def wait(self, event_time: float | None, stop: StopFlag | None = None) -> None:
        if self.speed <= 0 or event_time is None:
            return
        if self.pace_from is not None and event_time < self.pace_from:
            return  # fast-forward (e.g. the hour of pre-race telemetry before lights out)
        now = self.clock()
        if self.origin is None:
            self.origin = (event_time, now)
            return
        due = self.origin[1] + (event_time - self.origin[0]) / self.speed
        # sleep in slices so that a stop request is honoured within 0.2 s even at 1x speed
        while due - now > 0.002 and not (stop is not None and stop.requested):
            self.sleep(min(due - now, 0.2))
            now = self.clock()


# How long the producer holds a message to batch it (ms): at full speed batches make the throughput;
# at a paced speed a few events come each millisecond and the wait is pure latency on every record
# (a raw lap waited up to 20 ms before it left: bench/pipeline_latency.py's e2e at 1x).
LINGER_MS = {"max": 20, "paced": 1}


def _producer(settings: ReplaySettings, speed: float = 0.0) -> Producer:
    linger = LINGER_MS["paced" if speed > 0 else "max"]
    app = Application(
        broker_address=settings.kafka_auth().connection(settings.broker_address),
        consumer_group="stratx-replay",
        auto_create_topics=False,
        loglevel=logging.WARNING,
        producer_extra_config={"linger.ms": linger, "compression.type": "lz4", "batch.num.messages": 10000},
    )
    return app.get_producer()


def _checkpoint(
    producer: Producer, tracker: DeliveryTracker, result: ReplayResult, session_key: int, finished: bool
) -> None:
    producer.flush()  # every message so far is acknowledged or failed
    tracker.raise_if_failed()  # never checkpoint past a lost message
    cp = schemas.ReplayCheckpoint(
        ReplayId=result.replay_id,
        SessionKey=session_key,
        Seq=result.last_seq,
        SessionTime=result.last_session_time,
        Finished=finished,
        Date=datetime.now(UTC),
    )
    producer.produce(
        catalog.REPLAY_CHECKPOINTS.name, value=cp.model_dump_json(), key=result.replay_id, on_delivery=tracker
    )
    producer.flush()
    tracker.raise_if_failed()


def run(race: RaceData, settings: ReplaySettings, options: ReplayOptions) -> ReplayResult:
    """Publish ``race`` to the raw topics; returns counts. Ctrl-C stops cleanly with a checkpoint."""
    replay_id = options.replay_id or str(race.meta.session_key)
    result = ReplayResult(replay_id)
    client = admin.connect(settings.broker_address, settings.connect_timeout_s, settings.kafka_auth())
    admin.create_topics(client)
    client.close()
    start_after = -1
    if options.resume:
        cp = last_checkpoint(settings.broker_address, replay_id, settings.kafka_auth())
        if cp is not None:
            start_after, result.finished = cp.Seq, cp.Finished
            if cp.Finished:
                return result
    total = 1 + sum(len(race.table(name)) for name in EVENT_TABLES)
    pace_from = lap_start_time(race, options.pace_from_lap) if options.pace_from_lap else None
    pacer = Pacer(options.speed, pace_from=pace_from)
    started = time.monotonic()
    bar = _progress(options.progress, total, race)
    tracker = DeliveryTracker()
    encode = ingest.encode if settings.replay_validate else _unchecked
    meter = metrics.LoopMeter(APP) if settings.metrics_enabled else None
    with _producer(settings, options.speed) as producer, StopFlag() as stop:
        try:
            for record in ingest.iter_records(race):
                if stop.requested:
                    result.interrupted = True
                    break
                seq = record.payload["Seq"]
                if seq <= start_after:
                    result.skipped += 1
                    continue
                if options.max_events is not None and result.total >= options.max_events:
                    break
                pacer.wait(record.payload["SessionTime"], stop)
                if meter is None:
                    _publish(producer, tracker, record, result, encode)
                else:
                    _metered_publish(meter, producer, tracker, record, result, encode)
                result.last_seq = seq
                result.last_session_time = record.payload["SessionTime"] or result.last_session_time
                if result.total % settings.checkpoint_every == 0:
                    _checkpoint(producer, tracker, result, race.meta.session_key, finished=False)
                if bar is not None:
                    bar.update(seq - bar.n + 1)
                    if seq % 2000 == 0:
                        bar.set_postfix_str(_clock(result.last_session_time), refresh=False)
            else:
                result.finished = True
        finally:
            if bar is not None:
                bar.close()
            _checkpoint(producer, tracker, result, race.meta.session_key, finished=result.finished)
            if meter is not None:
                meter.flush(_produced_totals(result))
    result.elapsed_s = time.monotonic() - started
    return result


def _unchecked(record: ingest.RawRecord) -> bytes:
    """The source row as JSON, no schema check (``STRATX_REPLAY_VALIDATE=false``; the bytes parse
    to the same values as :func:`ingest.encode`'s, dates written with ``+00:00`` instead of ``Z``)."""
    return orjson.dumps(record.payload)


def _produced_totals(result: ReplayResult) -> dict[str, int]:
    return {**result.published, catalog.DEAD_LETTER.name: result.dead_letters}


def _metered_publish(
    meter: metrics.LoopMeter,
    producer: Producer,
    tracker: DeliveryTracker,
    record: ingest.RawRecord,
    result: ReplayResult,
    encode: Callable[[ingest.RawRecord], bytes | ingest.Rejected],
) -> None:
    """:func:`_publish`, timed for one event in ``meter.sample_every``; counts pushed to the
    counters every ``meter.flush_every`` events (and at the end of the run)."""
    n = meter.tick()
    if n % meter.sample_every == 0:
        started = time.perf_counter()
        reason = _publish(producer, tracker, record, result, encode)
        meter.observe(time.perf_counter() - started)
    else:
        reason = _publish(producer, tracker, record, result, encode)
    if reason is not None:
        metrics.dead_letter(APP, reason)
    if n % meter.flush_every == 0:
        meter.flush(_produced_totals(result))


def _publish(
    producer: Producer,
    tracker: DeliveryTracker,
    record: ingest.RawRecord,
    result: ReplayResult,
    encode: Callable[[ingest.RawRecord], bytes | ingest.Rejected] = ingest.encode,
) -> str | None:
    """Produce one record (or its dead letter); returns the dead letter's reason, if any."""
    encoded = encode(record)
    if isinstance(encoded, ingest.Rejected):
        letter = dead_letters.build(
            record.topic, record.payload, encoded.reason, stage="replay", key=record.key
        )
        producer.produce(
            catalog.DEAD_LETTER.name, value=letter.model_dump_json(), key=record.key, on_delivery=tracker
        )
        result.dead_letters += 1
        return encoded.reason
    date = record.payload.get("Date")
    producer.produce(
        record.topic.name,
        value=encoded,
        key=record.key,
        timestamp=int(date.timestamp() * 1000) if date is not None else None,
        on_delivery=tracker,
    )
    result.published[record.topic.name] += 1
    return None


def _clock(session_time: float) -> str:
    t = int(session_time)
    return f"session time {t // 3600:d}:{t % 3600 // 60:02d}:{t % 60:02d}"


def _progress(enabled: bool, total: int, race: RaceData) -> tqdm[Any] | None:
    if not enabled:
        return None

    m = race.meta
    return tqdm(
        total=total,
        desc=f"replay {m.year} {m.event_name} {m.session_name}",
        unit="ev",
        unit_scale=True,
        mininterval=0.5,
        smoothing=0.1,
    )
