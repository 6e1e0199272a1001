"""Live ingest lag: `stratx live` polling a local OpenF1 server at OpenF1's rate limit, vs a lifted limit.

    python bench/live_lag.py [--minutes 2.5] [--rate-limit 30] [--reference-rate-limit 1000] [--mode both|poll|push]

The local OpenF1 server (``quix_apps/kit/openf1_server.py``) serves the recorded real 2023 Las Vegas
OpenF1 records (``tests/fixtures/openf1_session``) on a ``SimClock`` running at 1x (real time)
from lights out: a record becomes visible when the clock reaches its date (a lap: its end). The
live poller (``live.run``) follows it into ONE embedded Tansu broker. Two configurations run one
after the other, each for ``--minutes`` of wall time and each from lights out:

* measured: client limit = server limit (``Faults(rate_limit=...)``) = OpenF1's published
  30 requests / 10 s;
* reference: the same with the limit lifted (default 1000 / 10 s, which does not bind at a 1 s
  poll interval).

Ingest lag of a published record = wall time a confluent-kafka consumer (assigned to every
partition of the three topics, ``fetch.wait.max.ms`` 10) received it - wall time at which the
server's clock reached the record's source date (``Date``: the sample time; for a lap, its end).
The Kafka timestamp is not used: in StratX it is the event time. The poller's producer is wrapped
to also record when each record was handed to it, which splits the lag into "poll" (source ->
produce call) and "broker" (produce call -> visible to a consumer). ``LivePoller.cycle`` is
wrapped to time every poll cycle. The run stops like Ctrl-C (SIGINT; the poller finishes its
cycle). Only records whose source date is before the start of the last poll cycle are counted:
every driver is polled after that, so all of them were published (checked against the fixture).
The JSON result goes to bench/results/live_lag.json. See bench/README.md.

``--mode push`` (or ``both``, the default, after the two polling runs) measures ``stratx live --push``
instead (``bench/live_lag_push.py``): Mosquitto fed with the same records at the recorded pace, lag
from the MQTT publish to the raw topic; it goes to the result's ``push`` section, and the polling
figures of the file are kept when only the push is run.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from live_lag_push import run_push
from replay_throughput import REPO_ROOT, machine_info
from tqdm import tqdm

from stratx.functions import catalog
from stratx.functions.settings import LiveSettings
from stratx.quix_apps import live
from stratx.quix_apps.kit import admin
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port
from stratx.quix_apps.kit.openf1_client import OpenF1Client
from stratx.quix_apps.kit.openf1_server import (
    DEFAULT_DATA_DIR,
    OPENF1_RATE_LIMIT,
    OPENF1_RATE_WINDOW_S,
    Faults,
    SimClock,
    Stats,
    create_app,
    lights_out_clock,
    serve,
)

DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "live_lag.json"
# topic name -> short name used in the report (the OpenF1 endpoint that feeds it)
TOPICS = {
    catalog.CAR_TELEMETRY.name: "car_data",
    catalog.CAR_POSITION.name: "location",
    catalog.LAPS.name: "laps",
}
QUANTILES = {"p50": 50, "p95": 95, "p99": 99}
# what the push mode (bench/live_lag_push.py) measures, named for bench/check_stale.py, which follows
# StratX modules but not the sibling scripts a benchmark imports
PUSH_MEASURES = (
    "stratx.quix_apps.live_push",
    "stratx.quix_apps.kit.mqtt_feed",
    "stratx.functions.openf1_push",
)


# ---------------------------------------------------------------- the consumer side
class TopicWatcher(threading.Thread):
    """Reads the three topics from the beginning for the whole run; stamps each message with the
    monotonic time ``consume()`` returned it, under the configuration (phase) running then."""

    def __init__(self, address: str) -> None:
        super().__init__(name="live-lag-watcher", daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": address,
                "group.id": f"bench-live-lag-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "fetch.wait.max.ms": 10,
                "fetch.min.bytes": 1,
            }
        )
        md = self.consumer.list_topics(timeout=10)
        self.consumer.assign(
            [
                TopicPartition(topic, p, OFFSET_BEGINNING)
                for topic in TOPICS
                for p in sorted(md.topics[topic].partitions)
            ]
        )
        self.phase: str | None = None
        self.received: dict[str, list[tuple[str, bytes, float]]] = {}
        self.errors: list[str] = []
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                msgs = self.consumer.consume(1000, timeout=0.05)
                now = time.monotonic()
                if not msgs:
                    continue
                with self._lock:
                    sink = self.received.setdefault(self.phase or "none", [])
                    for m in msgs:
                        if m.error() is not None:
                            self.errors.append(str(m.error()))
                            continue
                        sink.append((m.topic(), m.value(), now))
        finally:
            self.consumer.close()

    def counts(self, phase: str) -> Counter[str]:
        with self._lock:
            return Counter(topic for topic, _, _ in self.received.get(phase, []))

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self.phase = phase

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


# ---------------------------------------------------------------- instrumentation of the poller
class TimedProducer:
    """Wraps the poller's Quix producer: remembers when each watched record was handed to it."""

    def __init__(self, inner: Any, sink: dict[tuple[str, bytes], float]) -> None:
        self._inner, self._sink = inner, sink

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None:
        self._inner.produce(topic, value=value, key=key, **kwargs)
        if topic in TOPICS:
            self._sink[(topic, bytes(value))] = time.monotonic()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Probe:
    """What the wrapped poller reports: cycle timings, produce-call times, the stop request."""

    def __init__(self) -> None:
        self.cycles: list[dict[str, float]] = []
        self.produced: dict[tuple[str, bytes], float] = {}
        self.first_cycle = threading.Event()
        self.client: OpenF1Client | None = None


