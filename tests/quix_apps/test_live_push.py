"""`stratx live --push` against a real Mosquitto broker (Debian's `mosquitto`, started here on a free
loopback port) fed with recorded real OpenF1 records of the 2023 Las Vegas GP
(tests/fixtures/openf1_session), the poll against the local OpenF1-compatible server over the same
records, and a real Kafka-API broker for the raw topics.

Injected (SYNTHETIC, labelled where they are made): four malformed messages, duplicated messages,
one record held back and published out of order, the broker stopped and restarted (a disconnect),
and a slow OpenF1 server while the feed reconnects (so pushed records race the catch-up poll).
"""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from stratx.functions import catalog
from stratx.functions.openf1_push import Mode
from stratx.functions.settings import LiveSettings
from stratx.quix_apps import live, live_push
from stratx.quix_apps.kit import kafka_io
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port
from stratx.quix_apps.kit.openf1_client import OpenF1Client
from stratx.quix_apps.kit.openf1_server import create_app, lights_out_clock, serve

pytestmark = pytest.mark.integration
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "openf1_session"
SESSION = 9189
MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None
)


def records(endpoint: str) -> list[dict[str, Any]]:
    with gzip.open(FIXTURE / f"{endpoint}.jsonl.gz", "rt") as fh:
        return [json.loads(line) for line in fh]


def when(endpoint: str, r: dict[str, Any]) -> datetime:
    """When OpenF1 has the record: its date; a lap at its end."""
    if endpoint == "laps":
        return datetime.fromisoformat(r["date_start"]) + timedelta(seconds=r["lap_duration"] or 0)
    return datetime.fromisoformat(r["date"])


