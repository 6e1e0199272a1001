"""HTTP client of the OpenF1 REST API (https://api.openf1.org/v1/<endpoint>): I/O only.

* a sliding-window rate limiter (default 30 requests per 10 s; OpenF1's free tier allows 3/s and
  30/min, the sponsor tier more; set the limit to your tier) shared by all threads;
* retries with exponential backoff and jitter on 429, 5xx, timeouts and connection errors,
  honouring ``Retry-After`` (seconds or an HTTP date);
* an optional bearer token (:class:`TokenProvider`, OpenF1's username/password grant on
  ``/token``); a 401/403 refreshes it once, then raises :class:`OpenF1AuthError`;
* :meth:`OpenF1Client.fetch` returns the JSON array; anything else raises
  :class:`OpenF1ResponseError` (the caller dead-letters it). OpenF1 answers an empty result with
  404 ``{"detail": "No results found."}``; that is returned as ``[]``.

Clock, sleep and randomness are injectable so tests run without waiting. Nothing here reads the
environment: credentials and limits come from the caller's settings.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from stratx.quix_apps.kit import metrics

DEFAULT_BASE_URL = "https://api.openf1.org/v1"
DEFAULT_TOKEN_URL = "https://api.openf1.org/token"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
NO_RESULTS = "No results found."


class OpenF1Error(Exception):
    """Base class of the client's errors."""


class OpenF1AuthError(OpenF1Error):
    """401/403: the token is invalid or expired (after one refresh), or the login failed."""