@contextmanager
def instrumented(probe: Probe) -> Iterator[None]:
    """Wrap ``LivePoller.__init__`` (producer) and ``LivePoller.cycle`` (timing) for one run."""
    orig_init, orig_cycle = live.LivePoller.__init__, live.LivePoller.cycle

    def init(self: live.LivePoller, client: OpenF1Client, producer: Any, *args: Any, **kwargs: Any) -> None:
        orig_init(self, client, TimedProducer(producer, probe.produced), *args, **kwargs)

    def cycle(self: live.LivePoller) -> int:
        probe.first_cycle.set()
        start, fetches, http = time.monotonic(), self.result.requests, self.client.requests
        new = orig_cycle(self)
        probe.cycles.append(
            {
                "start": start,
                "end": time.monotonic(),
                "fetches": self.result.requests - fetches,  # logical requests (one per endpoint call)
                "http_requests": self.client.requests - http,  # sent, with retries
                "new_records": new,
            }
        )
        return new

    live.LivePoller.__init__ = init  # type: ignore[method-assign]
    live.LivePoller.cycle = cycle  # type: ignore[method-assign]
    try:
        yield
    finally:
        live.LivePoller.__init__ = orig_init  # type: ignore[method-assign]
        live.LivePoller.cycle = orig_cycle  # type: ignore[method-assign]


# ---------------------------------------------------------------- one configuration
def sim_offset(clock: SimClock) -> float:
    """sim seconds - monotonic seconds (constant at speed 1): the median of a few close samples."""
    samples = []
    for _ in range(9):
        t0 = time.monotonic()
        sim = clock.now_ts()
        t1 = time.monotonic()
        samples.append(sim - (t0 + t1) / 2)
    return float(np.median(samples))


