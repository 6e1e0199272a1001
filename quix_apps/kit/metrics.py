"""Prometheus metrics of every StratX app: one set of names, one exporter per process.

Names follow the Prometheus conventions (``stratx_`` prefix, ``_total`` counters, ``_seconds``
histograms in base units) and every label has a small, bounded set of values: app names
(:data:`PORT_OFFSETS`), topic names of the catalog, partition numbers, model keys, and dead-letter
*categories* (:func:`reason_category`), never free text.

=====================================================  =================  ===============================
metric                                                 type               labels
=====================================================  =================  ===============================
``stratx_records_consumed_total``                      counter            app, topic
``stratx_records_produced_total``                      counter            app, topic
``stratx_processing_seconds``                          histogram          app
``stratx_consumer_lag_records``                        gauge              app, topic, partition
``stratx_dead_letters_total``                          counter            app, reason
``stratx_retries_total``                               counter            app, target
``stratx_model_calls_total``                           counter            model, status
``stratx_model_call_seconds``                          histogram          model
``stratx_openf1_requests_total``                       counter            status
``stratx_dashboard_sessions``                          gauge              (none)
=====================================================  =================  ===============================

Each app process starts its exporter with :func:`serve` on ``metrics_port_base`` + its offset in
:data:`PORT_OFFSETS` (+ :data:`INSTANCE_PORT_STEP` per copy, ``STRATX_INSTANCE``, when copies of an
app share one host); the metrics live in prometheus-client's default registry, so other modules
(e.g. drift gauges) add theirs there and are exported by the same server.

The metric objects live in :mod:`~stratx.quix_apps.kit.metrics_registry` and the consumer-lag monitor
in :mod:`~stratx.quix_apps.kit.metrics_lag`; both are re-exported here (the public import path).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import start_http_server

from stratx.functions import catalog
from stratx.functions.settings import KafkaSettings, MetricsSettings
from stratx.quix_apps.kit.metrics_lag import LagMonitor, lag_of
from stratx.quix_apps.kit.metrics_registry import (
    CONSUMER_LAG,
    DASHBOARD_SESSIONS,
    DEAD_LETTERS,
    METRIC_NAMES,
    MODEL_CALL_SECONDS,
    MODEL_CALLS,
    OPENF1_REQUESTS,
    PROCESSING_SECONDS,
    REASONS,
    RECORDS_CONSUMED,
    RECORDS_PRODUCED,
    RETRIES,
)

if TYPE_CHECKING:
    from quixstreams.dataframe import StreamingDataFrame

__all__ = [
    "CONSUMER_LAG",
    "DASHBOARD_SESSIONS",
    "DEAD_LETTERS",
    "INPUT_TOPICS",
    "INSTANCE_PORT_STEP",
    "METRIC_NAMES",
    "MODEL_CALLS",
    "MODEL_CALL_SECONDS",
    "OPENF1_REQUESTS",
    "PORT_OFFSETS",
    "PROCESSING_SECONDS",
    "REASONS",
    "RECORDS_CONSUMED",
    "RECORDS_PRODUCED",
    "RETRIES",
    "AppMeter",
    "Exporter",
    "LagMonitor",
    "LoopMeter",
    "consumed",
    "dead_letter",
    "instrument_app",
    "lag_of",
    "letters",
    "model_call",
    "openf1_response",
    "openf1_retry",
    "port",
    "produced",
    "reason_category",
    "serve",
    "start_http_server",
    "status_label",
    "timed",
]

log = logging.getLogger(__name__)

# app -> port offset from STRATX_METRICS_PORT_BASE (fixed: the Prometheus config and compose use them)
PORT_OFFSETS: dict[str, int] = {
    "replay": 0,
    "lap": 1,
    "telemetry": 2,
    "aggression": 3,
    "progress": 4,
    "gaps": 5,
    "predict": 6,
    "alerts": 7,
    "live": 8,
    "dashboard": 9,
    "drift": 10,
    "race": 11,
}
# copy n of an app on one host (STRATX_INSTANCE=n) serves on its port + n * this (above every offset)
INSTANCE_PORT_STEP = 100


# ---------------------------------------------------------------- labels
def reason_category(reason: str | None) -> str:
    """The bounded ``reason`` label of a free-text dead-letter reason (one of :data:`REASONS`).

    Reasons are written as ``<what>: <detail>`` ("CarTelemetry schema: nGear: ...", "duplicate:
    Seq 5 ...", "openf1 laps: missing date"); the category comes from the text before the detail.
    """
    text = (reason or "").strip().lower()
    head = text.split(":", 1)[0]
    if "not json" in head or "not a json" in head:
        return "not_json"
    if head.endswith("schema"):
        return "schema"
    if "out of order" in text or ("out-of-order" in head and "duplicate" not in head):
        return "out_of_order"
    if head.startswith("duplicate"):
        return "duplicate"
    if head.startswith("late"):
        return "late"
    if head.startswith("openf1"):
        return "openf1"
    return "other"


def status_label(status: int | None) -> str:
    """HTTP status as a bounded label: 200, 429, another 2xx/3xx/4xx/5xx class, or 'error'."""
    if status is None:
        return "error"
    if status in (200, 429):
        return str(status)
    return f"{status // 100}xx"


def port(app: str, settings: MetricsSettings) -> int:
    """The exporter port of ``app``, copy ``settings.instance`` (KeyError for an app without an offset)."""
    return settings.metrics_port_base + INSTANCE_PORT_STEP * settings.instance + PORT_OFFSETS[app]


# ---------------------------------------------------------------- recording
def dead_letter(app: str, reason: str | None) -> None:
    """Count one dead letter of ``app`` under its reason category."""
    DEAD_LETTERS.labels(app, reason_category(reason)).inc()


def model_call(model: str, ok: bool, seconds: float, attempts: int) -> None:
    """Count one model-service call (and its retries) and observe its latency."""
    MODEL_CALLS.labels(model, "ok" if ok else "unavailable").inc()
    MODEL_CALL_SECONDS.labels(model).observe(seconds)
    if attempts > 1:
        RETRIES.labels("predict", model).inc(attempts - 1)


def openf1_response(status: int | None) -> None:
    OPENF1_REQUESTS.labels(status_label(status)).inc()


def openf1_retry() -> None:
    RETRIES.labels("live", "openf1").inc()


F = TypeVar("F", bound=Callable[..., Any])


def timed(app: str, fn: F) -> F:
    """``fn`` observing its run time in ``stratx_processing_seconds{app}``."""
    hist = PROCESSING_SECONDS.labels(app)
    clock = time.perf_counter

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            hist.observe(clock() - started)

    return wrapper  # type: ignore[return-value]


def consumed(app: str, topic: str) -> Callable[[Any], None]:
    """An ``sdf.update`` callback counting each record read from ``topic``."""
    child = RECORDS_CONSUMED.labels(app, topic)
    return lambda _value: child.inc()


def produced(app: str, topic: str) -> Callable[[Any], None]:
    """An ``sdf.update`` callback counting each record about to go to ``topic``."""
    child = RECORDS_PRODUCED.labels(app, topic)
    return lambda _value: child.inc()


def letters(app: str) -> Callable[[dict[str, Any]], None]:
    """An ``sdf.update`` callback for DeadLetter records: counts each under its reason category."""
    return lambda letter: dead_letter(app, letter.get("Reason"))


class AppMeter:
    """The instrumentation of one Quix Streams app's dataframe (every method is a no-op when
    ``enabled`` is False, so ``STRATX_METRICS_ENABLED=false`` leaves the pipeline as it was)."""

    def __init__(self, app: str, enabled: bool = True) -> None:
        self.app, self.enabled = app, enabled

    def consumed(self, sdf: StreamingDataFrame, topic: str) -> StreamingDataFrame:
        return sdf.update(consumed(self.app, topic)) if self.enabled else sdf

    def produced(self, sdf: StreamingDataFrame, topic: str) -> StreamingDataFrame:
        return sdf.update(produced(self.app, topic)) if self.enabled else sdf

    def letters(self, sdf: StreamingDataFrame) -> StreamingDataFrame:
        """DeadLetter records about to be produced: by reason category, and as produced records."""
        if not self.enabled:
            return sdf
        return sdf.update(letters(self.app)).update(produced(self.app, catalog.DEAD_LETTER.name))

    def timed(self, fn: F) -> F:
        return timed(self.app, fn) if self.enabled else fn


class LoopMeter:
    """Metrics of a hot producer loop (the replay, ~120k events/s) at a fraction of a microsecond
    per event: produced counts are pushed to the counters in batches (:meth:`flush` with the loop's
    own running totals), and one event in ``sample_every`` is timed (so the histogram's ``_count``
    is the number of *sampled* events; its quantiles are those of all events)."""

    def __init__(self, app: str, sample_every: int = 16, flush_every: int = 1024) -> None:
        self.app, self.sample_every, self.flush_every = app, sample_every, flush_every
        self._hist = PROCESSING_SECONDS.labels(app)
        self._n = 0
        self._flushed: dict[str, int] = {}

    def tick(self) -> int:
        """Count one event; returns how many so far (time it when ``n % sample_every == 0``,
        flush when ``n % flush_every == 0``)."""
        self._n += 1
        return self._n

    def observe(self, seconds: float) -> None:
        self._hist.observe(seconds)

    def flush(self, totals: dict[str, int]) -> None:
        """``totals``: records produced so far per topic (running totals; only the increase is added)."""
        for topic, total in totals.items():
            done = self._flushed.get(topic, 0)
            if total > done:
                RECORDS_PRODUCED.labels(self.app, topic).inc(total - done)
                self._flushed[topic] = total


# ---------------------------------------------------------------- exporter
@dataclass
class Exporter:
    app: str
    port: int
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_exporters: dict[str, Exporter] = {}
_lock = threading.Lock()


def serve(app_name: str, settings: MetricsSettings) -> Exporter | None:
    """Start ``app_name``'s /metrics exporter on ``metrics_host``:``port(app_name)`` (once per process).

    Returns None when metrics are disabled or the port is taken (logged; the app runs on without
    an exporter rather than failing, e.g. two copies of an app on one machine)."""
    if not settings.metrics_enabled:
        return None
    with _lock:
        if app_name in _exporters:
            return _exporters[app_name]
        wanted = port(app_name, settings)
        try:
            server, thread = start_http_server(wanted, addr=settings.metrics_host)
        except OSError as exc:
            log.warning(
                "%s: no /metrics exporter on %s:%s (%s; each copy of an app on one host needs its STRATX_INSTANCE)",
                app_name,
                settings.metrics_host,
                wanted,
                exc,
            )
            return None
        exporter = Exporter(app_name, wanted, server, thread)
        _exporters[app_name] = exporter
        log.info("%s: /metrics on http://%s:%s/metrics", app_name, settings.metrics_host, wanted)
        return exporter


# the input topics of each consumer app (its lag is measured on them)
INPUT_TOPICS: dict[str, tuple[str, ...]] = {
    "lap": (catalog.LAPS.name, catalog.TRACK_STATUS.name, catalog.RACE_CONTROL.name),
    "telemetry": (catalog.CAR_TELEMETRY.name,),
    "aggression": (catalog.TELEMETRY_WINDOW.name, catalog.FEATURES_LAP.name),
    "progress": (catalog.CAR_POSITION.name,),
    "gaps": (catalog.PROGRESS.name,),
    "race": (
        catalog.LAPS.name,
        catalog.RACE_CONTROL.name,
        catalog.TRACK_STATUS.name,
        catalog.CAR_POSITION.name,
    ),
    "predict": (catalog.FEATURES_LAP_BY_SESSION.name, catalog.RETIREMENTS.name),
    "alerts": (*(spec.name for spec in catalog.PREDICTION_TOPICS.values()), catalog.RETIREMENTS.name),
}


def instrument_app(app_name: str, settings: KafkaSettings, group: str | None) -> LagMonitor | None:
    """What a consumer app's entry point calls: its exporter, and the lag monitor of ``group`` on
    the app's input topics (None when there is no exporter: metrics off or port taken)."""
    if serve(app_name, settings) is None or group is None:
        return None
    return LagMonitor(app_name, settings, group, INPUT_TOPICS[app_name]).start()
