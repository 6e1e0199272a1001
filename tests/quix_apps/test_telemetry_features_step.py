"""The telemetry app's hot path (``WindowStep``: orjson + the exact sample check + a cache of decoded
window states) gives the records of the standard path (``json.loads`` + pydantic + Quix state get /
set per sample), on real samples of the bundled 2023 Las Vegas GP (cars 1 and 14) with INJECTED
faults: redelivered, late and stale samples, a gear glitch, undecodable bytes and valid samples the
exact check leaves to pydantic. No broker: the app's dataframe on a broker-less Application.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from quixstreams import Application
from quixstreams.context import MessageContext
from quixstreams.models import Topic, TopicConfig
from quixstreams.utils.json import dumps, loads

from stratx.functions import catalog, ingest, schemas
from stratx.functions.features import telemetry as tl
from stratx.functions.features import telemetry_input
from stratx.functions.racedata import RaceData
from stratx.quix_apps import telemetry_features as app_mod

Message = tuple[str, bytes]  # key, value bytes


@pytest.fixture(scope="module")
def stream(las_vegas: RaceData) -> list[Message]:
    """Cars 1 and 14 interleaved in event-time order, with INJECTED faults."""
    race = las_vegas.filter_drivers({"VER", "ALO"})
    records = list(itertools.islice(tl.car_records(race), 3000))
    clean = [(r.key, raw) for r in records if isinstance(raw := ingest.encode(r), bytes)]
    key, last = clean[1500]
    glitch = json.loads(clean[1600][1]) | {"nGear": 9}  # INJECTED: fails the schema
    floaty = json.loads(clean[1700][1]) | {"Speed": 250.0}  # INJECTED: valid, left to pydantic
    zulu = json.loads(clean[1701][1])  # INJECTED: valid, Date as pydantic writes it
    zulu["Date"] = zulu["Date"].replace("+00:00", "Z")
    return [
        *clean[:1501],
        (key, last),  # redelivered
        clean[10],  # late
        clean[1497],  # stale: redelivered, older than the last sample of its car
        *clean[1501:1600],
        (clean[1600][0], json.dumps(glitch).encode()),
        (key, b"{not json"),
        (key, b"\xef\xbb\xbf" + clean[1600][1]),  # a BOM: decoded by the standard path
        *clean[1600:1700],
        (clean[1700][0], json.dumps(floaty).encode()),
        (clean[1701][0], json.dumps(zulu).encode()),
        *clean[1702:],
    ]


def normalised(message: dict[str, Any]) -> tuple[Any, ...]:
    """A produced message; a dead letter without its Date (when it was written)."""
    value = message["value"]
    if message["topic"] == catalog.DEAD_LETTER.name:
        value = {k: v for k, v in json.loads(value).items() if k != "Date"}
    return message["topic"], message["key"], value, message["timestamp"]


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Callable[[list[Message]], tuple[list[Any], dict[str, Any]]]]:
    """Runs messages (as bytes, as Quix hands them) through a fresh copy of the app's dataframe;
    returns the produced messages and each key's window state at the end."""
    managers = []

    def run(messages: list[Message]) -> tuple[list[Any], dict[str, Any]]:
        app = Application(
            broker_address="127.0.0.1:9",
            consumer_group="unit",
            use_changelog_topics=False,
            auto_create_topics=False,
            state_dir=tmp_path / f"state-{len(managers)}",
            loglevel=logging.WARNING,
        )
        config = TopicConfig(num_partitions=1, replication_factor=1, extra_config={"retention.ms": "1000"})
        topics = []
        for name in (catalog.CAR_TELEMETRY.name, catalog.TELEMETRY_WINDOW.name, catalog.DEAD_LETTER.name):
            topic = Topic(name, create_config=config, key_deserializer="str", key_serializer="str")
            topic.broker_config = config
            topics.append(topic)
        sdf = app_mod.build_pipeline(app.dataframe(topics[0]), topics[1], topics[2])
        context = sdf.processing_context
        context.state_manager.on_partition_assign(stream_id=sdf.stream_id, partition=0, committed_offsets={})
        context.init_checkpoint()
        managers.append(context.state_manager)
        produced: list[dict[str, Any]] = []
        context.producer.produce = lambda **kw: produced.append(kw)  # type: ignore[method-assign]
        ctx = MessageContext(topic=catalog.CAR_TELEMETRY.name, partition=0, offset=0, size=0)
        for key, value in messages:
            sdf.test(value, key=key, timestamp=1, ctx=ctx)
        tx = context.checkpoint.get_store_transaction(sdf.stream_id, 0)
        states = {key: tx.as_state(prefix=key.encode()).get(app_mod.STATE_KEY) for key, _ in messages}
        return [normalised(m) for m in produced], states

    yield run
    for manager in managers:
        manager.close()


