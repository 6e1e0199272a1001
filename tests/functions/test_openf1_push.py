"""The push feed's pure bookkeeping (functions/openf1_push.py) on recorded real OpenF1 records of the
2023 Las Vegas GP (tests/fixtures/openf1_session). Broker fields (``_id``, ``_key``) and the
malformed messages below are injected (SYNTHETIC) to test the decoder."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from stratx.functions import openf1, openf1_push
from stratx.functions.openf1_push import Mode, Pushed, PushFeed, Undecodable

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "openf1_session"
SESSION = 9189


def records(endpoint: str, n: int = 50) -> list[dict[str, Any]]:
    with gzip.open(FIXTURE / f"{endpoint}.jsonl.gz", "rt") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh, strict=False)]


def pushed(record: dict[str, Any], at: float, endpoint: str = "car_data") -> Pushed:
    return Pushed(endpoint, record, at)


def test_every_pushed_endpoint_is_one_the_poller_knows_and_topics_are_named_after_it() -> None:
    assert all(name in openf1.ENDPOINTS for name in openf1_push.PUSHED)
    assert "v1/car_data" in openf1_push.mqtt_topics() and "v1/stints" in openf1_push.mqtt_topics()
    assert openf1_push.endpoint_of("v1/laps") == "laps"
    assert openf1_push.endpoint_of("v1/sessions") is None  # read by REST at the start, not pushed
    assert openf1_push.endpoint_of("laps") is None and openf1_push.endpoint_of("v2/laps") is None


def test_decode_drops_broker_fields_and_keeps_the_record() -> None:
    real = records("car_data", 1)[0]
    message = {**real, "_id": 123456, "_key": "9189_1_2023-11-19"}  # SYNTHETIC broker fields
    got = openf1_push.decode("v1/car_data", json.dumps(message).encode(), 5.0, SESSION)
    assert got == Pushed("car_data", real, 5.0)
    assert openf1.event_id("car_data", got.record) == openf1.event_id("car_data", real)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("v1/car_data", b"{not json", "not JSON"),
        ("v1/car_data", b"\xff\xfe", "not JSON"),
        ("v1/car_data", b"[1, 2]", "list, not an object"),
        ("v1/car_data", b'{"session_key": 1, "driver_number": 1}', "session_key 1 is not 9189"),
        ("v1/team_radio", b'{"session_key": 9189}', "not one StratX reads"),
    ],
)
def test_undecodable_messages_say_why(topic: str, payload: bytes, reason: str) -> None:  # SYNTHETIC
    got = openf1_push.decode(topic, payload, 0.0, SESSION)
    assert isinstance(got, Undecodable) and reason in got.reason and got.topic == topic


def test_by_endpoint_keeps_arrival_order() -> None:
    laps, cars = records("laps", 2), records("car_data", 3)
    batch = [pushed(cars[0], 1), pushed(laps[0], 2, "laps"), pushed(cars[1], 3), pushed(laps[1], 4, "laps")]
    assert openf1_push.by_endpoint(batch) == {"car_data": cars[:2], "laps": laps[:2]}


def test_records_are_held_until_a_poll_started_after_the_feed_came_up_has_finished() -> None:
    feed = PushFeed(silence_s=2.0)
    assert feed.mode is Mode.POLL and feed.poll_due_in(0.0, None, 1.0, 30.0) == 0.0
    feed.on_connect(10.0)
    assert feed.mode is Mode.PUSH and feed.changes == [(10.0, Mode.PUSH, "connected")]
    rows = records("car_data", 4)
    assert feed.admit(pushed(rows[0], 10.1)) == ([], [])  # held: the poll has not caught up yet
    assert feed.poll_due_in(10.1, 9.0, 1.0, 30.0) == 0.0  # so the catch-up poll is due at once
    assert feed.poll_finished(9.0) == []  # started before the feed came up: covers only older records
    assert feed.poll_finished(10.2) == [pushed(rows[0], 10.1)]  # caught up: the held record goes
    assert feed.admit(pushed(rows[1], 10.3)) == ([pushed(rows[1], 10.3)], [])  # straight through now
    assert feed.poll_due_in(11.0, 10.2, 1.0, 30.0) == pytest.approx(29.2)  # the safety net: slow


def test_a_silent_feed_falls_back_to_polling_and_recovers_on_the_next_message() -> None:
    feed = PushFeed(silence_s=2.0)
    feed.on_connect(0.0)
    feed.poll_finished(0.5)
    feed.on_message(1.0)
    assert feed.tick(2.9) is Mode.PUSH
    assert feed.tick(3.1) is Mode.POLL and feed.changes[-1] == (3.1, Mode.POLL, "no message for 2 s")
    assert feed.poll_due_in(3.1, 0.5, 1.0, 30.0) == 0.0  # normal cadence: overdue
    feed.on_message(5.0)
    assert feed.mode is Mode.PUSH and (feed.fallbacks, feed.recoveries) == (1, 2)
    row = records("car_data", 1)[0]
    assert feed.admit(pushed(row, 5.0)) == ([], [])  # held again until a poll catches up


def test_a_record_held_while_the_feed_is_down_goes_after_the_next_poll_that_covers_it() -> None:
    feed = PushFeed(silence_s=2.0)
    feed.on_connect(0.0)
    feed.poll_finished(0.1)
    feed.on_disconnect(1.0, "broker gone")
    assert feed.mode is Mode.POLL and "broker gone" in feed.changes[-1][2]
    rows = records("car_data", 2)
    feed.admit(pushed(rows[0], 0.9))  # queued by the client before the disconnect was read
    feed.admit(pushed(rows[1], 1.5))
    assert feed.poll_finished(1.2) == [pushed(rows[0], 0.9)]
    assert feed.held == [pushed(rows[1], 1.5)]
    assert feed.release_all() == [pushed(rows[1], 1.5)] and feed.held == []


def test_over_the_hold_limit_a_record_is_returned_for_the_dead_letters() -> None:
    feed = PushFeed(silence_s=2.0, max_held=1)
    rows = records("car_data", 2)
    assert feed.admit(pushed(rows[0], 0.0)) == ([], [])
    assert feed.admit(pushed(rows[1], 0.1)) == ([], [pushed(rows[1], 0.1)])


def test_a_record_pushed_then_polled_is_accepted_once_and_a_late_one_dead_lettered_once() -> None:
    """The push and the poll share PollState: the same real record by both is one record; a pushed
    record older than its car's cursor is late, once (the next poll does not dead-letter it again)."""
    rows = records("car_data", 400)
    car1 = [r for r in rows if r["driver_number"] == 1]
    car11 = [r for r in rows if r["driver_number"] == 11]
    state = openf1.PollState()
    assert state.accept("car_data", [car11[0], *car1[:3]]).new == [car11[0], *car1[:3]]
    assert state.accept("car_data", [car1[5]]).new == [car1[5]]  # the feed skipped car1[3:5]
    since = openf1.parse_date(state.params("car_data", SESSION)["date>="])
    assert since == openf1.parse_date(car11[0]["date"])  # car 11 holds the session's query back
    # what the poll gets while car 11 is silent (its cursor, the session's, does not move)
    answer = [r for r in [car11[0], *car1[:6]] if openf1.parse_date(r["date"]) >= since]
    assert all(r in answer for r in car1[3:6])
    polled = state.accept("car_data", answer)
    assert not any(r in polled.new for r in car1[:6])  # the pushed ones are repeats
    assert [r for r, _ in polled.late] == car1[3:5]
    assert all("out of order" in reason for _, reason in polled.late)
    again = state.accept("car_data", answer)
    assert again.new == [] and again.late == []


def test_a_poll_in_flight_keeps_its_ids_while_pushed_records_move_the_cursors() -> None:
    """The poll asks from its cursor; pushed records accepted before its answer comes move the cursors
    (and would forget the ids behind them): the pin keeps them, so the answer is repeats, not late."""
    car1 = [r for r in records("car_data", 200) if r["driver_number"] == 1][:8]
    for pinned in (True, False):
        state = openf1.PollState()
        state.accept("car_data", car1[:2])
        if pinned:
            state.pin("car_data")
        query_from = state.cursor("car_data")
        assert state.accept("car_data", car1[2:]).new == car1[2:]  # pushed meanwhile
        answer = state.accept("car_data", [r for r in car1 if openf1.parse_date(r["date"]) >= query_from])
        state.unpin("car_data")
        assert answer.new == []
        assert (answer.late == []) is pinned  # unpinned: car1[2:7] forgotten, so "late"
