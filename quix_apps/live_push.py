"""`stratx live --push`: OpenF1's authenticated MQTT feed, with the poll kept as a safety net.

Every pushed record goes through the poller's own path (``LivePoller.accept_and_publish``:
``PollState.accept`` -> normalise -> publish; dead letters with the reason for malformed, late and
undecodable messages), so a record that arrives by both the push and the poll is published once,
by the same stable event id. The poll keeps running for the whole session, in its own thread: every
``push_poll_interval_s`` while the feed is live, at the normal cadence while it is not (disconnected,
or silent for ``push_silence_s``). When the feed comes back, pushed records are held until a poll
has fetched what the feed missed (``functions/openf1_push.py``, the bookkeeping); then the push
carries the session again. Pushed records are checkpointed every ``push_checkpoint_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from stratx.functions import openf1, openf1_push
from stratx.functions.openf1_push import Pushed, PushFeed, Undecodable
from stratx.functions.settings import LiveSettings
from stratx.quix_apps import live
from stratx.quix_apps.kit.mqtt_feed import MqttFeed
from stratx.quix_apps.kit.openf1_client import OpenF1Client
from stratx.quix_apps.kit.recording import Recorder
from stratx.quix_apps.replay import StopFlag

log = logging.getLogger(__name__)
TICK_S = 0.05  # longest wait for the next MQTT event: the silence check and Ctrl-C are this fresh


class PollThread(threading.Thread):
    """Runs one poll cycle each time ``due`` is set; reports ``("polled", start, (new, requests))``
    or ``("poll_error", start, exc)`` on the feed's event queue."""

    def __init__(self, poller: live.LivePoller, events: Any) -> None:
        super().__init__(name="live-poll", daemon=True)
        self.poller, self.events = poller, events
        self.due = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            if not self.due.wait(TICK_S):
                continue
            self.due.clear()
            started, requests = time.monotonic(), self.poller.result.requests
            try:
                new = self.poller.cycle()
            except Exception as exc:  # surfaces in the app's thread, which stops loudly
                self.events.put(("poll_error", started, exc))
                return
            self.events.put(("polled", started, (new, self.poller.result.requests - requests)))


