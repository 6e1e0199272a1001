"""Network limits of the model services: loopback by default, and a request-size cap.

BentoML 1.4 has no request-size setting, and a plain ``bentoml serve`` binds ``0.0.0.0``. Every
``bentos/<model>/service.py`` therefore (1) passes its ``@bentoml.service`` options through
:func:`loopback` (``http.host`` 127.0.0.1: a bare ``bentoml serve`` in the folder listens on
loopback; ``--host`` / ``BENTOML_HOST`` / ``STRATX_SERVE_HOST`` for ``stratx serve`` open it), and
(2) adds :class:`BodyLimit`, an ASGI middleware that answers 413 to a body over
:data:`MAX_REQUEST_BYTES` (from its Content-Length at once, or while a chunked body streams in)
before the service parses it.

The cap: the largest legitimate request is ``MAX_ROWS`` (5000) rows; the widest row (an overtake
pair, 1.7 kB of JSON for real 2024 Bahrain rows) makes that 8.2 MiB, so 16 MiB leaves twice that.
"""

from __future__ import annotations

import json
from typing import Any

MAX_REQUEST_BYTES = 16 * 1024 * 1024
LOOPBACK = "127.0.0.1"

Scope = dict[str, Any]
Message = dict[str, Any]


def loopback(config: dict[str, Any]) -> dict[str, Any]:
    """``@bentoml.service`` options with the HTTP server on loopback unless they say otherwise."""
    http = {"host": LOOPBACK, **config.get("http", {})}
    return {**config, "http": http}


class BodyLimit:
    """ASGI middleware: HTTP requests with a body over ``max_bytes`` get 413 and never reach the app.

    A declared Content-Length over the cap is refused before anything is read; otherwise the body
    is read here (at most ``max_bytes``, which the service would buffer anyway) and handed on whole.
    """

    def __init__(self, app: Any, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        parts: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay([], message, receive), send)
                return
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.max_bytes:
                await self._reject(send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(parts, None, receive), send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"error": f"request body over {self.max_bytes} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(parts: list[bytes], first: Message | None, receive: Any) -> Any:
    """A ``receive`` that gives the buffered body (or ``first``) once, then the real channel."""
    pending: list[Message] = (
        [first] if first is not None else [{"type": "http.request", "body": b"".join(parts)}]
    )

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