def run_config(
    name: str,
    broker_address: str,
    watcher: TopicWatcher,
    rate_limit: int,
    rate_window_s: float,
    poll_interval_s: float,
    seconds: float,
) -> dict[str, Any]:
    app = create_app(clock=None, faults=Faults(rate_limit=rate_limit, rate_window_s=rate_window_s))
    app.stats = Stats(keep=1_000_000)  # keep every request (the default keeps the last 5000)
    session_key = str(app.data.latest_session_key)
    base_url, stop_server = serve(app)
    settings = LiveSettings(
        broker_address=broker_address,
        openf1_url=f"{base_url}/v1",
        openf1_rate_limit=rate_limit,
        openf1_rate_window_s=rate_window_s,
        poll_interval_s=poll_interval_s,
    )
    probe = Probe()
    done = threading.Event()
    guard = threading.Lock()
    stop_at: dict[str, float] = {}
    watcher.set_phase(name)

    def stopper(run_started: float) -> None:
        """SIGINT (= Ctrl-C: live.run's StopFlag) ``seconds`` after the start, once the poller runs."""
        if not probe.first_cycle.wait(timeout=120):
            return
        if done.wait(max(0.0, run_started + seconds - time.monotonic())):
            return
        with guard:
            if not done.is_set():
                stop_at["mono"] = time.monotonic()
                os.kill(os.getpid(), signal.SIGINT)

    def progress(run_started: float) -> None:
        with tqdm(total=round(seconds), desc=f"{name}: polling", unit="s", mininterval=0.5) as bar:
            while not done.wait(2.0):
                bar.n = min(round(seconds), int(time.monotonic() - run_started))
                counts = watcher.counts(name)
                bar.set_postfix(
                    cycles=len(probe.cycles),
                    **{short: counts[topic] for topic, short in TOPICS.items()},
                    http=app.stats.total,
                    s429=app.stats.by_status.get("429", 0),
                    refresh=False,
                )
                bar.refresh()
            bar.n = min(round(seconds), int(time.monotonic() - run_started))
            bar.refresh()

    print(
        f"--- {name}: client and server limit {rate_limit} requests / {rate_window_s:g} s, "
        f"poll interval {poll_interval_s:g} s, {seconds:.0f} s from lights out",
        flush=True,
    )
    try:
        with OpenF1Client(
            base_url=settings.openf1_url,
            rate_limit=settings.openf1_rate_limit,
            rate_window=settings.openf1_rate_window_s,
        ) as client:
            probe.client = client
            app.clock = lights_out_clock(app, speed=1.0)  # lights out is "now"
            offset = sim_offset(app.clock)
            run_started = time.monotonic()
            threads = [
                threading.Thread(target=stopper, args=(run_started,), daemon=True),
                threading.Thread(target=progress, args=(run_started,), daemon=True),
            ]
            for t in threads:
                t.start()
            try:
                with instrumented(probe):
                    result = live.run(
                        client, settings, live.LiveOptions(session_key=session_key, resume=False)
                    )
            finally:
                with guard:
                    done.set()
                for t in threads:
                    t.join(timeout=5)
            run_ended = time.monotonic()
            http_sent = client.requests
    finally:
        stop_server()
    # every published record of the three topics must reach the watcher before the next phase
    want = Counter({topic: result.published[topic] for topic in TOPICS})
    deadline = time.monotonic() + 30
    while watcher.counts(name) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    got = watcher.counts(name)
    if got != want:
        raise AssertionError(f"{name}: the consumer read {dict(got)}, the poller published {dict(want)}")
    stats = app.stats
    snap = stats.snapshot(with_log=True)
    log_t = [e["t"] for e in snap["log"]]
    span = (log_t[-1] - log_t[0]) if len(log_t) > 1 else float("nan")
    accepted_t = [e["t"] for e in snap["log"] if e["status"] != 429]
    return {
        "name": name,
        "rate_limit": rate_limit,
        "rate_window_s": rate_window_s,
        "poll_interval_s": poll_interval_s,
        "seconds_requested": seconds,
        "session_key": session_key,
        "offset_sim_minus_mono": offset,
        "run_started": run_started,
        "run_ended": run_ended,
        "stop_requested": stop_at.get("mono"),
        "result": {
            "cycles": result.cycles,
            "published": dict(result.published),
            "dead_letters": result.dead_letters,
            "fetches": result.requests,
            "interrupted": result.interrupted,
        },
        "client_http_requests": http_sent,
        "server": {
            "total": snap["total"],
            "by_status": snap["by_status"],
            "by_endpoint": snap["by_endpoint"],
            "records_served": snap["records_served"],
            "first_to_last_request_s": span,
            "max_in_window": stats.max_in_window(rate_window_s),  # every request, 429s included
            "max_in_window_answered": max_in_window(accepted_t, rate_window_s),  # 429s left out
        },
        "cycles": probe.cycles,
        "produced": probe.produced,
        "received": watcher.received.get(name, []),
    }


