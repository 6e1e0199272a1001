"""Several apps set up one fresh Feast store at the same moment (the quickstart starts the lap and
aggression apps together): every one must succeed and the registry must hold each object once.

Before the inter-process lock in ``feature_store.registry_lock`` about half of such starts failed
with "table saved_datasets already exists" or a UNIQUE constraint on the SQL registry (measured:
5 of 8 pairs), which crashed the aggression app in the quickstart.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from stratx.functions.settings import FeatureAppSettings
from stratx.quix_apps.kit import feature_store as fs

pytestmark = pytest.mark.integration
PROCESSES = 3
ROUNDS = 4


def _set_up(data_dir: str, go_at: float, results: multiprocessing.Queue[str]) -> None:
    settings = FeatureAppSettings(feast_data_dir=Path(data_dir))
    while time.time() < go_at:  # start the applies together, after the imports
        time.sleep(0.001)
    try:
        fs.setup_store(settings)
        results.put("ok")
    except Exception as exc:  # reported to the test, which fails on it
        results.put(f"{type(exc).__name__}: {exc}"[:300])


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_simultaneous_setups_of_a_fresh_store_all_succeed(tmp_path: Path, round_: int) -> None:
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[str] = ctx.Queue()
    go_at = time.time() + 1.0
    procs = [ctx.Process(target=_set_up, args=(str(tmp_path), go_at, results)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert outcomes == ["ok"] * PROCESSES, outcomes
    store = fs.open_store(fs.FEATURE_REPO, tmp_path)
    names = [fv.name for fv in store.list_feature_views()]
    assert names and len(names) == len(set(names)), names
    assert {fv.name for fv in store.list_feature_views()} == {
        o.name for o in fs.load_definitions(fs.FEATURE_REPO) if isinstance(o, fs.FeatureView)
    }
