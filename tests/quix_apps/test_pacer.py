"""Replay pacing against the event clock, with a fake clock and sleep (no real waiting).

The pacer may sleep in several slices per event; the tests check the wall time slept per event.
"""

from __future__ import annotations

import itertools

import pytest

from stratx.quix_apps.replay import Pacer


class FakeTime:
    """A wall clock that only moves when someone sleeps (or the test advances it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds

    def slept_during(self, pacer: Pacer, event_time: float | None) -> float:
        before = self.now
        pacer.wait(event_time)
        return self.now - before


def _pacer(speed: float, fake: FakeTime) -> Pacer:
    return Pacer(speed, clock=fake.clock, sleep=fake.sleep)


def test_speed_10_sleeps_a_tenth_of_the_event_gap() -> None:
    fake = FakeTime()
    pacer = _pacer(10, fake)
    t0, t1 = 842.656, 873.0
    assert fake.slept_during(pacer, t0) == 0  # the first event sets the origin
    assert fake.slept_during(pacer, t1) == pytest.approx((t1 - t0) / 10)


@pytest.mark.parametrize("speed", [0.5, 1, 10, 250])
def test_wall_time_follows_event_time(speed: float) -> None:
    fake = FakeTime()
    pacer = _pacer(speed, fake)
    events = [100.0, 100.0, 100.27, 101.5, 101.5, 130.0, 160.25]
    slept = [fake.slept_during(pacer, t) for t in events]
    gaps = [0.0] + [(b - a) / speed for a, b in itertools.pairwise(events)]
    assert slept == pytest.approx(gaps, abs=0.002)
    assert fake.now - 1000.0 == pytest.approx((events[-1] - events[0]) / speed, abs=0.002)


def test_speed_0_never_sleeps() -> None:
    fake = FakeTime()
    pacer = _pacer(0, fake)
    for t in (0.0, 10.0, 3600.0, 7200.0):
        pacer.wait(t)
    assert fake.sleeps == []


def test_no_sleep_when_behind_schedule() -> None:
    fake = FakeTime()
    pacer = _pacer(10, fake)
    pacer.wait(0.0)
    fake.now += 5.0  # publishing took longer than the 3 s the next event is due in
    assert fake.slept_during(pacer, 30.0) == 0
    # due at origin + 8 s, now is origin + 5 s: the pacer does not "catch up" by shortening later gaps
    assert fake.slept_during(pacer, 80.0) == pytest.approx(3.0, abs=0.002)


def test_events_without_time_are_not_paced() -> None:
    fake = FakeTime()
    pacer = _pacer(10, fake)
    assert fake.slept_during(pacer, None) == 0
    assert pacer.origin is None
    pacer.wait(50.0)
    assert fake.slept_during(pacer, None) == 0
    assert fake.slept_during(pacer, 60.0) == pytest.approx(1.0, abs=0.002)
