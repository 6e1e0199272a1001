"""`stratx live` paces its poll cycles by the OpenF1 rate limit (pure; no HTTP, no broker)."""

from __future__ import annotations

import pytest

from stratx.functions import openf1
from stratx.quix_apps import live
from stratx.quix_apps.kit.openf1_client import SlidingWindowLimiter


def test_one_request_per_endpoint_a_cycle_for_the_whole_session() -> None:
    assert set(live.POLLED) <= set(openf1.ENDPOINTS)
    assert {"laps", "car_data", "location"} <= set(live.POLLED)  # no longer asked car by car
    assert len(live.POLLED) + 2 == 9  # + stints and pit, fetched whole: was 66 with 20 cars


def test_cycles_are_spaced_by_what_the_rate_limit_allows() -> None:
    limiter = SlidingWindowLimiter(30, 10.5)  # OpenF1's 30 / 10 s, with the client's margin
    assert live.cycle_period(1.0, 9, limiter) == pytest.approx(3.15)  # the limit binds
    assert live.cycle_period(1.0, 2, limiter) == 1.0  # the poll interval binds
    lifted = SlidingWindowLimiter(1000, 10.0)
    assert live.cycle_period(1.0, 9, lifted) == 1.0
    # evenly spaced cycles never exceed the limit in any window: 30 / 10.5 s * 3.15 s = 9 a cycle
    assert 9 * (limiter.window / live.cycle_period(1.0, 9, limiter)) <= limiter.limit
