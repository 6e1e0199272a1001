"""The Prometheus metric objects of every StratX app, in prometheus-client's default registry.

One definition per metric (names, help texts, labels, histogram buckets), the dead-letter reason
categories and :data:`METRIC_NAMES`, the exposed sample-name families. Defining them here once
keeps the names from drifting apart; :mod:`stratx.quix_apps.kit.metrics` documents them, records
them and re-exports them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, values

# Feast's metrics module sets PROMETHEUS_MULTIPROC_DIR when it is imported (for its Gunicorn
# workers), and a process inherits it from a parent that imported Feast (`stratx up`). With it,
# prometheus-client keeps every value in a shared mmap file and checks the process id on every
# update: ~27 % of the telemetry app's time went to that (py-spy, bench/features_throughput.py).
# Every StratX app is one process with its own exporter: its values live in process memory.
values.ValueClass = values.MutexValue

# the dead-letter reason categories (the ``reason`` label); anything unrecognised is "other"
REASONS = ("not_json", "schema", "duplicate", "late", "out_of_order", "openf1", "other")

_LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
_MODEL_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

RECORDS_CONSUMED = Counter("stratx_records_consumed", "records read from a topic by an app", ["app", "topic"])
RECORDS_PRODUCED = Counter(
    "stratx_records_produced", "records an app handed to its producer, per topic", ["app", "topic"]
)
PROCESSING_SECONDS = Histogram(
    "stratx_processing_seconds",
    "time an app spends processing one record (its step function; replay: validate + encode + produce)",
    ["app"],
    buckets=_LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "stratx_consumer_lag_records",
    "records of a partition not yet committed by the app's consumer group (high watermark - committed)",
    ["app", "topic", "partition"],
)
DEAD_LETTERS = Counter(
    "stratx_dead_letters",
    "records an app sent to the dead-letter topic, by reason category",
    ["app", "reason"],
)
RETRIES = Counter(
    "stratx_retries", "retried calls to a dependency (model service, OpenF1)", ["app", "target"]
)
MODEL_CALLS = Counter(
    "stratx_model_calls", "model-service calls by outcome (ok / unavailable)", ["model", "status"]
)
MODEL_CALL_SECONDS = Histogram(
    "stratx_model_call_seconds",
    "one model-service call including its retries, as the prediction app sees it",
    ["model"],
    buckets=_MODEL_BUCKETS,
)
OPENF1_REQUESTS = Counter(
    "stratx_openf1_requests",
    "HTTP requests to the OpenF1 API by status (200, 429, 4xx, 5xx, error)",
    ["status"],
)
DASHBOARD_SESSIONS = Gauge("stratx_dashboard_sessions", "open browser sessions of the dashboard server")

# every metric this module defines, by exposed sample-name family (the container-file test checks
# that dashboards only query names that exist)
METRIC_NAMES = (
    "stratx_records_consumed_total",
    "stratx_records_produced_total",
    "stratx_processing_seconds",
    "stratx_consumer_lag_records",
    "stratx_dead_letters_total",
    "stratx_retries_total",
    "stratx_model_calls_total",
    "stratx_model_call_seconds",
    "stratx_openf1_requests_total",
    "stratx_dashboard_sessions",
)
