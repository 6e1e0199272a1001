"""The topic catalog contract: names, partitions, configs, keys."""

from __future__ import annotations

import pytest

from stratx.functions import catalog, ingest
from stratx.functions.catalog import KeyRule

DRIVER_TOPICS = (catalog.CAR_TELEMETRY, catalog.CAR_POSITION, catalog.LAPS, catalog.TIMING)
SESSION_TOPICS = (catalog.SESSION_INFO, catalog.RACE_CONTROL, catalog.TRACK_STATUS, catalog.WEATHER)
ALL = catalog.ALL_TOPICS


def _id(spec: catalog.TopicSpec) -> str:
    return spec.name


def test_names_are_unique() -> None:
    names = [t.name for t in ALL]
    assert len(set(names)) == len(names)
    assert set(catalog.BY_NAME) == set(names)
    assert all(catalog.BY_NAME[t.name] is t for t in ALL)


def test_names_are_namespaced() -> None:
    assert all(t.name.startswith("stratx.") for t in ALL)
    assert all(t.name.startswith("stratx.raw.") for t in catalog.RAW_TOPICS)


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_partitions_and_retention(spec: catalog.TopicSpec) -> None:
    assert spec.partitions >= 1
    config = spec.config()
    assert int(config["retention.ms"]) == spec.retention_ms > 0
    assert config["cleanup.policy"] == spec.cleanup_policy
    assert spec.description


@pytest.mark.parametrize("spec", DRIVER_TOPICS, ids=_id)
def test_driver_topics_are_keyed_by_session_and_driver(spec: catalog.TopicSpec) -> None:
    assert spec.key is KeyRule.SESSION_DRIVER
    assert catalog.message_key(spec, 9189, "44") == "9189:44"
    assert "DriverNumber" in spec.schema.model_fields


@pytest.mark.parametrize("spec", SESSION_TOPICS, ids=_id)
def test_session_topics_are_keyed_by_session(spec: catalog.TopicSpec) -> None:
    assert spec.key is KeyRule.SESSION
    assert catalog.message_key(spec, 9189) == "9189"
    assert "DriverNumber" not in spec.schema.model_fields


def test_raw_topics_are_exactly_the_driver_and_session_topics() -> None:
    assert set(catalog.RAW_TOPICS) == set(DRIVER_TOPICS) | set(SESSION_TOPICS)
    assert catalog.RAW_TOPICS[0] is catalog.SESSION_INFO  # consumers see it first
    mapped = {spec for spec, _ in ingest.TABLE_TOPICS.values()}
    assert mapped == set(catalog.RAW_TOPICS) - {catalog.SESSION_INFO}


@pytest.mark.parametrize("spec", DRIVER_TOPICS, ids=_id)
def test_message_key_needs_a_driver_on_driver_topics(spec: catalog.TopicSpec) -> None:
    with pytest.raises(ValueError, match="DriverNumber"):
        catalog.message_key(spec, 9189)


def test_dead_letter_and_checkpoint_topics() -> None:
    assert catalog.DEAD_LETTER in ALL and catalog.REPLAY_CHECKPOINTS in ALL
    assert catalog.DEAD_LETTER.key is KeyRule.SOURCE
    assert catalog.REPLAY_CHECKPOINTS.key is KeyRule.REPLAY_ID
    assert catalog.REPLAY_CHECKPOINTS.config()["cleanup.policy"] == "compact"
    compacted = [t.name for t in ALL if t.cleanup_policy == "compact"]
    assert compacted == [catalog.REPLAY_CHECKPOINTS.name]
    for spec in (catalog.DEAD_LETTER, catalog.REPLAY_CHECKPOINTS):
        with pytest.raises(ValueError):
            catalog.message_key(spec, 9189, "44")


def test_high_rate_topics_have_more_partitions() -> None:
    # car data/positions are ~3.7 Hz x 20 cars; they must not be single-partition
    assert catalog.CAR_TELEMETRY.partitions > 1 and catalog.CAR_POSITION.partitions > 1
