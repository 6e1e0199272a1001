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


# `make test` runs on two pytest-xdist workers (--dist loadgroup): each module stays on one worker
# (its module fixtures are set up once), and the modules that start a whole `stratx up` stack on the
# configured ports share one worker, so two stacks never race for the same ports.
STACK_MODULES = {
    "tests.quix_apps.test_up_command",
    "tests.quix_apps.test_backtest_stream",
    "tests.quix_apps.test_cli_demo",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__ if module is not None else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group("stack" if name in STACK_MODULES else name))


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
