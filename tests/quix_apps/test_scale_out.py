"""Scale-out: copies of a stateful app in one consumer group split the partitions and write exactly
the records one copy writes.

Integration tier (real Tansu broker, the real app processes started as a deployer starts them:
``stratx features run --app telemetry``, one process per copy, ``STRATX_INSTANCE`` 0 and 1 on one
host, one shared ``STRATX_STATE_DIR``). Four drivers of the bundled 2024 Bahrain GP (VER, PIA on
partitions 1 and 2 of ``stratx.raw.car_telemetry``, NOR, SAI on 3 and 4: the topic's key is
``<SessionKey>:<DriverNumber>``, so the telemetry-features app's work splits by driver) are
replayed (the first ``EVENTS`` events of the race) to a fresh broker per run, after every copy has
joined the group. Quix assigns partitions with the range assignor, so one copy owns partitions 0-2
and the other 3-5: each copy's consumed-records counter (its own /metrics exporter) must be the
input of one half. The window records of one copy and of two must be the same records (key,
value bytes, timestamp), in the same order within each key.

The lap-features app is not run here: its input ``stratx.raw.laps`` has one partition (a session's
laps stay in event-time order for the cross-driver features), so a second copy would get nothing
to do; it scales by session at most (see docs/deployment.md, "Scaling out").
"""

from __future__ import annotations

import random
import subprocess
import time
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from stratx.bentos.lifecycle import sources
from stratx.functions import catalog
from stratx.functions.racedata import RaceData
from stratx.functions.settings import FeatureAppSettings, ReplaySettings
from stratx.quix_apps import replay, telemetry_features
from stratx.quix_apps.kit import admin, kafka_io, metrics, pipeline, wire
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port, port_is_free
from tests.conftest import DATA_DIR

DRIVERS = {"VER", "PIA", "NOR", "SAI"}
EVENTS = 24_000  # about half of them car telemetry: ~12k samples, ~3,000 per driver
GROUP = telemetry_features.CONSUMER_GROUP  # the CLI's default group (prefix "stratx")
Records = dict[str, list[tuple[bytes, int]]]  # key -> (value, timestamp) in offset order


@dataclass
class Run:
    records: Records  # the window topic after the run
    consumed: list[int]  # input records each copy counted (its own exporter)
    inputs: dict[int, int]  # input records per partition
    seconds: float


def test_each_copy_gets_its_own_port_and_state_dir(tmp_path: Path) -> None:
    """Copy 0 is the single copy as before; copy n moves its port by 100 n and its state down a folder."""
    one, two = FeatureAppSettings(), FeatureAppSettings(instance=1)
    assert metrics.port("telemetry", one) == one.metrics_port_base + metrics.PORT_OFFSETS["telemetry"]
    assert metrics.port("telemetry", two) == metrics.port("telemetry", one) + metrics.INSTANCE_PORT_STEP
    ports = {
        metrics.port(app, FeatureAppSettings(instance=n)) for app in metrics.PORT_OFFSETS for n in range(3)
    }
    assert len(ports) == 3 * len(metrics.PORT_OFFSETS)  # no two apps or copies share a port
    assert wire.instance_state_dir(tmp_path, 0) == tmp_path
    assert wire.instance_state_dir(tmp_path, 1) == tmp_path / "instance-1"


@pytest.fixture(scope="module")
def race() -> RaceData:
    return sources.load_bundled(DATA_DIR / "races" / "2024_bahrain_grand_prix_race").filter_drivers(DRIVERS)


def port_of(base: int, instance: int) -> int:
    """The /metrics port of telemetry-app copy ``instance`` with ``STRATX_METRICS_PORT_BASE=base``."""
    return metrics.port("telemetry", FeatureAppSettings(metrics_port_base=base, instance=instance))


def free_base() -> int:
    """A metrics port base with both copies' ports free, below the kernel's ephemeral range."""
    for _ in range(200):
        base = random.randrange(10_000, 30_000)
        if all(port_is_free("127.0.0.1", port_of(base, n)) for n in (0, 1)):
            return base
    raise RuntimeError("no free metrics ports")


