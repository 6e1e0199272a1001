"""Copies of one app on one host in one consumer group (``STRATX_INSTANCE``): their exporter ports,
what each copy consumed, and when the group has settled. Read by the scale-out test and benchmark
(``tests/quix_apps/test_scale_out.py``, ``bench/scale_out.py``) and usable by an operator checking a
split by hand."""

from __future__ import annotations

import random
import time
import urllib.request

from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from stratx.functions.settings import FeatureAppSettings
from stratx.quix_apps.kit import metrics
from stratx.quix_apps.kit.broker import port_is_free


def port_of(app: str, base: int, instance: int) -> int:
    """The /metrics port of copy ``instance`` of ``app`` with ``STRATX_METRICS_PORT_BASE=base``."""
    return metrics.port(app, FeatureAppSettings(metrics_port_base=base, instance=instance))


def free_base(app: str, copies: int = 2) -> int:
    """A metrics port base with every copy's port free, below the kernel's ephemeral range."""
    for _ in range(200):
        base = random.randrange(10_000, 30_000)
        if all(port_is_free("127.0.0.1", port_of(app, base, n)) for n in range(copies)):
            return base
    raise RuntimeError("no free metrics ports")


def consumed(port: int, topic: str) -> int | None:
    """The copy's ``stratx_records_consumed_total`` of ``topic`` (None: its exporter is not up yet)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    return int(
        sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "stratx_records_consumed_total" and s.labels.get("topic") == topic
        )
    )


def wait_stable(broker_address: str, group: str, hold_s: float = 3.5, timeout_s: float = 60.0) -> None:
    """Wait until ``group`` has been Stable for ``hold_s`` (longer than a heartbeat, 3 s: a copy that
    joins later sends the group back to rebalancing first). Tansu names no members, only the state."""
    client = AdminClient({"bootstrap.servers": broker_address, "log_level": 3})
    deadline, since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        state = client.describe_consumer_groups([group], request_timeout=5)[group].result().state
        now = time.monotonic()
        since = (since or now) if state == ConsumerGroupState.STABLE else None
        if since is not None and now - since >= hold_s:
            return
        time.sleep(0.1)
    raise TimeoutError(f"group {group} not stable within {timeout_s:.0f} s")
