"""OpenF1 HTTP client without a network (httpx.MockTransport): rate limit, backoff, Retry-After,
token refresh, malformed responses. Clock and sleep are fakes, so nothing waits."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from stratx.quix_apps.kit import openf1_client as oc

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "openf1"
LAPS = json.loads((FIX / "raw_sample_2024_canada_9531" / "driver_number=1" / "laps.json").read_text())
NOW = datetime(2024, 6, 9, 18, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def client(
    handler: Callable[[httpx.Request], httpx.Response], clock: FakeClock, **kw: object
) -> oc.OpenF1Client:
    return oc.OpenF1Client(
        "https://api.openf1.org/v1",
        transport=httpx.MockTransport(handler),
        clock=clock,
        sleep=clock.sleep,
        wall_clock=lambda: NOW,
        rand=lambda: 0.0,
        **kw,  # type: ignore[arg-type]
    )


def test_fetch_returns_records_and_sends_filters() -> None:
    seen: list[httpx.URL] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.url)
        return httpx.Response(200, json=LAPS)

    with client(handler, FakeClock()) as c:
        got = c.fetch(
            "laps", {"session_key": "9531", "driver_number": "1", "date_start>=": "2024-06-09T18:00:00+00:00"}
        )
    assert got == LAPS
    assert seen[0].path == "/v1/laps"
    assert dict(seen[0].params) == {
        "session_key": "9531",
        "driver_number": "1",
        "date_start>": "2024-06-09T18:00:00+00:00",
    }


def test_rate_limit_minimum_time() -> None:
    clock = FakeClock()
    with client(lambda _: httpx.Response(200, json=[]), clock, rate_limit=30, rate_window=10.0) as c:
        assert c.limiter.window == 10.5
        for _ in range(65):
            c.fetch("weather", {"session_key": "9531"})
    # 65 requests at 30 per 10 s (+ the client's 0.5 s margin): the 31st waits until t=10.5,
    # the 61st until t=21
    assert clock.t == pytest.approx(21.0)
    assert c.requests == 65


def test_limiter_window_slides() -> None:
    clock = FakeClock()
    lim = oc.SlidingWindowLimiter(3, 1.0, clock, clock.sleep)
    stamps = []
    for _ in range(7):
        lim.acquire()
        stamps.append(clock.t)
    assert stamps == [0, 0, 0, 1, 1, 1, 2]


def test_backoff_sequence_on_5xx_and_timeouts() -> None:
    clock = FakeClock()
    calls = iter([503, "timeout", 502, "connect", 200])

    def handler(req: httpx.Request) -> httpx.Response:
        step = next(calls)
        if step == "timeout":
            raise httpx.ReadTimeout("slow", request=req)
        if step == "connect":
            raise httpx.ConnectError("refused", request=req)
        return httpx.Response(int(step), json=[] if step == 200 else {"detail": "x"})

    with client(handler, clock, backoff_base=0.5, backoff_cap=30.0) as c:
        assert c.fetch("laps") == []
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]


def test_backoff_jitter_and_cap() -> None:
    assert oc.backoff_delay(0, 0.5, 30.0, 0.5, 1.0) == 0.75
    assert oc.backoff_delay(10, 0.5, 30.0, 0.5, 0.0) == 30.0


def test_gives_up_after_max_retries() -> None:
    clock = FakeClock()
    with (
        client(lambda _: httpx.Response(500, text="boom"), clock, max_retries=2) as c,
        pytest.raises(oc.OpenF1UnavailableError),
    ):
        c.fetch("laps")
    assert len(clock.sleeps) == 2 and c.requests == 3


@pytest.mark.parametrize(("header", "wait"), [("7", 7.0), ("Sun, 09 Jun 2024 18:00:12 GMT", 12.0)])
def test_retry_after_is_honoured(header: str, wait: float) -> None:
    clock = FakeClock()
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": header}, json={"detail": "Too many requests"}),
            httpx.Response(200, json=[]),
        ]
    )
    with client(lambda _: next(answers), clock) as c:
        assert c.fetch("car_data") == []
    assert clock.sleeps == [wait]


def test_retry_after_parsing() -> None:
    assert oc.retry_after_seconds(None, NOW) is None
    assert oc.retry_after_seconds("garbage", NOW) is None
    assert oc.retry_after_seconds("Sun, 09 Jun 2024 17:00:00 GMT", NOW) == 0.0


class FakeTokens:
    def __init__(self) -> None:
        self.issued = 0
        self.current = "t0"

    def token(self) -> str:
        return self.current

    def invalidate(self) -> None:
        self.issued += 1
        self.current = f"t{self.issued}"


def test_401_refreshes_token_once() -> None:
    tokens = FakeTokens()
    auth: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        auth.append(req.headers["Authorization"])
        return (
            httpx.Response(200, json=[])
            if req.headers["Authorization"] == "Bearer t1"
            else httpx.Response(401)
        )

    with client(handler, FakeClock(), token_provider=tokens) as c:
        assert c.fetch("laps") == []
    assert auth == ["Bearer t0", "Bearer t1"]


def test_401_after_refresh_raises() -> None:
    tokens = FakeTokens()
    with (
        client(
            lambda _: httpx.Response(403, json={"detail": "expired"}), FakeClock(), token_provider=tokens
        ) as c,
        pytest.raises(oc.OpenF1AuthError, match="403"),
    ):
        c.fetch("laps")
    assert tokens.issued == 1


def test_token_provider_login_and_refresh_before_expiry() -> None:
    clock = FakeClock()
    forms: list[bytes] = []

    def handler(req: httpx.Request) -> httpx.Response:
        forms.append(req.content)
        return httpx.Response(
            200, json={"access_token": f"tok{len(forms)}", "expires_in": "3600", "token_type": "bearer"}
        )

    http = httpx.Client(transport=httpx.MockTransport(handler))
    tp = oc.TokenProvider("me@example.com", "pw", http=http, refresh_margin=120, clock=clock)
    assert tp.token() == "tok1" and tp.token() == "tok1"
    assert forms[0] == b"username=me%40example.com&password=pw"
    clock.t = 3600 - 121
    assert tp.token() == "tok1"
    clock.t = 3600 - 119  # inside the margin: refreshed before expiry
    assert tp.token() == "tok2"
    tp.invalidate()
    assert tp.token() == "tok3"


def test_token_provider_rejected_login() -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(401, json={"detail": "bad"})))
    with pytest.raises(oc.OpenF1AuthError, match="login rejected"):
        oc.TokenProvider("u", "p", http=http).token()


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(200, text="<html>maintenance</html>"), "not JSON"),
        (httpx.Response(200, json={"detail": "weird"}), "expected a JSON array"),
        (httpx.Response(200, json=[1, 2]), "element 0 is not an object"),
        (httpx.Response(422, json={"detail": "bad filter"}), "HTTP 422"),
    ],
)
def test_malformed_responses_raise_for_dead_letters(response: httpx.Response, match: str) -> None:
    with (
        client(lambda _: response, FakeClock()) as c,
        pytest.raises(oc.OpenF1ResponseError, match=match) as info,
    ):
        c.fetch("laps", {"session_key": "9531"})
    assert info.value.endpoint == "laps" and info.value.params == {"session_key": "9531"}


def test_no_results_is_empty() -> None:
    with client(lambda _: httpx.Response(404, json={"detail": "No results found."}), FakeClock()) as c:
        assert c.fetch("pit", {"session_key": "9531"}) == []


def test_fetch_many_collects_errors() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return (
            httpx.Response(200, json=LAPS[:2])
            if req.url.path.endswith("laps")
            else httpx.Response(200, text="x")
        )

    with client(handler, FakeClock(), max_concurrency=2) as c:
        got = c.fetch_many([("laps", {}), ("weather", {})])
    assert got[0] == LAPS[:2] and isinstance(got[1], oc.OpenF1ResponseError)