def consumed(port: int) -> int | None:
    """The copy's ``stratx_records_consumed_total`` of the input topic (None: exporter not up yet)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    return int(
        sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "stratx_records_consumed_total"
            and s.labels.get("topic") == catalog.CAR_TELEMETRY.name
        )
    )


def wait_stable(broker_address: str, hold_s: float = 3.5, timeout_s: float = 40.0) -> None:
    """Wait until the group has been Stable for ``hold_s`` (longer than a heartbeat, 3 s: a copy that
    joins later sends the group back to rebalancing first). Tansu names no members, only the state."""
    client = AdminClient({"bootstrap.servers": broker_address, "log_level": 3})
    deadline, since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        state = client.describe_consumer_groups([GROUP], request_timeout=5)[GROUP].result().state
        now = time.monotonic()
        since = (since or now) if state == ConsumerGroupState.STABLE else None
        if since is not None and now - since >= hold_s:
            return
        time.sleep(0.1)
    raise AssertionError(f"group {GROUP} not stable within {timeout_s:.0f} s")


def run_copies(race: RaceData, copies: int, tmp: Path) -> Run:
    """Start ``copies`` processes of the telemetry app in one group on a fresh broker, replay the
    slice (two copies: once both have joined), wait until the copies have consumed every input
    record, stop them (SIGINT: they commit and flush) and read the window topic."""
    started = time.monotonic()
    tmp.mkdir()
    base = free_base()
    with EmbeddedBroker("127.0.0.1", free_port(), tmp / "tansu.log") as broker:
        client = admin.connect(broker.address)
        admin.create_topics(client)
        client.close()
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for n in range(copies):
                (tmp / f"copy{n}").mkdir()
                env = {"STRATX_INSTANCE": str(n), "STRATX_METRICS_PORT_BASE": str(base)}
                started_copy = pipeline.start_apps(
                    broker.address, tmp / "state", ("telemetry",), False, tmp / f"copy{n}", env
                )
                procs[f"copy{n}"] = started_copy["telemetry"]
            ports = [port_of(base, n) for n in range(copies)]
            deadline = time.monotonic() + 40
            while any(consumed(p) is None for p in ports):  # every copy serves its own /metrics
                pipeline.check_alive(procs)
                assert time.monotonic() < deadline, "a copy's exporter did not come up"
                time.sleep(0.2)
            if copies > 1:
                wait_stable(broker.address)
            result = replay.run(
                race,
                ReplaySettings(broker_address=broker.address),
                replay.ReplayOptions(progress=False, max_events=EVENTS),
            )
            assert sum(result.published.values()) > 0
            inputs: dict[int, int] = defaultdict(int)
            for msg in kafka_io.read_all(broker.address, catalog.CAR_TELEMETRY.name, drain_s=0.3):
                inputs[msg.partition()] += 1
            counts: list[int | None] = []
            deadline = time.monotonic() + 40
            while sum(c or 0 for c in counts) < sum(inputs.values()):
                pipeline.check_alive(procs)
                assert time.monotonic() < deadline, f"copies consumed {counts} of {dict(inputs)}"
                time.sleep(0.3)
                counts = [consumed(p) for p in ports]
        finally:
            pipeline.stop_apps(procs)
        records: Records = defaultdict(list)
        for msg in kafka_io.read_all(broker.address, catalog.TELEMETRY_WINDOW.name, drain_s=0.3):
            records[msg.key().decode()].append((msg.value(), msg.timestamp()[1]))
    return Run(dict(records), [c or 0 for c in counts], dict(inputs), time.monotonic() - started)


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_two_copies_split_the_partitions_and_write_what_one_copy_writes(
    race: RaceData, tmp_path: Path
) -> None:
    with ThreadPoolExecutor(2) as pool:  # two brokers side by side: the runs share nothing
        runs = [pool.submit(run_copies, race, n, tmp_path / name) for n, name in ((1, "one"), (2, "two"))]
        one, two = (run.result() for run in runs)
    low = sum(n for p, n in two.inputs.items() if p < 3)  # the range assignor: partitions 0-2 and 3-5
    high = sum(two.inputs.values()) - low
    print(
        f"\nscale-out: 1 copy {one.seconds:.1f} s, consumed {one.consumed}; 2 copies {two.seconds:.1f} s, "
        f"consumed {two.consumed} (partitions 0-2: {low}, 3-5: {high}); inputs per partition "
        f"{dict(sorted(two.inputs.items()))}; {sum(map(len, two.records.values()))} windows"
    )
    assert one.inputs == two.inputs and low > 0 and high > 0
    assert one.consumed == [low + high]
    assert sorted(two.consumed) == sorted([low, high])  # each copy read one half, none read twice
    assert (tmp_path / "two" / "state" / "instance-1" / GROUP).is_dir()  # copy 1's own Quix state
    assert len(one.records) == len(DRIVERS) and all(len(v) > 100 for v in one.records.values())
    assert two.records == one.records  # same keys, and per key the same records in the same order
