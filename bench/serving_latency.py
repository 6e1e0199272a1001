"""BentoML services over HTTP vs the same models called in-process, in the same run.

    python bench/serving_latency.py [--single 300] [--batch-rows 500] [--batches 20] [--seconds 5]

1. Champions: by default every served model is trained small (40 trees, tests/bentos_support.py:
   2023 Bahrain trains, 2024 Bahrain validates), registered in a temp MLflow registry and imported
   into a temp BentoML store; ``--registry`` uses the ``@champion`` of STRATX_MLFLOW_URI instead.
2. Starts every service as ``stratx serve`` does (one ``bentoml serve`` process per model, its own
   port) and waits for ``/readyz``.
3. Per model, with real LapFeatures rows of 2024 Bahrain (pit_window: plus EventName):
   * **single**: ``--single`` sequential 1-row ``POST /predict`` on a kept-alive connection, p50/p99;
     reference: ``recipe.predict`` on the same 1-row frame in this process (ratio = overhead).
   * **client batch**: ``--batches`` x ``POST /predict`` of ``--batch-rows`` rows, predictions/s;
     reference: ``recipe.predict`` on the same frames in-process.
   * **adaptive batching**: ``--clients`` threads send 1-row ``POST /predict_rows`` for
     ``--seconds`` s; BentoML merges them (mean batch size from ``/metrics``), predictions/s.
4. RSS of every service's process tree (BentoML's supervisor + worker), each and together.

JSON to bench/results/serving_latency.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
from replay_throughput import REPO_ROOT, result_header

sys.path.insert(0, str(REPO_ROOT))  # tests.bentos_support: the small champions the tests use

from stratx.bentos.kit import serving
from stratx.bentos.kit.serving_schemas import SCHEMAS
from stratx.bentos.lifecycle import serve, sources
from stratx.functions.settings import ServingSettings
from stratx.quix_apps.kit.broker import free_port
from tests import bentos_support as support

DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "serving_latency.json"
TARGET_P99_MS = 10.0
TARGET_PREDICTIONS_S = 2000.0


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def timed(call: Callable[[], Any], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def in_process(key: str, rows: list[dict[str, Any]]) -> Callable[[], Any]:
    """``recipe.predict`` on the frame of ``rows`` (the frame is built once, outside the timing)."""
    import bentoml

    served = serving.load_served(bentoml.models.get(serving.bento_tag(key)), key)
    frame, _ = serving.recipe_rows(
        key, serving.rows_frame([SCHEMAS[key].row.model_validate(r) for r in rows])
    )
    return lambda: served.recipe.predict(served.bundle, frame)


def post(client: httpx.Client, route: str, rows: list[dict[str, Any]]) -> Any:
    response = client.post(route, json={"rows": rows})
    if response.status_code != 200:
        raise RuntimeError(f"{route}: {response.status_code} {response.text[:300]}")
    return response.json()


def adaptive(url: str, pool: list[dict[str, Any]], clients: int, seconds: float) -> dict[str, float]:
    """``clients`` threads posting 1-row requests to /predict_rows for ``seconds``."""
    done, errors = [0] * clients, [0] * clients
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            j = i
            while time.monotonic() < stop:
                response = client.post("/predict_rows", json={"rows": [pool[j % len(pool)]]})
                if response.status_code == 200:
                    done[i] += 1
                else:
                    errors[i] += 1
                j += clients

    before = batch_stats(url)
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    after = batch_stats(url)
    calls = after[1] - before[1]
    return {
        "clients": clients,
        "requests": sum(done),
        "errors": sum(errors),
        "seconds": elapsed,
        "predictions_per_s": sum(done) / elapsed,
        "model_calls": calls,
        "mean_batch_size": (after[0] - before[0]) / calls if calls else float("nan"),
    }


def batch_stats(url: str) -> tuple[float, float]:
    """(sum, count) of BentoML's adaptive_batch_size histogram (rows per model call)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text

    def total(suffix: str) -> float:
        found = re.findall(rf"bentoml_service_adaptive_batch_size_{suffix}\{{[^}}]*\}} (\S+)", text)
        return sum(float(v) for v in found)

    return total("sum"), total("count")


def rss_mb(process: psutil.Process) -> float:
    tree = [process, *process.children(recursive=True)]
    return sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20


