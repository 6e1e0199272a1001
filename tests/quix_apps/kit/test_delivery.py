"""The replay never checkpoints past a message the broker did not acknowledge."""

from __future__ import annotations

import pytest

from stratx.quix_apps.replay import DeliveryError, DeliveryTracker


class _Msg:
    def topic(self) -> str:
        return "stratx.raw.laps"


def test_tracker_counts_failures_and_keeps_the_first() -> None:
    tracker = DeliveryTracker()
    tracker(None, _Msg())
    tracker.raise_if_failed()  # successes never raise
    tracker("Broker: Message size too large", _Msg())
    tracker("Local: Message timed out", _Msg())
    assert tracker.failed == 2
    with pytest.raises(DeliveryError, match=r"2 messages .*stratx.raw.laps: Broker: Message size too large"):
        tracker.raise_if_failed()
