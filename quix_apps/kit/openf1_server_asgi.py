"""ASGI plumbing of the local OpenF1 server: the scope/receive/send types, reading a request body,
sending a JSON answer and dropping a connection. Re-exported by
:mod:`stratx.quix_apps.kit.openf1_server`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from stratx.quix_apps.kit.openf1_server_control import DroppedConnection

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# --------------------------------------------------------------------------------------------
# ASGI helpers
# --------------------------------------------------------------------------------------------
async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def _json(
    send: Send, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": hdrs + (headers or [])})
    await send({"type": "http.response.body", "body": body})


async def _drop(send: Send) -> None:
    """Close the TCP connection without sending a byte. Under uvicorn the ASGI ``send`` is a
    bound method of its RequestResponseCycle, which holds the asyncio transport: closing it
    makes an httpx client raise ``httpx.RemoteProtocolError`` ("Server disconnected without
    sending a response"). Elsewhere (TestClient, ASGITransport) ``DroppedConnection`` is raised
    and surfaces in the client."""
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(cycle, "disconnected"):
        raise DroppedConnection("connection dropped (injected)")
    transport.close()
    for _ in range(100):  # let connection_lost run so uvicorn does not answer 500
        if cycle.disconnected:
            return
        await asyncio.sleep(0.001)