def test_the_hot_path_gives_the_records_of_the_standard_path(
    stream: list[Message],
    pipeline: Callable[[list[Message]], tuple[list[Any], dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, fast_states = pipeline(stream)
    with monkeypatch.context() as patch:  # every sample through json.loads + pydantic, as before
        patch.setattr(telemetry_input, "is_exact_sample", lambda payload: False)
        standard, standard_states = pipeline(stream)
    assert fast == standard
    assert fast_states == standard_states and len(fast_states) == 2
    windows = [json.loads(m[2]) for m in fast if m[0] == catalog.TELEMETRY_WINDOW.name]
    letters = [m[2] for m in fast if m[0] == catalog.DEAD_LETTER.name]
    assert len(windows) > 100
    assert all(letter["Stage"] == app_mod.STAGE for letter in letters)
    reasons = {letter["Reason"].split(":")[0] for letter in letters}
    assert reasons == {"duplicate", "late", "out of order", "CarTelemetry schema", "not JSON"}


class BytesState:
    """Quix ``State`` stand-in with bytes access: values kept as Quix's serializer writes them."""

    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return loads(self.store[key]) if key in self.store else default

    def set(self, key: str, value: Any) -> None:
        self.store[key] = dumps(value)

    def get_bytes(self, key: str, default: bytes | None = None) -> bytes | None:
        return self.store.get(key, default)

    def set_bytes(self, key: str, value: bytes) -> None:
        self.store[key] = value


def run_step(step: app_mod.WindowStep, state: BytesState, messages: list[Message]) -> list[dict[str, Any]]:
    """The step's items; dead letters without their Date (when they were written)."""
    items = [item for key, raw in messages for item in step(raw, key, 0, None, state)]
    return [
        {"DeadLetter": {k: v for k, v in i["DeadLetter"].items() if k != "Date"}} if "DeadLetter" in i else i
        for i in items
    ]


def test_state_read_back_after_a_restart_or_a_rollback_is_used_not_the_cache(stream: list[Message]) -> None:
    messages = [m for m in stream if m[0] == stream[0][0]][:1200]
    whole = run_step(app_mod.WindowStep(), BytesState(), messages)

    # a restart: a new step (empty cache) continues from the state left behind
    state = BytesState()
    restarted = run_step(app_mod.WindowStep(), state, messages[:500])
    restarted += run_step(app_mod.WindowStep(), state, messages[500:])
    assert restarted == whole

    # the state goes back to an earlier value (what a crash before the commit or a rebalance
    # does): the same step must read it, and the samples processed again give the same windows
    step, state = app_mod.WindowStep(), BytesState()
    first = run_step(step, state, messages[:500])
    committed = dict(state.store)
    middle = run_step(step, state, messages[500:800])
    state.store = committed
    again = run_step(step, state, messages[500:800])
    assert again == middle and sum("Window" in i for i in again) > 10
    assert first + again + run_step(step, state, messages[800:]) == whole


def test_a_sample_with_date_text_gives_the_windows_of_its_model_dump(stream: list[Message]) -> None:
    texts, dumped = [], []
    for _, raw in stream:
        sample = telemetry_input.sample_from_json(raw)
        if sample is not None and sample["DriverNumber"] == "1":
            texts.append(sample)
            dumped.append(schemas.CarTelemetry.model_validate(sample).model_dump())
    assert isinstance(texts[0]["Date"], str) and not isinstance(dumped[0]["Date"], str)
    runs = []
    for samples in (texts, dumped):
        state, items = None, []
        for sample in samples:
            state, out = tl.window_update(state, sample)
            items += [{k: v for k, v in i.items() if k != "Sample"} for i in out]
        runs.append((state, items))
    assert runs[0] == runs[1] and len(runs[0][1]) > 50
