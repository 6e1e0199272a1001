"""Scale-out wiring: STRATX_FEAST_REDIS_CONNECTION makes Redis the Feast online store.

Nothing here connects: the host is unresolvable (.invalid), so a connection attempt would fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stratx.functions.settings import FeastSettings
from stratx.quix_apps.kit import feature_store as fs

REPO_DIR = Path(__file__).resolve().parents[3] / "feature_repo"
REDIS = "redis-master.stratx.invalid:6379,password=pw-not-in-repr,ssl=true"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("STRATX_"):
            monkeypatch.delenv(name)


def test_default_online_store_is_the_sqlite_file(tmp_path: Path) -> None:
    config = fs.repo_config(REPO_DIR, tmp_path)
    assert config.online_store.type == "sqlite"
    assert config.online_store.path == f"{tmp_path.resolve()}/online_store.db"


def test_redis_connection_selects_redis_and_keeps_registry_and_offline(tmp_path: Path) -> None:
    config = fs.repo_config(REPO_DIR, tmp_path, REDIS)
    assert config.online_store.type == "redis"
    assert config.online_store.redis_type.value == "redis"
    assert config.online_store.connection_string == REDIS
    assert config.registry.path == f"sqlite:///{tmp_path.resolve()}/registry.db"
    assert config.offline_store.type == "duckdb"
    assert config.repo_path == tmp_path.resolve()


def test_settings_from_environment_reach_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATX_FEAST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STRATX_FEAST_REDIS_CONNECTION", REDIS)
    settings = FeastSettings()
    assert "pw-not-in-repr" not in repr(settings)
    store = fs.open_store()  # reads FeastSettings; opening a FeatureStore does not connect
    assert store.config.online_store.type == "redis"
    assert store.config.online_store.connection_string == REDIS
    explicit = fs.open_store(REPO_DIR, tmp_path, settings.feast_redis_connection)
    assert explicit.config.online_store.type == "redis"
    monkeypatch.delenv("STRATX_FEAST_REDIS_CONNECTION")
    assert fs.open_store().config.online_store.type == "sqlite"