class OpenF1ResponseError(OpenF1Error):
    """A response that is not a JSON array (or a non-retryable HTTP error); dead-letter it."""

    def __init__(self, message: str, endpoint: str, params: Mapping[str, str], body: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.params = dict(params)
        self.body = body[:2000]


class OpenF1UnavailableError(OpenF1Error):
    """Retries exhausted on 429/5xx/timeouts/connection errors."""


class SlidingWindowLimiter:
    """At most ``limit`` acquisitions in any ``window`` seconds (thread-safe)."""

    def __init__(
        self,
        limit: int = 30,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit, self.window = limit, window
        self._clock, self._sleep = clock, sleep
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:  # held while sleeping: callers are served in order
            while True:
                now = self._clock()
                while self._stamps and now - self._stamps[0] >= self.window:
                    self._stamps.popleft()
                if len(self._stamps) < self.limit:
                    self._stamps.append(now)
                    return
                self._sleep(self._stamps[0] + self.window - now)


class TokenSource(Protocol):
    def token(self) -> str: ...
    def invalidate(self) -> None: ...


class TokenProvider:
    """OpenF1 bearer token: POST username/password (form) to ``token_url``; the response carries
    ``access_token`` and ``expires_in`` (seconds, sometimes as a string). The token is refreshed
    ``refresh_margin`` seconds before it expires, or after :meth:`invalidate`. The password is kept
    as a :class:`~pydantic.SecretStr`; neither it nor the token appears in a message, log or repr."""

    def __init__(
        self,
        username: str,
        password: str | SecretStr,
        token_url: str = DEFAULT_TOKEN_URL,
        http: httpx.Client | None = None,
        refresh_margin: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 10.0,
    ) -> None:
        self._username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        self._url = token_url
        self._http = http or httpx.Client(timeout=timeout)
        self._margin = refresh_margin
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenProvider(username={self._username!r}, password=SecretStr('**********'))"

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - self._margin:
                self._token, self._expires_at = self._login()
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _login(self) -> tuple[str, float]:
        try:
            form = {"username": self._username, "password": self._password.get_secret_value()}
            resp = self._http.post(self._url, data=form)
        except httpx.HTTPError as exc:
            raise OpenF1AuthError(f"OpenF1 token request failed: {exc!r}") from exc
        if resp.status_code != 200:
            raise OpenF1AuthError(f"OpenF1 login rejected: HTTP {resp.status_code} {resp.text[:200]}")
        try:
            body = resp.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise OpenF1AuthError(f"OpenF1 token response is malformed: {resp.text[:200]}") from exc
        return token, self._clock() + expires_in


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None if absent/invalid."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def backoff_delay(attempt: int, base: float, cap: float, jitter: float, rand: float) -> float:
    """Exponential backoff: ``min(cap, base * 2**attempt)`` stretched by up to ``jitter`` (0..1)."""
    return min(cap, base * 2**attempt) * (1.0 + jitter * rand)


class OpenF1Client:
    """``fetch(endpoint, params) -> list[dict]`` against ``base_url`` with limits, retries, auth."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        rate_limit: int = 30,
        rate_window: float = 10.0,
        max_concurrency: int = 4,
        timeout: float = 10.0,
        token_provider: TokenSource | None = None,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        jitter: float = 0.5,
        max_retry_after: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
        rate_margin: float = 0.5,
    ) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/") + "/", timeout=timeout, transport=transport)
        # the server counts arrivals, we count sends: a little slack keeps network jitter from
        # pushing a burst over the server's window (measured: 11 429s in 475 requests without it)
        self.limiter = SlidingWindowLimiter(rate_limit, rate_window + rate_margin, clock, sleep)
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.max_concurrency = max_concurrency
        self._tokens = token_provider
        self._retries, self._base, self._cap, self._jitter = max_retries, backoff_base, backoff_cap, jitter
        self._max_retry_after = max_retry_after
        self._sleep, self._now, self._rand = sleep, wall_clock, rand
        self.requests = 0  # HTTP requests sent (for metrics and tests)

    def __enter__(self) -> OpenF1Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def fetch(self, endpoint: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The records of ``/<endpoint>?<params>``. Keys like ``"date>="`` become ``date>=value``."""
        query = _query_string(params or {})
        refreshed = False
        attempt = 0
        while True:
            try:
                resp = self._send(endpoint, query)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                metrics.openf1_response(None)
                attempt = self._wait_or_raise(attempt, None, f"{endpoint}: {exc!r}")
                continue
            status = resp.status_code
            metrics.openf1_response(status)
            if status in (401, 403) and self._tokens is not None and not refreshed:
                self._tokens.invalidate()
                refreshed = True
                continue
            if status in (401, 403):
                raise OpenF1AuthError(
                    f"OpenF1 {endpoint}: HTTP {status} (token invalid or expired): {resp.text[:200]}"
                )
            if status in RETRY_STATUS:
                attempt = self._wait_or_raise(attempt, resp, f"{endpoint}: HTTP {status}")
                continue
            return _records(resp, endpoint, params or {})

    def fetch_many(
        self, calls: Iterable[tuple[str, Mapping[str, str]]]
    ) -> list[list[dict[str, Any]] | OpenF1Error]:
        """Several fetches on ``max_concurrency`` threads; each result is records or the error."""

        def one(call: tuple[str, Mapping[str, str]]) -> list[dict[str, Any]] | OpenF1Error:
            try:
                return self.fetch(*call)
            except OpenF1Error as exc:
                return exc

        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="openf1") as pool:
            return list(pool.map(one, list(calls)))

    def _send(self, endpoint: str, query: str) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if self._tokens is not None:
            headers["Authorization"] = f"Bearer {self._tokens.token()}"
        with self._slots:
            self.limiter.acquire()
            self.requests += 1
            url = endpoint.strip("/") + (f"?{query}" if query else "")
            return self._http.get(url, headers=headers)

    def _wait_or_raise(self, attempt: int, resp: httpx.Response | None, what: str) -> int:
        if attempt >= self._retries:
            raise OpenF1UnavailableError(f"OpenF1 {what}: giving up after {attempt + 1} attempts")
        metrics.openf1_retry()
        delay = backoff_delay(attempt, self._base, self._cap, self._jitter, self._rand())
        if resp is not None:
            after = retry_after_seconds(resp.headers.get("Retry-After"), self._now())
            if after is not None:
                delay = min(after, self._max_retry_after)
        self._sleep(delay)
        return attempt + 1


def _query_string(params: Mapping[str, str]) -> str:
    """OpenF1 filters put the operator in the name (``{"date>=": "2024-..."}`` -> ``date>=2024-...``)."""
    parts = []
    for name, value in params.items():
        op = next((o for o in (">=", "<=", ">", "<") if name.endswith(o)), "=")
        field = name[: -len(op)] if op != "=" else name
        parts.append(str(httpx.QueryParams({field: value})).replace("=", op, 1))
    return "&".join(parts)


def _records(resp: httpx.Response, endpoint: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
    text = resp.text
    try:
        body = resp.json()
    except ValueError:
        raise OpenF1ResponseError(
            f"OpenF1 {endpoint}: HTTP {resp.status_code}, response is not JSON", endpoint, params, text
        ) from None
    if resp.status_code == 404 and isinstance(body, dict) and body.get("detail") == NO_RESULTS:
        return []
    if resp.status_code != 200:
        raise OpenF1ResponseError(f"OpenF1 {endpoint}: HTTP {resp.status_code}", endpoint, params, text)
    if not isinstance(body, list):
        raise OpenF1ResponseError(
            f"OpenF1 {endpoint}: expected a JSON array, got {type(body).__name__}", endpoint, params, text
        )
    bad = next((i for i, row in enumerate(body) if not isinstance(row, dict)), None)
    if bad is not None:
        raise OpenF1ResponseError(
            f"OpenF1 {endpoint}: element {bad} is not an object", endpoint, params, text
        )
    return body
