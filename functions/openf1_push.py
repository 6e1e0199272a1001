"""OpenF1's push feed (MQTT) beside the poll: message -> endpoint, when a pushed record may go
through, and when the feed counts as dropped. Pure: no MQTT client, no clock (times are passed in).

OpenF1 publishes every record of its authenticated real-time tier on an MQTT topic named after the
REST endpoint (``v1/laps``, ``v1/car_data``, ...), as the same JSON object the REST API answers,
possibly with extra broker fields (``_id``, ``_key``: dropped here). :func:`decode` turns one message
into ``(endpoint, record)`` or the reason it goes to the dead letters.

A pushed record goes through exactly the poller's path (``PollState.accept`` -> normalise ->
publish, ``quix_apps/live_push.py``), so the poll and the push are deduplicated by the same
:func:`~stratx.functions.openf1_polling.event_id`. :class:`PushFeed` is the bookkeeping that makes
the two agree:

* the feed is **live** while it is connected and has sent a message (or connected) within
  ``silence_s``; otherwise the app polls at the normal cadence (fallback), and when it is live, at a
  slow one (a safety net);
* records the feed missed while it was not live are fetched by the poll, and a pushed record newer
  than them must not move the cursors past them first (they would be "late"). So after the feed
  (re)becomes live, pushed records are **held** until a poll that started after that moment has
  finished (it is asked for at once); then the held records go through (the ones the poll already
  published are dropped as repeats) and later ones go straight through;
* a record held while the feed is down is released after the next poll that started after it arrived.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

TOPIC_PREFIX = "v1/"
# endpoints whose records are published to a raw topic (same as the poller's), and the ones that
# only enrich laps (stints: Stint/Compound/TyreLife; pit: PitInTime/PitOutTime)
PUBLISHED = ("laps", "car_data", "location", "intervals", "position", "race_control", "weather")
ENRICHING = ("stints", "pit")
PUSHED = PUBLISHED + ENRICHING
MAX_HELD = 200_000  # pushed records held at most (about 20 minutes of a race's feed); then dead letters


class Mode(StrEnum):
    PUSH = "push"  # the feed is live: slow safety-net poll
    POLL = "poll"  # the feed dropped (disconnected or silent): normal poll cadence


class Pushed(NamedTuple):
    endpoint: str
    record: dict[str, Any]
    received: float  # monotonic s


class Undecodable(NamedTuple):
    topic: str
    body: str  # the payload as text (cut), for the dead letter
    reason: str


def mqtt_topics(endpoints: tuple[str, ...] = PUSHED) -> list[str]:
    """The MQTT topics to subscribe to: one per endpoint, named as OpenF1 names them."""
    return [TOPIC_PREFIX + name for name in endpoints]


def endpoint_of(topic: str) -> str | None:
    """``v1/car_data`` -> ``car_data``; None for a topic StratX does not read."""
    name = topic.removeprefix(TOPIC_PREFIX) if topic.startswith(TOPIC_PREFIX) else None
    return name if name in PUSHED else None


def decode(topic: str, payload: bytes, received: float, session_key: int) -> Pushed | Undecodable:
    """One MQTT message -> the OpenF1 record (broker fields ``_*`` dropped) or why it cannot be used.
    Field checks are left to ``PollState.accept`` (the same reasons as for a polled record)."""
    body = payload[:2000].decode("utf-8", errors="replace")
    endpoint = endpoint_of(topic)
    if endpoint is None:
        return Undecodable(topic, body, f"openf1 push: topic {topic!r} is not one StratX reads")
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        return Undecodable(topic, body, f"openf1 push {endpoint}: message is not JSON ({exc})")
    if not isinstance(value, Mapping):
        return Undecodable(
            topic, body, f"openf1 push {endpoint}: message is {type(value).__name__}, not an object"
        )
    record = {k: v for k, v in value.items() if not (isinstance(k, str) and k.startswith("_"))}
    if record.get("session_key") != session_key:
        return Undecodable(
            topic,
            body,
            f"openf1 push {endpoint}: session_key {record.get('session_key')!r} is not {session_key}",
        )
    return Pushed(endpoint, record, received)


def by_endpoint(messages: list[Pushed]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by endpoint, in arrival order (``accept`` sorts each batch by date, so records
    reordered within one batch still go out in order)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        out.setdefault(m.endpoint, []).append(m.record)
    return out


@dataclass
class PushFeed:
    """The push feed's state: live or not, the records held back, the mode changes (see the module)."""

    silence_s: float
    max_held: int = MAX_HELD
    connected: bool = False
    connected_at: float = -math.inf
    last_message_at: float = -math.inf
    live_since: float | None = None  # when the feed last became live; None while it is not
    caught_up: bool = False  # a poll started after live_since has finished: records go straight through
    held: list[Pushed] = field(default_factory=list)
    changes: list[tuple[float, Mode, str]] = field(default_factory=list)  # (when, new mode, why)

    @property
    def mode(self) -> Mode:
        return Mode.PUSH if self.live_since is not None else Mode.POLL

    @property
    def fallbacks(self) -> int:
        return sum(1 for _, m, _ in self.changes if m is Mode.POLL)

    @property
    def recoveries(self) -> int:
        return sum(1 for _, m, _ in self.changes if m is Mode.PUSH)

    def on_connect(self, now: float) -> None:
        self.connected, self.connected_at = True, now
        self._update(now, "connected")

    def on_disconnect(self, now: float, reason: str) -> None:
        self.connected = False
        self._update(now, f"disconnected ({reason})")

    def on_message(self, now: float) -> None:
        self.last_message_at = max(self.last_message_at, now)
        self._update(now, "message")

    def tick(self, now: float) -> Mode:
        """Re-evaluate at ``now`` (a silent feed drops out ``silence_s`` after its last message)."""
        self._update(now, f"no message for {self.silence_s:g} s")
        return self.mode

    def is_live(self, now: float) -> bool:
        last = max(self.connected_at, self.last_message_at)
        return self.connected and now - last <= self.silence_s

    def _update(self, now: float, why: str) -> None:
        live = self.is_live(now)
        if live and self.live_since is None:
            self.live_since, self.caught_up = now, False
            self.changes.append((now, Mode.PUSH, why))
        elif not live and self.live_since is not None:
            self.live_since, self.caught_up = None, False
            self.changes.append((now, Mode.POLL, why))

    def admit(self, message: Pushed) -> tuple[list[Pushed], list[Pushed]]:
        """(records to process now, records over the hold limit: dead letters). A record goes
        through at once only when the feed is live and caught up; otherwise it is held."""
        if self.caught_up and self.live_since is not None:
            return [message], []
        if len(self.held) >= self.max_held:
            return [], [message]
        self.held.append(message)
        return [], []

    def poll_due_in(
        self, now: float, last_poll_started: float | None, normal_s: float, slow_s: float
    ) -> float:
        """Seconds until the next poll should start: at once for the catch-up poll after the feed
        became live; then every ``slow_s`` while it is live, every ``normal_s`` while it is not."""
        if last_poll_started is None:
            return 0.0
        if self.live_since is not None and not self.caught_up and last_poll_started < self.live_since:
            return 0.0
        period = slow_s if self.live_since is not None and self.caught_up else normal_s
        return max(0.0, last_poll_started + period - now)

    def poll_finished(self, started: float) -> list[Pushed]:
        """A poll that started at ``started`` has finished: the held records it covered, to process
        now (all of them once the feed is live and this poll started after it became so)."""
        if self.live_since is not None and started >= self.live_since:
            self.caught_up = True
            released, self.held = self.held, []
            return released
        released = [m for m in self.held if m.received <= started]
        self.held = [m for m in self.held if m.received > started]
        return released

    def release_all(self) -> list[Pushed]:
        """On shutdown: every held record (the last poll has run; repeats are dropped downstream)."""
        released, self.held = self.held, []
        return released
