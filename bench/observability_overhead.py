"""Overhead of metrics and schema validation on the replay's throughput, all four ways in one run.

    python bench/observability_overhead.py [--race data/races/2023_las_vegas_grand_prix_race] [--repeat N]

The same race is replayed at max speed (``replay.run``, ``speed=0``) under four settings:

* ``full``: metrics on (``STRATX_METRICS_ENABLED``, the default) and validation on
  (``STRATX_REPLAY_VALIDATE``, the default): what ``stratx replay`` does;
* ``metrics_off``: validation only;
* ``validation_off``: metrics only (records are published as the source rows, no schema checks,
  so the rejected records go out as records instead of dead letters);
* ``bare``: neither, the reference.

Each run gets a fresh embedded Tansu broker (Tansu keeps every message in memory), and the order of
the four settings rotates from repeat to repeat so none always runs first. While a metrics-on run
replays, a thread scrapes the replay's /metrics exporter once a second (Prometheus scrapes every
5 s in compose), so the exposition cost is in the number too. Every run must publish the same
number of events, and the metrics-on runs' ``stratx_records_produced_total`` must grow by exactly
that number. Reported per setting (median of ``--repeat`` runs): events/s (wall clock) and events
per CPU-second of the replay process (its own CPU time: steadier than wall time on a shared
machine), each also as a ratio of ``bare``'s. The JSON result goes to bench/results/observability_overhead.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from replay_throughput import REPO_ROOT, resolve_race, result_header

from stratx.bentos.lifecycle.sources import load_bundled
from stratx.functions.settings import ReplaySettings
from stratx.quix_apps import replay
from stratx.quix_apps.kit import metrics
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port

DEFAULT_RACE = Path("data/races/2023_las_vegas_grand_prix_race")
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "observability_overhead.json"
SETTINGS: dict[str, dict[str, bool]] = {
    "full": {"metrics_enabled": True, "replay_validate": True},
    "metrics_off": {"metrics_enabled": False, "replay_validate": True},
    "validation_off": {"metrics_enabled": True, "replay_validate": False},
    "bare": {"metrics_enabled": False, "replay_validate": False},
}


class Scraper:
    """GETs ``url`` every ``interval_s`` in a thread while the block runs; counts the scrapes."""

    def __init__(self, url: str, interval_s: float = 1.0) -> None:
        self.url, self.interval_s = url, interval_s
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            urllib.request.urlopen(self.url, timeout=5).read()
            self.scrapes += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def produced_total() -> float:
    return sum(
        s.value
        for m in REGISTRY.collect()
        if m.name == "stratx_records_produced"
        for s in m.samples
        if s.name.endswith("_total") and s.labels.get("app") == replay.APP
    )


def one_run(race: Any, name: str, exporter_url: str, i: int) -> dict[str, Any]:
    flags = SETTINGS[name]
    with EmbeddedBroker(port=free_port()) as broker:
        settings = ReplaySettings(broker_address=broker.address, **flags)
        options = replay.ReplayOptions(speed=0, progress=False, replay_id=f"bench-{name}-{i}")
        before = produced_total()
        scraper = Scraper(exporter_url) if flags["metrics_enabled"] else None
        started, cpu_started = time.perf_counter(), time.process_time()
        if scraper is None:
            result = replay.run(race, settings, options)
        else:
            with scraper:
                result = replay.run(race, settings, options)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    counted = produced_total() - before
    if not result.finished:
        raise AssertionError(f"{name}: the replay did not finish")
    if flags["metrics_enabled"] and counted != result.total:
        raise AssertionError(f"{name}: counters say {counted}, the replay published {result.total}")
    if not flags["metrics_enabled"] and counted != 0:
        raise AssertionError(f"{name}: metrics off, yet the counters moved by {counted}")
    run = {
        "setting": name,
        **flags,
        "events": result.total,
        "dead_letters": result.dead_letters,
        "loop_s": result.elapsed_s,
        "wall_s": wall,
        "cpu_s": cpu,
        "events_per_s": result.total / result.elapsed_s,
        "events_per_cpu_s": result.total / cpu,
        "scrapes": scraper.scrapes if scraper is not None else 0,
    }
    print(
        f"  {name:15s} {run['events_per_s']:>10,.0f} ev/s {run['events_per_cpu_s']:>10,.0f} ev/CPU-s  ({result.total} events, "
        f"{result.dead_letters} dead letters, {run['scrapes']} scrapes)",
        flush=True,
    )
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--race", type=Path, default=DEFAULT_RACE, help="bundled race folder (data/races/...)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per setting; the median is reported")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    race_dir = resolve_race(args.race)
    race = load_bundled(race_dir)
    base = free_port()
    exporter = metrics.serve(replay.APP, ReplaySettings(metrics_port_base=base))
    if exporter is None:
        raise SystemExit(f"could not start the /metrics exporter on port {base}")
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    names = list(SETTINGS)
    runs: list[dict[str, Any]] = []
    for i in range(args.repeat):
        order = names[i % len(names) :] + names[: i % len(names)]  # rotate: none always runs first
        print(f"--- repeat {i + 1}/{args.repeat}: {', '.join(order)}", flush=True)
        runs += [one_run(race, name, url, i) for name in order]
    events = {r["events"] for r in runs}
    if len(events) != 1:
        raise AssertionError(f"the settings published different numbers of events: {sorted(events)}")
    median = {
        name: statistics.median(r["events_per_s"] for r in runs if r["setting"] == name) for name in names
    }
    per_cpu = {
        name: statistics.median(r["events_per_cpu_s"] for r in runs if r["setting"] == name) for name in names
    }
    summary = {
        "events": events.pop(),
        "events_per_s_median": median,
        "ratio_vs_bare": {name: median[name] / median["bare"] for name in names},
        "overhead_vs_bare_pct": {name: 100 * (1 - median[name] / median["bare"]) for name in names},
        "metrics_overhead_pct": 100 * (1 - median["full"] / median["metrics_off"]),
        "validation_overhead_pct": 100 * (1 - median["full"] / median["validation_off"]),
        # the replay process's own CPU time (its Python thread + librdkafka's threads; the broker
        # is another process): far less sensitive than wall time to other load on a shared machine
        "events_per_cpu_s_median": per_cpu,
        "cpu_ratio_vs_bare": {name: per_cpu[name] / per_cpu["bare"] for name in names},
        "cpu_metrics_overhead_pct": 100 * (1 - per_cpu["full"] / per_cpu["metrics_off"]),
        "cpu_validation_overhead_pct": 100 * (1 - per_cpu["full"] / per_cpu["validation_off"]),
    }
    result = {
        **result_header("observability_overhead", argv, race, race_dir),
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    exporter.close()
    print("\nmedian events/s (ratio vs bare) | events per CPU-second (ratio vs bare):")
    for name in names:
        print(
            f"  {name:15s} {median[name]:>10,.0f}  ({summary['ratio_vs_bare'][name]:.3f}) | "
            f"{per_cpu[name]:>10,.0f}  ({summary['cpu_ratio_vs_bare'][name]:.3f})"
        )
    print(
        f"wall: metrics cost {summary['metrics_overhead_pct']:.1f} %, validation "
        f"{summary['validation_overhead_pct']:.1f} %; CPU: metrics {summary['cpu_metrics_overhead_pct']:.1f} %, "
        f"validation {summary['cpu_validation_overhead_pct']:.1f} %"
    )
    print(f"wrote {args.out.relative_to(REPO_ROOT) if args.out.is_relative_to(REPO_ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
