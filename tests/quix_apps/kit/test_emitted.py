"""Fault-tolerance helpers: the restart filter (quix_apps/kit/emitted.py: an output already on the topic
is not sent again) and the bounded dead-letter payload (a huge poison record cannot stop an app)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stratx.functions import schemas
from stratx.functions.settings import PredictionAppSettings
from stratx.quix_apps import predictions
from stratx.quix_apps.kit.emitted import Emitted, fingerprint


def lap(driver: str, number: int, **extra: object) -> dict[str, object]:
    return {"SessionKey": 9189, "DriverNumber": driver, "LapNumber": number, "LapTime": 95.1, **extra}


def key(v: dict[str, object]) -> object:
    return (v["SessionKey"], v["DriverNumber"], v["LapNumber"])


def test_an_output_already_on_the_topic_is_dropped_once() -> None:
    seen = Emitted([lap("1", 1), lap("1", 2)], key)
    assert seen.loaded == 2
    assert [seen(lap("1", 1)), seen(lap("1", 2)), seen(lap("1", 3))] == [False, False, True]
    assert seen(lap("1", 1)) is True  # each record on the topic absorbs one repeat only
    assert seen.suppressed == 2


def test_a_different_value_under_the_same_key_goes_out() -> None:
    seen = Emitted([lap("1", 1)], key)
    assert seen(lap("1", 1, LapTime=96.0)) is True
    assert seen(lap("1", 1)) is False


def test_ignored_fields_and_key_order_do_not_matter() -> None:
    seen = Emitted([lap("1", 1, ProducedAt="2026-01-01T00:00:00Z")], key, ignore=frozenset({"ProducedAt"}))
    again = dict(reversed(list(lap("1", 1, ProducedAt="2026-11-26T10:00:00Z").items())))
    assert seen(again) is False
    assert fingerprint(lap("1", 1), key) == fingerprint(dict(reversed(list(lap("1", 1).items()))), key)


def test_a_huge_dead_letter_payload_is_cut_and_says_so() -> None:
    def letter(payload: str) -> schemas.DeadLetter:
        return schemas.DeadLetter(
            SourceTopic="t", Key=None, Reason="r", Payload=payload, Stage="s", Date=datetime.now(UTC)
        )

    small = "y" * schemas.DEAD_LETTER_PAYLOAD_MAX
    assert letter(small).Payload == small
    cut = letter("x" * 2_000_000).Payload
    assert cut == "x" * schemas.DEAD_LETTER_PAYLOAD_MAX + "...[truncated: 2000000 characters]"


def test_key_only_drops_a_repeat_whatever_its_value() -> None:
    seen = Emitted([lap("1", 1)], key, key_only=True)
    assert seen(lap("1", 1, LapTime=96.0)) is False
    assert seen(lap("1", 2)) is True


def test_a_prediction_repeat_after_a_restart_is_dropped_but_an_unavailable_one_is_superseded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    def pred(lap_number: int, status: str, value: float, other: str | None = None) -> dict[str, object]:
        return {
            "SessionKey": 9189,
            "DriverNumber": "1",
            "LapNumber": lap_number,
            "Model": "overtake" if other else "lap_time",
            "OtherDriverNumber": other,
            "Status": status,
            "Values": {"p": value},
        }

    on_topic = [pred(1, "ok", 95.0), pred(2, "unavailable", 0.0), pred(1, "ok", 0.2, other="11")]
    monkeypatch.setattr(predictions, "read_topic", lambda address, topic, auth=None: on_topic)
    seen = predictions.already_predicted(PredictionAppSettings(), "stratx.predictions.lap_time")
    assert seen(pred(1, "ok", 95.3)) is False  # same driver-lap and model: first write wins
    assert seen(pred(2, "ok", 96.0)) is True  # the outage record is followed by a real answer
    assert seen(pred(1, "ok", 0.3, other="44")) is True  # another pair is another prediction
    assert seen(pred(1, "ok", 0.25, other="11")) is False
