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

import subprocess
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from stratx.bentos.lifecycle import sources
from stratx.functions import catalog
from stratx.functions.racedata import RaceData
from stratx.functions.settings import FeatureAppSettings, ReplaySettings
from stratx.quix_apps import replay, telemetry_features
from stratx.quix_apps.kit import admin, kafka_io, metrics, pipeline, wire
from stratx.quix_apps.kit import copies as probe
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port
from tests.conftest import DATA_DIR

DRIVERS = {"VER", "PIA", "NOR", "SAI"}
EVENTS = 24_000  # about half of them car telemetry: ~12k samples, ~3,000 per driver
APP, TOPIC = "telemetry", catalog.CAR_TELEMETRY.name
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


def run_copies(race: RaceData, copies: int, tmp: Path) -> Run:
    """Start ``copies`` processes of the telemetry app in one group on a fresh broker, replay the
    slice (two copies: once both have joined), wait until the copies have consumed every input
    record, stop them (SIGINT: they commit and flush) and read the window topic."""
    started = time.monotonic()
    tmp.mkdir()
    base = probe.free_base(APP)
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
            ports = [probe.port_of(APP, base, n) for n in range(copies)]
            deadline = time.monotonic() + 40
            while any(probe.consumed(p, TOPIC) is None for p in ports):  # every copy serves its own /metrics
                pipeline.check_alive(procs)
                assert time.monotonic() < deadline, "a copy's exporter did not come up"
                time.sleep(0.2)
            if copies > 1:
                probe.wait_stable(broker.address, GROUP, timeout_s=40.0)
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
                counts = [probe.consumed(p, TOPIC) for p in ports]
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