# ---------------------------------------------------------------- analysis
def max_in_window(ts: list[float], window_s: float) -> int:
    """Most timestamps inside any ``window_s`` span (as ``Stats.max_in_window``)."""
    best = lo = 0
    for hi, t in enumerate(ts):
        while t - ts[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def fixture_dates(data_dir: Path) -> dict[str, list[float]]:
    """Source dates (epoch s) of every record the poller could publish, per topic short name."""

    def load(endpoint: str) -> list[dict[str, Any]]:
        with gzip.open(data_dir / f"{endpoint}.jsonl.gz", "rt") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    out = {
        "car_data": sorted(
            datetime.fromisoformat(r["date"]).timestamp()
            for r in load("car_data")
            if r.get("n_gear") is None or r["n_gear"] <= 8  # nGear > 8 goes to the dead letters
        ),
        "location": sorted(datetime.fromisoformat(r["date"]).timestamp() for r in load("location")),
        "laps": sorted(
            (datetime.fromisoformat(r["date_start"]) + timedelta(seconds=r["lap_duration"])).timestamp()
            for r in load("laps")
            if r.get("date_start") and r.get("lap_duration") is not None
        ),
    }
    return out


def describe(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    out: dict[str, Any] = {"n": len(values), "mean": float(arr.mean()), "min": float(arr.min())}
    for label, q in QUANTILES.items():
        out[label] = float(np.percentile(arr, q))
    out["max"] = float(arr.max())
    return out


def analyse(raw: dict[str, Any], fixture: dict[str, list[float]]) -> dict[str, Any]:
    """Lag per record; the window is [lights out, start of the last poll cycle] in source time."""
    offset = raw["offset_sim_minus_mono"]
    cycles = raw["cycles"]
    if not cycles:
        raise AssertionError(f"{raw['name']}: the poller ran no cycle")
    lights_out_sim = raw["run_started"] + offset  # the clock was created at lights out just before
    window_end_sim = cycles[-1]["start"] + offset
    steady_from_sim = cycles[0]["end"] + offset  # later records were fetched by cycle 2 or later
    lags: dict[str, list[float]] = {short: [] for short in TOPICS.values()}
    steady: dict[str, list[float]] = {short: [] for short in TOPICS.values()}
    poll_part: dict[str, list[float]] = {short: [] for short in TOPICS.values()}
    broker_part: dict[str, list[float]] = {short: [] for short in TOPICS.values()}
    in_window: Counter[str] = Counter()
    outside = 0
    for topic, value, received in raw["received"]:
        short = TOPICS[topic]
        source_sim = datetime.fromisoformat(json.loads(value)["Date"]).timestamp()
        if source_sim > window_end_sim:
            outside += 1
            continue
        in_window[short] += 1
        source_mono = source_sim - offset  # when the server's clock reached the source date
        lag = received - source_mono
        lags[short].append(lag)
        if source_sim >= steady_from_sim:
            steady[short].append(lag)
        handed = raw["produced"].get((topic, value))
        if handed is not None:
            poll_part[short].append(handed - source_mono)
            broker_part[short].append(received - handed)
    expected = {
        short: sum(1 for d in dates if lights_out_sim - 1 <= d <= window_end_sim)
        for short, dates in fixture.items()
    }
    complete = {short: in_window[short] == expected[short] for short in expected}
    everything = [x for v in lags.values() for x in v]
    everything_steady = [x for v in steady.values() for x in v]
    starts = [c["start"] for c in cycles]
    durations = [c["end"] - c["start"] for c in cycles]
    periods = [b - a for a, b in itertools.pairwise(starts)]
    server = raw["server"]
    elapsed = raw["run_ended"] - raw["run_started"]
    window = raw["rate_window_s"]
    return {
        "window": {
            "source_from": datetime.fromtimestamp(lights_out_sim, UTC).isoformat(),
            "source_to_s_after_lights_out": window_end_sim - lights_out_sim,
            "steady_from_s_after_lights_out": steady_from_sim - lights_out_sim,
            "records_counted": dict(in_window),
            "records_after_window": outside,
            "expected_from_fixture": expected,
            "complete": complete,
        },
        "lag_s": {**{short: describe(v) for short, v in lags.items()}, "overall": describe(everything)},
        "lag_steady_s": {
            **{short: describe(v) for short, v in steady.items()},
            "overall": describe(everything_steady),
        },
        "lag_poll_part_s": {short: describe(v) for short, v in poll_part.items()},
        "lag_broker_part_s": {short: describe(v) for short, v in broker_part.items()},
        "cycles": {
            "count": len(cycles),
            "duration_s": describe(durations),
            "duration_s_after_first": describe(durations[1:]),
            "period_s": describe(periods),
            "fetches_per_cycle": describe([c["fetches"] for c in cycles]),
            "http_requests_per_cycle": describe([c["http_requests"] for c in cycles]),
            "first_cycle_started_s_after_start": cycles[0]["start"] - raw["run_started"],
            "first_cycle_s": durations[0],
        },
        "requests": {
            "server_total": server["total"],
            "by_status": server["by_status"],
            "status_429": server["by_status"].get("429", 0),
            "client_http_requests": raw["client_http_requests"],
            "run_wall_s": elapsed,
            "req_per_s_over_run": server["total"] / elapsed,
            "req_per_s_first_to_last": server["total"] / server["first_to_last_request_s"],
            "limit_req_per_s": raw["rate_limit"] / window,
            "max_in_window": server["max_in_window"],
            "max_in_window_answered": server["max_in_window_answered"],
            "limit_per_window": raw["rate_limit"],
            "window_s": window,
            "by_endpoint": server["by_endpoint"],
            "records_served": server["records_served"],
        },
    }


# ---------------------------------------------------------------- report
def fmt(x: float | None, width: int = 7, digits: int = 2) -> str:
    return f"{x:>{width}.{digits}f}" if x is not None else f"{'-':>{width}}"


def print_report(res: dict[str, Any]) -> None:
    cfgs = res["configs"]
    print()
    print(
        f"live ingest lag, {res['config']['seconds_per_config']:.0f} s per configuration from lights "
        f"out, poll interval {res['config']['poll_interval_s']:g} s, {res['machine']['cpu_count']} CPUs"
    )
    head = f"{'config':<26} {'topic':<9} {'n':>6} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max s':>7}"
    print(head + f" {'steady p99':>10}")
    print("-" * (len(head) + 11))
    for cfg in cfgs:
        label = f"{cfg['name']} ({cfg['rate_limit']}/{cfg['rate_window_s']:g}s)"
        for topic in [*TOPICS.values(), "overall"]:
            s = cfg["analysis"]["lag_s"][topic]
            st = cfg["analysis"]["lag_steady_s"][topic]
            print(
                f"{label:<26} {topic:<9} {s['n']:>6} {fmt(s.get('p50'))} {fmt(s.get('p95'))} "
                f"{fmt(s.get('p99'))} {fmt(s.get('max'))} {fmt(st.get('p99'), 10)}"
            )
            label = ""
    print("-" * (len(head) + 11))
    for cfg in cfgs:
        a = cfg["analysis"]
        r, c = a["requests"], a["cycles"]
        print(
            f"{cfg['name']}: {r['server_total']} requests in {r['run_wall_s']:.0f} s = "
            f"{r['req_per_s_over_run']:.2f} req/s (limit {r['limit_req_per_s']:.2f}); max in any "
            f"{r['window_s']:g} s window {r['max_in_window']}, {r['max_in_window_answered']} without "
            f"429s (limit {r['limit_per_window']}); 429s {r['status_429']}"
        )
        print(
            f"  {c['count']} poll cycles of {c['fetches_per_cycle']['mean']:.0f} requests: duration p50 "
            f"{c['duration_s']['p50']:.2f} s, max {c['duration_s']['max']:.2f} s; period p50 "
            f"{c['period_s'].get('p50', float('nan')):.2f} s; first cycle {c['first_cycle_s']:.2f} s"
        )
        pp, bp = a["lag_poll_part_s"]["car_data"], a["lag_broker_part_s"]["car_data"]
        print(
            f"  car_data lag split: source -> produce call p50 {pp.get('p50', float('nan')):.2f} s, "
            f"p99 {pp.get('p99', float('nan')):.2f} s; produce call -> consumer p50 "
            f"{bp.get('p50', float('nan')) * 1000:.0f} ms, p99 {bp.get('p99', float('nan')) * 1000:.0f} ms"
        )
        w = a["window"]
        print(
            f"  counted records with source date <= {w['source_to_s_after_lights_out']:.1f} s after lights "
            f"out: {w['records_counted']} (fixture: {w['expected_from_fixture']}, complete: "
            f"{all(w['complete'].values())})"
        )
    print("-" * (len(head) + 11))
    for topic, ratio in res["summary"]["ratio_p99"].items():
        print(f"p99 lag ratio {topic:<9} measured / reference: {fmt(ratio, 6, 1)}x")


def polling_result(
    results: list[dict[str, Any]], args: argparse.Namespace, argv: list[str] | None, seconds: float
) -> dict[str, Any]:
    """The polling runs' result (the file's existing format)."""
    measured, reference = results
    ratio_p99 = {}
    for topic in [*TOPICS.values(), "overall"]:
        m = measured["analysis"]["lag_s"][topic].get("p99")
        r = reference["analysis"]["lag_s"][topic].get("p99")
        ratio_p99[topic] = m / r if m is not None and r else None
    per_cycle = 2 + len(live.POLLED)  # stints + pit, then every polled endpoint once per session
    summary = {
        "ratio_p99": ratio_p99,
        "ratio_p50_overall": (
            measured["analysis"]["lag_s"]["overall"]["p50"] / reference["analysis"]["lag_s"]["overall"]["p50"]
        ),
        "requests_per_cycle_model": per_cycle,
        "min_cycle_s_at_limit_model": per_cycle * args.rate_window / args.rate_limit,
    }
    machine = machine_info()
    for dist in ("httpx", "uvicorn", "numpy"):
        try:
            machine[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            machine[dist] = None
    result = {
        "benchmark": "live_lag",
        "command": " ".join(["python", "bench/live_lag.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine,
        "fixture": {
            "path": str(DEFAULT_DATA_DIR.relative_to(REPO_ROOT)),
            "event": json.loads((DEFAULT_DATA_DIR / "MANIFEST.json").read_text())["event"],
        },
        "config": {
            "seconds_per_config": seconds,
            "poll_interval_s": args.poll_interval,
            "rate_window_s": args.rate_window,
            "measured_rate_limit": args.rate_limit,
            "reference_rate_limit": args.reference_rate_limit,
            "clock": "SimClock speed 1 from lights out",
            "broker": "tansu (memory storage, embedded, loopback)",
            "lag": "consumer receive (monotonic) - time the server clock reached the record's Date",
            "consumer": {"fetch.wait.max.ms": 10, "fetch.min.bytes": 1},
        },
        "configs": results,
        "summary": summary,
    }
    return result


def analyse_push(raw: dict[str, Any]) -> dict[str, Any]:
    """Lag from the MQTT publish to the raw topic, per topic and overall; the raw lists dropped."""
    lags = raw.pop("lags")
    out = dict(raw)
    out["lag_s"] = {
        **{t: describe(v) for t, v in lags.items()},
        "overall": describe([x for v in lags.values() for x in v]),
    }
    out["lag"] = "consumer receive (monotonic) - hand-over to the MQTT publisher (monotonic)"
    return out


def print_push(result: dict[str, Any]) -> None:
    """The push run, and before (polling at the measured limit) -> after (push)."""
    push = result.get("push")
    if not push:
        return
    print(f"push (mosquitto, recorded pace, safety-net poll every {push['push_poll_interval_s']:g} s):")
    for topic, s in push["lag_s"].items():
        print(
            f"  {topic:<9} n {s['n']:>6}  p50 {fmt(s.get('p50'))}  p95 {fmt(s.get('p95'))}  p99 {fmt(s.get('p99'))}  max {fmt(s.get('max'))}"
        )
    print(f"  push counters: {push['result']['push']}; dead letters {push['result']['dead_letters']}")
    measured = next((c for c in result.get("configs", []) if c["name"] == "measured"), None)
    if measured is not None:
        before, after = measured["analysis"]["lag_s"]["overall"], push["lag_s"]["overall"]
        limit = f"{measured['rate_limit']}/{measured['rate_window_s']:g} s"
        print(
            f"before -> after: polling at {limit} lag p50 {before['p50']:.2f} s / p99 {before['p99']:.2f} s "
            f"-> push p50 {after['p50']:.3f} s / p99 {after['p99']:.3f} s"
        )


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--minutes", type=float, default=2.5, help="wall time of EACH configuration (default 2.5)"
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=OPENF1_RATE_LIMIT,
        help="requests per window, client and server (OpenF1: 30)",
    )
    parser.add_argument(
        "--rate-window", type=float, default=OPENF1_RATE_WINDOW_S, help="rate window, s (OpenF1: 10)"
    )
    parser.add_argument(
        "--reference-rate-limit",
        type=int,
        default=1000,
        help="requests per window of the reference (lifted limit; 1000 does not bind at 1 s polls)",
    )
    parser.add_argument("--poll-interval", type=float, default=1.0, help="LiveSettings.poll_interval_s")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    parser.add_argument(
        "--mode", choices=("both", "poll", "push"), default="both", help="polling runs, the push run, or both"
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    seconds = args.minutes * 60
    fixture = fixture_dates(DEFAULT_DATA_DIR)

    configs = [
        ("measured", args.rate_limit),
        ("reference", args.reference_rate_limit),
    ]
    if args.mode == "push":
        configs = []
    raws: list[dict[str, Any]] = []
    push_raw: dict[str, Any] | None = None
    port = free_port()
    with EmbeddedBroker(port=port) as broker:
        print(f"Tansu broker on {broker.address}", flush=True)
        client = admin.connect(broker.address)
        try:
            admin.create_topics(client)
        finally:
            client.close()
        watcher = TopicWatcher(broker.address)
        watcher.start()
        try:
            for name, limit in configs:
                raws.append(
                    run_config(
                        name, broker.address, watcher, limit, args.rate_window, args.poll_interval, seconds
                    )
                )
            if args.mode != "poll":
                with tempfile.TemporaryDirectory() as folder:
                    push_raw = run_push(
                        broker.address, watcher, seconds, args.rate_limit, args.rate_window, Path(folder)
                    )
        finally:
            watcher.stop()
    if watcher.errors:
        print(f"consumer errors: {watcher.errors[:5]}", flush=True)

    results = []
    for raw in raws:
        analysis = analyse(raw, fixture)
        results.append(
            {
                k: v
                for k, v in raw.items()
                if k not in ("cycles", "produced", "received", "run_started", "run_ended", "stop_requested")
            }
            | {
                "stop_requested_s_after_start": (
                    raw["stop_requested"] - raw["run_started"] if raw["stop_requested"] else None
                ),
                "cycle_log": [
                    {
                        "start_s": c["start"] - raw["run_started"],
                        "duration_s": c["end"] - c["start"],
                        "fetches": c["fetches"],
                        "http_requests": c["http_requests"],
                        "new_records": c["new_records"],
                    }
                    for c in raw["cycles"]
                ],
                "analysis": analysis,
            }
        )
    push = analyse_push(push_raw) if push_raw is not None else None
    if push is not None:
        push["machine"] = machine_info()
    if not results:  # push only: keep the polling figures of the file
        result = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "live_lag"}
        result["push"] = push
        result["push_command"] = " ".join(
            ["python", "bench/live_lag.py", *(argv if argv is not None else sys.argv[1:])]
        )
    else:
        result = polling_result(results, args, argv, seconds)
        if push is not None:
            result["push"] = push
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if results:
        print_report(result)
    print_push(result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