def bench_model(key: str, url: str, laps: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    pool = support.request_rows(key, laps[laps["Year"] == 2024], n=args.batch_rows)
    with httpx.Client(base_url=url, timeout=30) as client:
        one = pool[:1]
        http_single = percentiles(timed(lambda: post(client, "/predict", one), args.single))
        ref_single = percentiles(timed(in_process(key, one), args.single))
        started = time.perf_counter()
        for _ in range(args.batches):
            post(client, "/predict", pool)
        http_batch_s = time.perf_counter() - started
    reference = in_process(key, pool)
    reference()
    started = time.perf_counter()
    for _ in range(args.batches):
        reference()
    ref_batch_s = time.perf_counter() - started
    predictions = args.batches * len(pool)
    out = {
        "single": {
            "http": http_single,
            "in_process": ref_single,
            "p50_ratio": http_single["p50_ms"] / ref_single["p50_ms"],
            "p99_ratio": http_single["p99_ms"] / ref_single["p99_ms"],
            "http_overhead_p50_ms": http_single["p50_ms"] - ref_single["p50_ms"],
        },
        "client_batch": {
            "rows_per_request": len(pool),
            "http_predictions_per_s": predictions / http_batch_s,
            "in_process_predictions_per_s": predictions / ref_batch_s,
            "ratio": ref_batch_s / http_batch_s,
        },
        "adaptive_batching": adaptive(url, pool, args.clients, args.seconds),
    }
    out["targets"] = {
        "single_p99_ms<=10": http_single["p99_ms"] <= TARGET_P99_MS,
        "batched_predictions_per_s>=2000": max(
            out["client_batch"]["http_predictions_per_s"], out["adaptive_batching"]["predictions_per_s"]
        )
        >= TARGET_PREDICTIONS_S,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=300, help="timed 1-row requests per model")
    parser.add_argument("--batch-rows", type=int, default=500, help="rows per client batch")
    parser.add_argument("--batches", type=int, default=20, help="timed client batches per model")
    parser.add_argument("--clients", type=int, default=32, help="concurrent 1-row clients (adaptive)")
    parser.add_argument("--seconds", type=float, default=5.0, help="adaptive-batching run per model")
    parser.add_argument("--registry", action="store_true", help="serve STRATX_MLFLOW_URI's champions")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="stratx-serving-bench-") as tmp:
        folder = Path(tmp)
        with support.bentoml_home(folder / "bentoml"):
            if args.registry:
                conf = ServingSettings()
                keys = [k for k in serve.served_keys() if _imported(conf, k)]
                laps = support.corpus().laps
                failed: dict[str, str] = {}
            else:
                champions = support.train_and_import(folder / "registry")
                keys, laps, failed = list(champions.tags), champions.corpus.laps, champions.failed
            ports = {f"{k}_port": free_port() for k in keys}
            settings = ServingSettings(serve_start_timeout_s=180, **ports)  # type: ignore[arg-type]
            started = time.perf_counter()
            with serve.services(keys, settings, log_dir=folder) as running:
                ready_s = time.perf_counter() - started
                results = {}
                for r in running:
                    print(f"{r.key}: benchmarking {r.url}", file=sys.stderr)
                    results[r.key] = bench_model(r.key, r.url, laps, args)
                    results[r.key]["rss_mb"] = rss_mb(psutil.Process(r.process.pid))
                total_rss = sum(v["rss_mb"] for v in results.values())

    race_dir = support.RACES[1]
    report = {
        **result_header("serving_latency", argv, sources.load_bundled(race_dir), race_dir),
        "champions": "registry @champion" if args.registry else "small (40 trees, tests/bentos_support.py)",
        "not_served": failed,
        "services_ready_s": ready_s,
        "models": results,
        "rss_mb_total": total_rss,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results, total_rss)
    return 0


def _imported(settings: ServingSettings, key: str) -> bool:
    try:
        serving.import_champion(settings, key, settings.model_alias)
    except ValueError as exc:
        print(f"{key}: skipped ({exc})", file=sys.stderr)
        return False
    return True


def print_table(results: dict[str, Any], total_rss: float) -> None:
    print(f"{'model':<11} {'http p50':>9} {'p99':>7} {'in-proc p50':>11} {'p99':>7} {'batch/s':>9} "
          f"{'in-proc/s':>10} {'adaptive/s':>10} {'mean batch':>10} {'RSS MB':>7}")  # fmt: skip
    for key, r in results.items():
        s, b, a = r["single"], r["client_batch"], r["adaptive_batching"]
        print(
            f"{key:<11} {s['http']['p50_ms']:>8.2f}m {s['http']['p99_ms']:>6.2f}m "
            f"{s['in_process']['p50_ms']:>10.2f}m {s['in_process']['p99_ms']:>6.2f}m "
            f"{b['http_predictions_per_s']:>9,.0f} {b['in_process_predictions_per_s']:>10,.0f} "
            f"{a['predictions_per_s']:>10,.0f} {a['mean_batch_size']:>10.1f} {r['rss_mb']:>7.0f}"
        )
    print(f"RSS of the services together: {total_rss:.0f} MB; median single p99 "
          f"{statistics.median(r['single']['http']['p99_ms'] for r in results.values()):.2f} ms")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
