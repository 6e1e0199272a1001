"""Push mode of bench/live_lag.py: `stratx live --push` fed by a local Mosquitto at the recorded pace.

Debian's ``mosquitto`` runs on a free loopback port (``make mosquitto`` installs it). A publisher
thread publishes the recorded real 2023 Las Vegas OpenF1 records (``tests/fixtures/openf1_session``:
car_data, location, and each completed lap at its end) on ``v1/<endpoint>`` at the pace they were
recorded, from lights out; the local OpenF1 server's clock runs at 1x from the same moment, so the
safety-net poll (at OpenF1's 30 requests / 10 s) sees the same records. Lag of a record = the
watcher's receive time - the time it was handed to the MQTT publisher (both ``time.monotonic()``).
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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from stratx.functions.openf1_push import Mode
from stratx.functions.settings import LiveSettings
from stratx.quix_apps import live, live_push
from stratx.quix_apps.kit.broker import free_port
from stratx.quix_apps.kit.openf1_client import OpenF1Client
from stratx.quix_apps.kit.openf1_server import DEFAULT_DATA_DIR, Faults, create_app, lights_out_clock, serve

SHORT = {
    "stratx.raw.car_telemetry": "car_data",
    "stratx.raw.car_position": "location",
    "stratx.raw.laps": "laps",
}


def mosquitto_bin() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None
    )
    if found is None:
        raise SystemExit("push mode needs Debian's mosquitto: `make mosquitto` (as root) installs it")
    return found


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [mosquitto_bin(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit(f"mosquitto did not listen on {port}")


def schedule(data_dir: Path, lights_out: datetime, seconds: float) -> tuple[list[Any], list[dict[str, Any]]]:
    """(offset s after lights out, endpoint, record) in publication order, and the stints."""

    def load(endpoint: str) -> list[dict[str, Any]]:
        with gzip.open(data_dir / f"{endpoint}.jsonl.gz", "rt") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    out = []
    for endpoint in ("car_data", "location", "laps"):
        for r in load(endpoint):
            if endpoint == "laps":
                if r.get("lap_duration") is None:
                    continue
                at = datetime.fromisoformat(r["date_start"]) + timedelta(seconds=r["lap_duration"])
            else:
                at = datetime.fromisoformat(r["date"])
            offset = (at - lights_out).total_seconds()
            if 0 <= offset <= seconds:
                out.append((offset, endpoint, r, at))
    out.sort(key=lambda x: x[0])
    return out, load("stints")


def run_push(
    broker_address: str, watcher: Any, seconds: float, rate_limit: int, rate_window_s: float, folder: Path
) -> dict[str, Any]:
    proc, port = start_mosquitto(folder)
    app = create_app(clock=None, faults=Faults(rate_limit=rate_limit, rate_window_s=rate_window_s))
    app.clock = lights_out_clock(app)  # manual, at lights out, until the publisher starts
    lights_out = app.clock.now()
    plan, stints = schedule(DEFAULT_DATA_DIR, lights_out, seconds)
    base_url, stop_server = serve(app)
    settings = LiveSettings(
        broker_address=broker_address,
        openf1_url=f"{base_url}/v1",
        openf1_rate_limit=rate_limit,
        openf1_rate_window_s=rate_window_s,
        poll_interval_s=1.0,
        openf1_mqtt_broker="127.0.0.1",
        openf1_mqtt_port=port,
        openf1_mqtt_tls=False,
    )
    sent: dict[tuple[str, str, int], float] = {}
    published: Counter[str] = Counter()
    stop = threading.Event()
    box: dict[str, Any] = {}
    watcher.set_phase("push")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-openf1-feed")
    pub.connect("127.0.0.1", port)
    pub.loop_start()

    def follow() -> None:
        with OpenF1Client(
            base_url=settings.openf1_url, rate_limit=rate_limit, rate_window=rate_window_s
        ) as client:
            box["result"] = live_push.run(
                client,
                settings,
                live.LiveOptions(session_key=str(app.data.latest_session_key), resume=False),
                stop=stop,
                on_start=lambda r: box.setdefault("runner", r),
            )

    thread = threading.Thread(target=follow, daemon=True)
    print(
        f"--- push: mosquitto on 127.0.0.1:{port}, {len(plan)} records over {seconds:.0f} s at the recorded pace",
        flush=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not ("runner" in box and box["runner"].feed.mode is Mode.PUSH and box["runner"].feed.caught_up):
            if time.monotonic() > deadline or not thread.is_alive():
                raise SystemExit("the push runner did not come up")
            time.sleep(0.05)
        for s in stints:
            pub.publish("v1/stints", json.dumps(s).encode(), qos=1)
        t0 = time.monotonic()
        app.clock = lights_out_clock(app, speed=1.0)
        for offset, endpoint, record, at in plan:
            time.sleep(max(0.0, t0 + offset - time.monotonic()))
            sent[(endpoint, str(record["driver_number"]), round(at.timestamp() * 1000))] = time.monotonic()
            pub.publish(f"v1/{endpoint}", json.dumps(record).encode(), qos=1)
            published[endpoint] += 1
        time.sleep(3.0)  # the last records reach the topics
    finally:
        stop.set()
        thread.join(timeout=120)
        pub.disconnect()
        pub.loop_stop()
        stop_server()
        proc.terminate()
        proc.wait(timeout=10)
    runner, result = box["runner"], box.get("result")
    lags: dict[str, list[float]] = {s: [] for s in SHORT.values()}
    received: Counter[str] = Counter()
    for topic, value, t in watcher.received.get("push", []):
        v = json.loads(value)
        short = SHORT[topic]
        key = (short, v["DriverNumber"], round(datetime.fromisoformat(v["Date"]).timestamp() * 1000))
        if key in sent:
            lags[short].append(t - sent[key])
            received[short] += 1
    return {
        "name": "push",
        "mqtt_broker": f"mosquitto ({subprocess.run([mosquitto_bin(), '-h'], capture_output=True, text=True).stdout.splitlines()[0]}), loopback",
        "seconds_requested": seconds,
        "rate_limit": rate_limit,
        "rate_window_s": rate_window_s,
        "push_poll_interval_s": settings.push_poll_interval_s,
        "push_silence_s": settings.push_silence_s,
        "messages_published": dict(published),
        "records_received_with_lag": dict(received),
        "result": {
            "cycles": result.cycles if result else None,
            "published": dict(result.published) if result else None,
            "dead_letters": result.dead_letters if result else None,
            "fetches": result.requests if result else None,
            "push": dict(result.push) if result else None,
        },
        "mode_changes": [
            {"s_after_start": at - t0, "mode": str(m), "why": why} for at, m, why in runner.feed.changes
        ],
        "lags": lags,
    }
