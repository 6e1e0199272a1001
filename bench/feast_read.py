"""Point-in-time reads of every model's FeatureService through Feast's offline store, as
``stratx train`` does them, against the dask ``file`` store as the reference in the same run.

    python bench/feast_read.py [--table PARQUET] [--rows N] [--no-reference]

1. The lap-feature table: the bundled corpus built by the feature functions (what ``stratx train``
   writes; ~40 k driver-laps), or ``--table`` (a parquet in the offline store's layout, e.g. the
   135 k-row table of the more-data experiment, docs/models.md).
2. Two Feast stores on that parquet in temporary data dirs, the same ``feature_repo/`` definitions,
   the offline store once as configured (DuckDB) and once as ``file`` (Feast's dask store, the
   store before 0e61dcb). Each model's service is read back at every driver-lap's end (entity rows
   DriverNumber, SessionKey, event_timestamp), timed per service.
3. Parity: every cell of the configured store's answer against the reference's, as training
   checks its reads (``feast_training.parity``: numbers within 1e-9, nulls alike), but for the rows
   of a driver with two laps ending at the same instant (2 rows in the bundled corpus), which no
   point-in-time join can tell apart. A difference is a failure (exit 1).

JSON to bench/results/feast_read.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from replay_throughput import REPO_ROOT, machine_info, peak_rss_bytes

from stratx.bentos.kit import feature_store as fs
from stratx.bentos.kit.feature_store_frames import LAP_SCHEMA, append_parquet, table_frame
from stratx.bentos.lifecycle import feast_training, training
from stratx.functions import models

DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "feast_read.json"
PARQUET = "lap_features.parquet"
KEYS = ["DriverNumber", "SessionKey", "event_timestamp"]


def corpus_table(target: Path) -> int:
    """The bundled corpus's lap-feature table, built as ``stratx train`` builds it, at ``target``."""
    data_dir = REPO_ROOT / "data"
    laps = training.lap_table(training.corpus_races(data_dir), progress=True)
    append_parquet(table_frame(laps), target, LAP_SCHEMA)
    return len(laps)


def store_on(root: Path, table: Path, offline: str | None) -> Any:
    """A store of feature_repo/'s definitions on a copy of ``table``; ``offline``: another store type."""
    repo, data = root / "repo", root / "data"
    shutil.copytree(fs.FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    data.mkdir(parents=True)
    shutil.copy(table, data / PARQUET)
    if offline is not None:
        path = repo / "feature_store.yaml"
        text = path.read_text()
        configured = fs.repo_config(fs.FEATURE_REPO, data).offline_store.type
        path.write_text(
            text.replace(f"offline_store:\n  type: {configured}", f"offline_store:\n  type: {offline}")
        )
    store = fs.open_store(repo, data)
    fs.apply_repo(store, repo)
    return store


def read_all(store: Any, entities: pd.DataFrame, services: list[str], label: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in services:
        started = time.perf_counter()
        frame = fs.historical_features(store, name, entities)
        seconds = time.perf_counter() - started
        out[name] = {"seconds": seconds, "frame": frame}
        print(f"{label} {name}: {len(frame)} rows x {frame.shape[1]} columns in {seconds:.1f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--table", type=Path, help="lap-feature parquet (default: build the bundled corpus)")
    parser.add_argument("--rows", type=int, default=0, help="read this many entity rows (sampled; 0: all)")
    parser.add_argument("--no-reference", action="store_true", help="skip the dask file store")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    services = [models.recipe(k).feature_service for k in models.available()]
    with tempfile.TemporaryDirectory(prefix="stratx-feast-bench-") as tmp:
        root = Path(tmp)
        table = args.table or root / PARQUET
        built = None if args.table else corpus_table(table)
        entities = pd.read_parquet(table, columns=KEYS)
        if args.rows:
            entities = entities.sample(min(args.rows, len(entities)), random_state=0)
        entities = entities.reset_index(drop=True)
        configured = store_on(root / "configured", table, None)
        kind = configured.config.offline_store.type
        ours = read_all(configured, entities, services, kind)
        reference = (
            {}
            if args.no_reference
            else read_all(store_on(root / "ref", table, "file"), entities, services, "file")
        )
    # a driver with two laps ending at the same instant: no point-in-time join can tell them apart,
    # and each store returns one of the two (feast_training.read_service keeps the built values)
    ambiguous = entities.duplicated(KEYS, keep=False).to_numpy()
    per_service: dict[str, Any] = {}
    failed = False
    for name in services:
        row: dict[str, Any] = {"seconds": ours[name]["seconds"]}
        if name in reference:
            a, b = (side[name]["frame"][~ambiguous].reset_index(drop=True) for side in (ours, reference))
            cells = feast_training.parity(a, b, list(a.columns), name).mismatched_cells
            failed |= cells > 0
            row |= {
                "reference_seconds": reference[name]["seconds"],
                "speedup": reference[name]["seconds"] / ours[name]["seconds"],
                "differing_cells": cells,
                "cells": int(ours[name]["frame"].size),
            }
        per_service[name] = row
    total = sum(r["seconds"] for r in per_service.values())
    ref_total = sum(r.get("reference_seconds", 0.0) for r in per_service.values())
    result = {
        "benchmark": "feast_read",
        "command": " ".join(["python", "bench/feast_read.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "table": {"path": str(args.table) if args.table else "bundled corpus", "built_rows": built},
        "entity_rows": len(entities),
        "ambiguous_rows_not_compared": int(ambiguous.sum()),
        "offline_store": kind,
        "reference_store": None if args.no_reference else "file (dask)",
        "services": per_service,
        "total_seconds": total,
        "reference_total_seconds": ref_total or None,
        "speedup": ref_total / total if ref_total else None,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    vs = f"; file store {ref_total:.1f} s ({ref_total / total:.1f}x)" if ref_total else ""
    print(f"{len(entities)} entity rows, {len(services)} services: {kind} {total:.1f} s{vs} -> {args.out}")
    if failed:
        print("PARITY FAILED: the stores answer differently", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