class Mosquitto:
    """Debian's mosquitto on one loopback port, started and stopped by PID (restartable)."""

    def __init__(self, folder: Path) -> None:
        assert MOSQUITTO is not None
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        # the recorded minutes are published as fast as possible: no cap on the subscriber's queue
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
        )
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on {self.port}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class Publisher:
    """A plain MQTT client that publishes as OpenF1 does: topic v1/<endpoint>, the record as JSON."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-openf1-feed")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, endpoint: str, payload: dict[str, Any] | bytes, times: int = 1) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        for _ in range(times):
            self.client.publish(f"v1/{endpoint}", body, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(what: str, cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture()
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if MOSQUITTO is None:
        pytest.skip("Debian's mosquitto is not installed (`make mosquitto` installs it as root)")
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


def test_push_feed_with_disconnects_duplicates_reordering_and_fallback(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    server = create_app(clock=None)
    server.clock = lights_out_clock(server, offset_s=60)
    lights_out = server.clock.now() - timedelta(seconds=60)
    base_url, stop_server = serve(server)
    feed = {ep: records(ep) for ep in ("car_data", "location", "laps", "stints")}
    laps_done = [r for r in feed["laps"] if r.get("lap_duration") is not None]

    def window(a: float, b: float) -> list[tuple[datetime, str, dict[str, Any]]]:
        lo, hi = lights_out + timedelta(seconds=a), lights_out + timedelta(seconds=b)
        out = [
            (when(ep, r), ep, r)
            for ep, rows in (
                ("car_data", feed["car_data"]),
                ("location", feed["location"]),
                ("laps", laps_done),
            )
            for r in rows
            if lo < when(ep, r) <= hi
        ]
        return sorted(out, key=lambda x: x[0])

    with EmbeddedBroker("127.0.0.1", free_port(), tmp_path / "tansu.log") as kafka:
        settings = LiveSettings(
            broker_address=kafka.address,
            openf1_url=f"{base_url}/v1",
            poll_interval_s=0.2,
            openf1_mqtt_broker="127.0.0.1",
            openf1_mqtt_port=mosquitto.port,
            openf1_mqtt_tls=False,
            push_silence_s=2.0,
            push_poll_interval_s=1.5,
            push_checkpoint_s=0.5,
        )
        stop = threading.Event()
        box: dict[str, Any] = {}

        def follow() -> None:
            with OpenF1Client(base_url=settings.openf1_url, rate_limit=1000, backoff_base=0.05) as client:
                try:
                    box["result"] = live_push.run(
                        client,
                        settings,
                        live.LiveOptions(session_key=str(SESSION)),
                        stop=stop,
                        on_start=lambda r: box.setdefault("runner", r),
                    )
                except BaseException as exc:  # surfaced by the assertions below
                    box["error"] = exc

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        wait_until("the runner", lambda: "runner" in box or "error" in box)
        assert "error" not in box, box.get("error")
        runner: live_push.PushRunner = box["runner"]
        published = runner.poller.result.published

        def caught_up() -> bool:
            return runner.feed.mode is Mode.PUSH and runner.feed.caught_up

        publisher = Publisher(mosquitto.port)
        try:
            wait_until("the feed to be live and caught up", caught_up)
            for stint in feed["stints"]:  # the tyres of the pushed laps
                publisher.send("stints", stint)
            # --- push: 60-120 s after lights out; every 40th message twice (duplicates)
            phase_a = window(60, 120)
            held_back = next(r for _, ep, r in phase_a[len(phase_a) // 2 :] if ep == "car_data")
            want_a = sum(
                1 for _, ep, r in phase_a if ep == "car_data" and r is not held_back and r["n_gear"] <= 8
            )
            before = published[catalog.CAR_TELEMETRY.name]
            for i, (_, ep, r) in enumerate(phase_a):
                if r is not held_back:
                    publisher.send(
                        ep, {**r, "_id": i}, times=2 if i % 40 == 0 else 1
                    )  # _id: as OpenF1's broker
            # SYNTHETIC malformed messages, each must become one dead letter with its reason
            publisher.send("car_data", b"{not json")
            publisher.send("car_data", b"[1, 2, 3]")
            publisher.send("car_data", {k: v for k, v in held_back.items() if k != "speed"} | {"date": "x"})
            publisher.send("location", {**feed["location"][0], "session_key": 1})
            wait_until(
                "the pushed car data", lambda: published[catalog.CAR_TELEMETRY.name] >= before + want_a
            )
            publisher.send("car_data", held_back)  # SYNTHETIC reordering: older than its car's cursor
            server.clock.advance(60)  # the poll now has the same records: repeats, dropped
            cycles = runner.poller.result.cycles
            wait_until("two polls", lambda: runner.poller.result.cycles >= cycles + 2)

            # --- disconnect: the broker goes away; the poll takes over at the normal cadence
            last = next(r for _, ep, r in reversed(phase_a) if ep == "car_data")
            publisher.send("car_data", last)  # a repeat (dropped) that wakes the silent feed
            wait_until("the feed to be live", lambda: runner.feed.mode is Mode.PUSH)
            mosquitto.stop()
            wait_until("the fallback to polling", lambda: runner.feed.mode is Mode.POLL)
            server.clock.advance(60)  # 180 s
            n_180 = sum(
                1 for r in feed["car_data"] if when("car_data", r) <= lights_out + timedelta(seconds=180)
            )
            n_180 -= sum(
                1
                for r in feed["car_data"]
                if when("car_data", r) <= lights_out + timedelta(seconds=180) and r["n_gear"] > 8
            )
            wait_until("the polled minute", lambda: published[catalog.CAR_TELEMETRY.name] >= n_180 - 1)
            # --- reconnect while the OpenF1 server is slow: pushed records race the catch-up poll
            server.faults.update(delay_s=0.7)
            server.clock.advance(20)  # 200 s: 180-200 only on REST (the feed was down)
            mosquitto.start()
            publisher.close()
            publisher = Publisher(mosquitto.port)
            wait_until("the feed to come back", lambda: runner.feed.mode is Mode.PUSH, timeout=30)
            for _, ep, r in window(200, 240):
                publisher.send(ep, r)
            # (the feed then falls silent: the held records go out after the polls that cover them)
            wait_until("records held for the catch-up poll", lambda: runner.stats["held"] > 0)
            server.faults.update(delay_s=0.0)
            server.clock.advance(40)  # 240 s: the safety net sees everything again
            cycles = runner.poller.result.cycles
            wait_until("two more safety-net polls", lambda: runner.poller.result.cycles >= cycles + 2)
            end = lights_out + timedelta(seconds=240)
            n_240 = sum(1 for r in feed["car_data"] if when("car_data", r) <= end and r["n_gear"] <= 8)
            wait_until("every car sample", lambda: published[catalog.CAR_TELEMETRY.name] >= n_240 - 1)
            assert published[catalog.CAR_TELEMETRY.name] == n_240 - 1  # the held-back one is a dead letter
        finally:
            publisher.close()
            stop.set()
            thread.join(timeout=120)
            stop_server()
        assert "error" not in box, box.get("error")
        result: live.LiveResult = box["result"]
        topics = {
            spec.name: [json.loads(m.value()) for m in kafka_io.read_all(kafka.address, spec.name)]
            for spec in (catalog.CAR_TELEMETRY, catalog.CAR_POSITION, catalog.LAPS, catalog.DEAD_LETTER)
        }

    key = lambda v: (v["DriverNumber"], datetime.fromisoformat(v["Date"]))  # noqa: E731
    src = lambda r: (str(r["driver_number"]), datetime.fromisoformat(r["date"]))  # noqa: E731
    # every record exactly once: the held-back one went to the dead letters instead
    cars = Counter(key(v) for v in topics[catalog.CAR_TELEMETRY.name])
    expected = Counter(src(r) for r in feed["car_data"] if when("car_data", r) <= end and r["n_gear"] <= 8)
    assert max(cars.values()) == 1
    assert cars == expected - Counter([src(held_back)])
    positions = Counter(key(v) for v in topics[catalog.CAR_POSITION.name])
    assert positions == Counter(src(r) for r in feed["location"] if when("location", r) <= end)
    laps = topics[catalog.LAPS.name]
    assert Counter((v["DriverNumber"], v["LapNumber"]) for v in laps) == Counter(
        (str(r["driver_number"]), r["lap_number"]) for r in laps_done if when("laps", r) <= end
    )
    assert all(v["Compound"] for v in laps), "a pushed lap was published without its stint"
    # dead letters: each injected message once, with its reason; nothing else but the gear glitches
    letters = [v["Reason"] for v in topics[catalog.DEAD_LETTER.name]]
    assert sum("message is not JSON" in x for x in letters) == 1
    assert sum("message is list, not an object" in x for x in letters) == 1
    assert sum("session_key 1 is not 9189" in x for x in letters) == 1
    assert sum("car_data: date is not an ISO date" in x or "missing speed" in x for x in letters) == 1
    late = [v for v in topics[catalog.DEAD_LETTER.name] if "out of order" in v["Reason"]]
    assert len(late) == 1 and json.loads(late[0]["Payload"])["date"] == held_back["date"]
    glitches = [r for r in feed["car_data"] if when("car_data", r) <= end and r["n_gear"] > 8]
    assert sum("nGear" in x for x in letters) == len(glitches)
    assert len(letters) == 5 + len(glitches), letters
    # the fallback happened on the disconnect, and the push came back
    changes = runner.feed.changes
    down = next(i for i, (_, m, why) in enumerate(changes) if m is Mode.POLL and "disconnected" in why)
    assert any(m is Mode.PUSH for _, m, _ in changes[down:])
    assert result.push["fallbacks"] >= 1 and result.push["recoveries"] >= 2
    assert result.push["messages"] > len(phase_a) and result.push["undecodable"] == 3
