"""Training time of all five models on the bundled corpus, and in-process prediction throughput.

    python bench/train_time.py [--models lap_time,tyre_deg] [--repeat-predict 5]

1. Builds the offline corpus once (bundled races + the 37-race FastF1 corpus, lap features,
   telemetry windows where a recipe needs them) and reports that time apart: `stratx train`
   spends it once for all models.
2. Fits each model's recipe with the default race split, exactly as `stratx train` does but
   without MLflow (logging is reported apart by `stratx train`), and times it. Target: the five
   fits together <= 180 s on 2 cores.
3. Scores each fitted bundle on the test races (``recipe.evaluate``) and uses the scored rows as
   input for the prediction benchmark: batched ``recipe.predict`` over all rows (rows/s) and
   single-row calls (p50/p99 latency). Reference in the same run: the batched call, so the
   single-row ratio is the per-call overhead a service pays without batching.

JSON to bench/results/train_time.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from replay_throughput import REPO_ROOT, machine_info, peak_rss_bytes

from stratx.bentos.lifecycle import training
from stratx.functions import models
from stratx.functions.models import base

DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "train_time.json"
TARGET_TOTAL_FIT_S = 180.0
SINGLE_ROWS = 200


def predict_rates(recipe: base.Recipe, bundle: base.ModelBundle, rows: Any, repeat: int) -> dict[str, Any]:
    batch_s = []
    for _ in range(repeat):
        started = time.perf_counter()
        recipe.predict(bundle, rows)
        batch_s.append(time.perf_counter() - started)
    single = []
    for i in range(min(SINGLE_ROWS, len(rows))):
        one = rows.iloc[[i]]
        started = time.perf_counter()
        recipe.predict(bundle, one)
        single.append(time.perf_counter() - started)
    single.sort()
    batch = statistics.median(batch_s)
    p50 = statistics.median(single)
    p99 = single[min(len(single) - 1, int(0.99 * len(single)))]
    return {
        "rows": len(rows),
        "batch_seconds_median": batch,
        "batch_rows_per_s": len(rows) / batch if batch else None,
        "single_row_p50_ms": p50 * 1000,
        "single_row_p99_ms": p99 * 1000,
        "single_vs_batch_per_row_cost_ratio": p50 / (batch / len(rows)) if batch else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", default="all", help="comma-separated model keys (default: all built)")
    parser.add_argument("--repeat-predict", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    keys = models.available() if args.models == "all" else args.models.split(",")
    recipes = [models.recipe(k) for k in keys]
    progress = not args.no_progress
    data_dir = REPO_ROOT / "data"

    started = time.perf_counter()
    races = training.corpus_races(data_dir)
    corpus = training.build_corpus(
        races,
        progress,
        windows=any(r.needs_windows for r in recipes),
        results_files=training.default_results_files(data_dir),
        data_dir=data_dir,
    )
    corpus_s = time.perf_counter() - started
    test = corpus.only(lambda f: base.race_split(f) == "test")
    print(f"corpus: {len(races)} races, {len(corpus.laps)} driver-laps in {corpus_s:.1f} s", flush=True)

    per_model: dict[str, Any] = {}
    for recipe in recipes:
        started = time.perf_counter()
        bundle, val = recipe.fit(corpus, base.race_split, progress)
        fit_s = time.perf_counter() - started
        evaluation = recipe.evaluate(bundle, test)
        rows = evaluation.scored.copy()
        rows.attrs = {}  # the card's tables ride in attrs; pandas deep-copies attrs on every operation
        rates = predict_rates(recipe, bundle, rows, args.repeat_predict)
        per_model[recipe.key] = {
            "fit_seconds": fit_s,
            "selection_metric": recipe.selection_metric,
            "selection_value": val.get(recipe.selection_metric),
            "predict": rates,
        }
        print(
            f"{recipe.key}: fit {fit_s:.1f} s; predict {rates['batch_rows_per_s']:.0f} rows/s batched, "
            f"single row p50 {rates['single_row_p50_ms']:.2f} ms / p99 {rates['single_row_p99_ms']:.2f} ms",
            flush=True,
        )
    total = sum(m["fit_seconds"] for m in per_model.values())
    result = {
        "benchmark": "train_time",
        "command": " ".join(["python", "bench/train_time.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "corpus": {"races": len(races), "driver_laps": len(corpus.laps), "build_seconds": corpus_s},
        "models": per_model,
        "total_fit_seconds": total,
        "target_total_fit_seconds": TARGET_TOTAL_FIT_S,
        "total_fit_vs_target_ratio": total / TARGET_TOTAL_FIT_S,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    verdict = "met" if total <= TARGET_TOTAL_FIT_S else "NOT met"
    print(f"all fits: {total:.1f} s (target <= {TARGET_TOTAL_FIT_S:.0f} s: {verdict}) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
