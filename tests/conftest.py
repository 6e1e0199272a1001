"""Shared fixtures: the bundled real races, the small trained champions and, for the integration
tier, a real broker."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from authlib.deprecate import AuthlibDeprecationWarning

from stratx.bentos.lifecycle import sources
from stratx.functions.racedata import RaceData
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port

if TYPE_CHECKING:
    from tests.bentos_support import Champions

# authlib (imported by quixstreams) forces its deprecation warnings to "always" at import time
warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "data"
BAHRAIN_2023 = DATA_DIR / "races" / "2023_bahrain_grand_prix_race"
LAS_VEGAS_2023 = DATA_DIR / "races" / "2023_las_vegas_grand_prix_race"


# `make test` runs on two pytest-xdist workers (`-n 2 --dist loadscope --no-loadscope-reorder`) with
# the scheduler below. Each module is one work unit on one worker (its module fixtures are set up
# once); the modules that start a whole `stratx up` stack on the configured ports are one unit, so
# two stacks never race for the same ports; each test of SPLIT_MODULES is a unit of its own (they
# share no module fixture, and each takes minutes). Units go out longest first (LONGEST_FIRST,
# measured with `make test PYTEST_ADDOPTS=--durations=80`), then the rest in collection order, so
# no minutes-long module starts last while the other worker sits idle. (xdist's own `loadgroup`
# cannot do it on pytest 9: it renames `item._nodeid`, which pytest 9 no longer reads.)
STACK_MODULES = {
    "tests.quix_apps.test_up_command",
    "tests.quix_apps.test_backtest_stream",
    "tests.quix_apps.test_cli_demo",
}
SPLIT_MODULES = {"tests.quix_apps.test_prediction_pipeline"}
LONGEST_FIRST = (  # work units, slowest first (seconds on 2 busy cores, 2026-12-07, after 8081da5)
    "stack",  # up 69 + backtest slice 87 + demo 50 (+ set-up)
    "tests.quix_apps.test_prediction_pipeline::"
    "test_every_driver_lap_is_predicted_once_by_each_model_through_a_service_outage",  # 133
    "tests.quix_apps.test_fault_tolerance",  # 127
    "tests.quix_apps.test_drift_job",  # 113
    "tests.quix_apps.test_fault_tolerance_windows",  # 112
    "tests.quix_apps.test_prediction_pipeline::test_a_replay_run_twice_gives_identical_predictions",  # 93
    "tests.quix_apps.test_lap_features_parity",  # 82
    "tests.bentos.test_feature_build",  # 56
    "tests.quix_apps.test_track_gaps_app",  # 52
    "tests.quix_apps.test_live_openf1",  # 52
    "tests.quix_apps.kit.test_kafka_security",  # 45
    "tests.bentos.test_data_quality",  # 39
    "tests.quix_apps.test_replay_roundtrip",  # 38
    "tests.quix_apps.test_retirements_stream",  # 36
    "tests.quix_apps.test_resume",  # 35
    "tests.quix_apps.test_metrics_scrape",  # 34
    "tests.quix_apps.test_drift_races",  # 33
    "tests.quix_apps.test_live_track_gaps",  # 31
    "tests.functions.test_race_state",  # 23
    "tests.panel_app.test_dashboard_browser",  # 20
    "tests.bentos.test_bentos_serve",  # 20
)


def work_unit(nodeid: str) -> str:
    """The work unit of a test, from its node id alone (the scheduler sees only node ids)."""
    path, _, rest = nodeid.partition("::")
    module = path.removesuffix(".py").replace("/", ".")
    if module in STACK_MODULES:
        return "stack"
    if module in SPLIT_MODULES:
        return f"{module}::{rest.split('[')[0]}"
    return module


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadscope` (what `make test` asks for) gets the work units above; other modes are xdist's."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return UnitScheduling(config, log)  # type: ignore[arg-type]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # a stable sort: within a unit and among the unranked units the collection order stays
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))


@pytest.fixture(scope="session")
def las_vegas() -> RaceData:
    """2023 Las Vegas GP, the smallest bundled real race (~1.0 M events)."""
    return sources.load_bundled(LAS_VEGAS_2023)


@pytest.fixture(scope="session")
def bahrain() -> RaceData:
    return sources.load_bundled(BAHRAIN_2023)


@pytest.fixture(scope="session")
def trained_champions(tmp_path_factory: pytest.TempPathFactory) -> Champions:
    """Every served model trained small on real laps (tests/bentos_support.py), registered as
    ``@champion`` in one temp MLflow registry and imported into one temp BentoML store, once per
    session; the fits come from tests/artifacts/ when their inputs have not changed. Read-only for
    tests: a module enters ``bentos_support.bentoml_home(champions.home)`` for its own scope."""
    from tests import bentos_support as support  # MLflow and BentoML only for the tests using it

    folder = tmp_path_factory.mktemp("champions")
    with support.bentoml_home(folder / "bentoml"):
        return support.train_and_import(folder / "registry")


@pytest.fixture(scope="session")
def broker_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Tansu broker on a free loopback port for the whole test session."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker("127.0.0.1", free_port(), log_path=log) as broker:
        yield broker.address


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real broker for one test module whose apps or records would leak into the shared one
    (tests that read whole topics, e.g. the replay round trip, expect only their own records)."""
    log = tmp_path_factory.mktemp("own_broker") / "tansu.log"
    with EmbeddedBroker("127.0.0.1", free_port(), log_path=log) as broker:
        yield broker.address


@pytest.fixture()
def fresh_broker(tmp_path: Path) -> Iterator[str]:
    """A broker of one test's own with every topic created: counts on it are that test's alone
    (the kill/restart tests compare whole topics and committed offsets)."""
    from stratx.quix_apps.kit import admin

    with EmbeddedBroker("127.0.0.1", free_port(), tmp_path / "tansu.log") as broker:
        client = admin.connect(broker.address)
        admin.create_topics(client)
        client.close()
        yield broker.address