class PushRunner:
    """The app's thread: drains the feed's events, keeps :class:`PushFeed`, publishes."""

    def __init__(
        self,
        poller: live.LivePoller,
        feed_io: MqttFeed,
        settings: LiveSettings,
        limiter: Any,
        recorder: Recorder | None = None,
    ) -> None:
        self.poller, self.io, self.settings, self.limiter = poller, feed_io, settings, limiter
        self.recorder = recorder
        self.feed = PushFeed(settings.push_silence_s)
        self.stints: dict[tuple[Any, Any], dict[str, Any]] = {}  # pushed stints by (driver, stint)
        self.pits: dict[str, dict[str, Any]] = {}  # pushed pit stops by event id
        self.stats = poller.result.push

    def run(self, should_stop: Callable[[], bool], max_cycles: int | None = None) -> None:
        assert self.poller.ctx is not None
        session_key = self.poller.ctx.session_key
        thread = PollThread(self.poller, self.io.events)
        thread.start()
        last_poll: float | None = None
        polling = False
        normal_s = self.settings.poll_interval_s
        last_checkpoint = time.monotonic()
        published = self._published()
        try:
            while not should_stop():
                now = time.monotonic()
                due_in = self.feed.poll_due_in(now, last_poll, normal_s, self.settings.push_poll_interval_s)
                if not polling and due_in <= 0:
                    last_poll, polling = now, True
                    thread.due.set()
                batch: list[Pushed] = []
                for kind, at, data in self.io.drain(TICK_S if polling else min(TICK_S, due_in)):
                    if kind == "message":
                        self.feed.on_message(at)
                        topic, payload = data
                        batch += self._admit(openf1_push.decode(topic, payload, at, session_key))
                    elif kind == "connect":
                        self.feed.on_connect(at)
                    elif kind == "disconnect":
                        self.feed.on_disconnect(at, data)
                    elif kind == "polled":
                        polling = False
                        batch += self.feed.poll_finished(at)
                        normal_s = live.cycle_period(self.settings.poll_interval_s, data[1], self.limiter)
                    elif kind == "poll_error":
                        raise data
                self.feed.tick(time.monotonic())
                self.process(batch)
                self._sync_holds()
                if max_cycles is not None and self.poller.result.cycles >= max_cycles and not polling:
                    break
                now = time.monotonic()
                if (
                    self._published() != published
                    and now - last_checkpoint >= self.settings.push_checkpoint_s
                ):
                    self.poller.checkpoint()
                    last_checkpoint, published = now, self._published()
        finally:
            thread.halt.set()
            thread.join(timeout=60)
            self.stats["fallbacks"], self.stats["recoveries"] = self.feed.fallbacks, self.feed.recoveries
        self.process(self.feed.release_all())  # the last poll has run: nothing held is lost
        self.poller.checkpoint()

    def _published(self) -> int:
        return sum(self.poller.result.published.values()) + self.poller.result.dead_letters

    def _admit(self, decoded: Pushed | Undecodable) -> list[Pushed]:
        self.stats["messages"] += 1
        if isinstance(decoded, Undecodable):
            self.stats["undecodable"] += 1
            with self.poller.lock:
                self.poller.dead("push", {"topic": decoded.topic, "payload": decoded.body}, decoded.reason)
            return []
        now, over = self.feed.admit(decoded)
        self.stats["held"] += 0 if now or over else 1
        with self.poller.lock:
            if not now and not over:  # held: the poll must not forget the ids from its date on
                self._hold(decoded)
            for m in over:
                self.poller.dead(
                    m.endpoint, m.record, f"openf1 push {m.endpoint}: more than {self.feed.max_held} held"
                )
        return now

    def _hold(self, message: Pushed) -> None:
        try:
            date = openf1.record_date(message.endpoint, message.record)
        except (TypeError, ValueError):
            return  # malformed: a dead letter when it is released
        holds = self.poller.state.holds
        if date is not None and (message.endpoint not in holds or date < holds[message.endpoint]):
            holds[message.endpoint] = date

    def _sync_holds(self) -> None:
        """After released records went through: the holds of the records still held."""
        with self.poller.lock:
            self.poller.state.holds.clear()
            for message in self.feed.held:
                self._hold(message)

    def process(self, batch: list[Pushed]) -> None:
        """Pushed records -> the poller's path: stints and pit stops enrich laps, the rest is published."""
        if not batch:
            return
        groups = openf1_push.by_endpoint(batch)
        for endpoint in openf1_push.ENRICHING:
            for record in groups.pop(endpoint, []):
                if (reason := openf1.malformed(endpoint, record)) is not None:
                    with self.poller.lock:
                        self.poller.dead(endpoint, record, reason)
                elif endpoint == "stints":
                    self.stints[(record["driver_number"], record["stint_number"])] = record
                else:
                    self.pits[openf1.event_id(endpoint, record)] = record
        stints, pits = self._enrichment()
        for endpoint, records in groups.items():
            if self.recorder is not None:
                self.recorder.add(endpoint, records)
            self.poller.accept_and_publish(endpoint, records, stints, pits)

    def _enrichment(self) -> tuple[list[Any], list[Any]]:
        """The poll's last /stints and /pit answers merged with the pushed ones (per stint: the one
        that has run longer, as OpenF1 updates a stint's lap_end while it runs)."""
        stints: dict[tuple[Any, Any], Any] = {}
        for record in [*self.poller.stints, *self.stints.values()]:
            if not isinstance(record, dict):
                continue
            key = (record.get("driver_number"), record.get("stint_number"))
            old = stints.get(key)
            if old is None or (record.get("lap_end") or 0) >= (old.get("lap_end") or 0):
                stints[key] = record
        pits = {openf1.event_id("pit", p): p for p in self.poller.pits if isinstance(p, dict)}
        return list(stints.values()), list({**pits, **self.pits}.values())


def run(
    client: OpenF1Client,
    settings: LiveSettings,
    options: live.LiveOptions,
    recorder: Recorder | None = None,
    password: Callable[[], str] | None = None,
    stop: threading.Event | None = None,
    on_start: Callable[[PushRunner], None] | None = None,
) -> live.LiveResult:
    """Follow the session by push (and poll) until Ctrl-C, ``stop`` or ``max_cycles`` polls."""
    with live.application(settings).get_producer() as producer, StopFlag() as flag:
        poller = live.LivePoller(client, producer, settings, recorder)
        poller.start(options.session_key, options.resume)
        feed_io = MqttFeed(
            settings.openf1_mqtt_broker,
            settings.openf1_mqtt_port,
            openf1_push.mqtt_topics(),
            tls=settings.openf1_mqtt_tls,
            websockets=settings.openf1_mqtt_websockets,
            username=settings.openf1_username,
            password=password,
        )
        with feed_io:
            runner = PushRunner(poller, feed_io, settings, client.limiter, recorder)
            if on_start is not None:
                on_start(runner)
            runner.run(lambda: flag.requested or (stop is not None and stop.is_set()), options.max_cycles)
        poller.result.interrupted = flag.requested
        if recorder is not None:
            recorder.save(poller.result.session_key)
        return poller.result
