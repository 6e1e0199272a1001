"""MQTT client of OpenF1's push feed (paho-mqtt 2.x): I/O only.

Connects (TLS, or MQTT over websockets, or plain TCP to a local test broker), subscribes to the
feed's topics on every (re)connect, and turns what happens into events on one queue that the live
app's thread drains: ``("connect", t, None)``, ``("disconnect", t, reason)`` and
``("message", t, (topic, payload))``, with ``t`` = ``time.monotonic()`` on arrival. paho's network
thread reconnects by itself (1 s, doubling to ``max_reconnect_s``). The password is a callable (the
OAuth2 access token, refreshed on every connect attempt); it is never logged.
"""

from __future__ import annotations

import logging
import queue
import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

log = logging.getLogger(__name__)
Event = tuple[str, float, Any]


class MqttFeed:
    """``with MqttFeed(...) as feed: feed.drain(timeout)`` -> events (see the module)."""

    def __init__(
        self,
        host: str,
        port: int,
        topics: list[str],
        *,
        tls: bool = True,
        websockets: bool = False,
        username: str | None = None,
        password: Callable[[], str] | None = None,
        qos: int = 1,
        keepalive_s: int = 30,
        max_reconnect_s: int = 30,
    ) -> None:
        self.host, self.port, self.topics, self.qos = host, port, topics, qos
        self.events: queue.Queue[Event] = queue.Queue()
        self._username, self._password = username, password
        self._keepalive = keepalive_s
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"stratx-live-{uuid.uuid4().hex[:12]}",
            transport="websockets" if websockets else "tcp",
        )
        if websockets:
            self.client.ws_set_options(path="/mqtt")
        if tls:
            self.client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self.client.reconnect_delay_set(min_delay=1, max_delay=max_reconnect_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_pre_connect = self._on_pre_connect

    def __enter__(self) -> MqttFeed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=self._keepalive)
        self.client.loop_start()  # paho's thread: connects, retries, reconnects

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drain(self, timeout: float) -> list[Event]:
        """Every queued event, waiting up to ``timeout`` s for the first one."""
        try:
            out = [self.events.get(timeout=max(0.0, timeout))]
        except queue.Empty:
            return []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    # ------------------------------------------------------------ paho callbacks (its thread)
    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        if self._password is None:
            return
        try:  # a fresh token for every attempt (OpenF1 access tokens expire)
            client.username_pw_set(self._username or "", self._password())
        except Exception as exc:  # the login failed: this attempt fails, paho retries later
            log.warning("OpenF1 push feed: no access token: %s", type(exc).__name__)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("OpenF1 push feed %s:%s refused the connection: %s", self.host, self.port, reason)
            return
        result, _ = client.subscribe([(t, self.qos) for t in self.topics])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("OpenF1 push feed: subscribe failed: %s", result)
        self.events.put(("connect", time.monotonic(), None))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.events.put(("disconnect", time.monotonic(), str(reason)))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.events.put(("message", time.monotonic(), (msg.topic, bytes(msg.payload))))
