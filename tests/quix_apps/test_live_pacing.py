"""`stratx live` paces its poll cycles by the OpenF1 rate limit and asks each endpoint only when it is
due (no HTTP, no broker: a fake client and producer, unit tier)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stratx.functions import openf1
from stratx.functions.settings import LiveSettings
from stratx.quix_apps import live
from stratx.quix_apps.kit.openf1_client import SlidingWindowLimiter


def test_one_request_per_endpoint_a_cycle_for_the_whole_session() -> None:
    assert set(live.POLLED) <= set(openf1.ENDPOINTS)
    assert {"laps", "car_data", "location"} <= set(live.POLLED)  # no longer asked car by car
    assert len(live.POLLED) + 2 == 9  # at most, with stints and pit: was 66 with 20 cars


def test_cycles_are_spaced_by_what_the_rate_limit_allows() -> None:
    limiter = SlidingWindowLimiter(30, 10.5)  # OpenF1's 30 / 10 s, with the client's margin
    assert live.cycle_period(1.0, 9, limiter) == pytest.approx(3.15)  # the limit binds
    assert live.cycle_period(1.0, 2, limiter) == 1.0  # the poll interval binds
    lifted = SlidingWindowLimiter(1000, 10.0)
    assert live.cycle_period(1.0, 9, lifted) == 1.0
    # evenly spaced cycles never exceed the limit in any window: 30 / 10.5 s * 3.15 s = 9 a cycle
    assert 9 * (limiter.window / live.cycle_period(1.0, 9, limiter)) <= limiter.limit


class FakeClient:
    """Answers every endpoint with canned records and logs what was asked (a unit-test fake)."""

    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers, self.asked = answers, []

    def fetch(self, endpoint: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.asked.append(endpoint)
        return list(self.answers.get(endpoint, []))


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def produce(self, topic: str, **_: Any) -> None:
        self.sent.append(topic)

    def flush(self, *_: Any) -> int:
        return 0


def test_stints_and_pit_only_with_new_laps_and_weather_at_most_every_30_s() -> None:
    lap = {"session_key": 1, "driver_number": 1, "lap_number": 2, "date_start": "2023-11-19T06:05:00+00:00",
           "lap_duration": 95.0}  # fmt: skip
    client = FakeClient({"laps": [lap]})
    poller = live.LivePoller(client, FakeProducer(), LiveSettings())  # type: ignore[arg-type]
    poller.ctx = openf1.SessionContext(1, datetime(2023, 11, 19, 6, 0, tzinfo=UTC))
    poller.cycle()  # a new lap: its stints and pit stops are fetched to enrich it; weather is due
    first = client.asked[:]
    assert first[:3] == ["laps", "stints", "pit"] and "weather" in first and len(first) == 9
    client.asked.clear()
    poller.cycle()  # the same lap again (no new one), weather asked less than 30 s ago
    assert client.asked == ["laps", "car_data", "location", "intervals", "position", "race_control"]
