"""The local OpenF1 test server over real HTTP (uvicorn on a loopback port, httpx client)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from stratx.quix_apps.kit.openf1_server import (
    OpenF1App,
    SessionData,
    create_app,
    lights_out_clock,
    parse_date,
    serve,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data() -> SessionData:
    return create_app().data


@pytest.fixture
def server(data: SessionData) -> Iterator[tuple[OpenF1App, str]]:
    app = OpenF1App(data, clock=lights_out_clock(data, offset_s=-30))  # manual clock
    base_url, stop = serve(app)
    try:
        yield app, base_url
    finally:
        stop()


@pytest.fixture
def client(server: tuple[OpenF1App, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[1], timeout=5) as c:
        yield c


def _poll_with_cursors(
    app: OpenF1App,
    client: httpx.Client,
    endpoint: str,
    field: str,
    drivers: list[int],
    step_s: float,
    until: float,
) -> list[dict]:
    """Poll like a live client: one request per driver per tick, ``<field>>`` cursor per driver."""
    cursor: dict[int, str | None] = dict.fromkeys(drivers)
    got: list[dict] = []
    while app.clock is not None and app.clock.now_ts() <= until:
        for d in drivers:
            q = f"/v1/{endpoint}?session_key=latest&driver_number={d}"
            if cursor[d]:
                q += f"&{field}>{cursor[d]}"
            r = client.get(q)
            assert r.status_code == 200, r.text
            rows = r.json()
            if rows:
                cursor[d] = rows[-1][field]
            got += rows
        app.clock.advance(step_s)
    return got


def test_laps_arrive_incrementally_and_exactly_once(
    server: tuple[OpenF1App, str], client: httpx.Client
) -> None:
    app, _ = server
    drivers = [1, 4, 11, 16, 55]  # 4 (Norris) crashed on lap 3: a lap without lap_duration
    assert client.get("/v1/laps?session_key=latest").json() == []
    end = parse_date("2023-11-19T07:40:00Z").timestamp()
    got = _poll_with_cursors(app, client, "laps", "date_start", drivers, step_s=45, until=end)
    expected = [r.data for r in app.data.records["laps"] if r.data["driver_number"] in drivers]
    key = lambda r: (r["driver_number"], r["lap_number"])  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, expected))  # all of them, none twice
    assert len(got) == len(expected) and {r["lap_number"] for r in got if r["driver_number"] == 4} == {
        1,
        2,
        3,
    }
    assert (
        max(r["lap_number"] for r in got if r["driver_number"] == 1) == 51
    )  # 50 racing laps + lap 51 opened after the flag (no lap_duration)


def test_car_data_cursor_gets_every_record_once(server: tuple[OpenF1App, str], client: httpx.Client) -> None:
    app, _ = server
    assert app.data.lights_out is not None
    end = app.data.lights_out.timestamp() + 31 * 60
    got = _poll_with_cursors(app, client, "car_data", "date", [1, 16], step_s=20, until=end)
    expected = [r.data for r in app.data.records["car_data"] if r.data["driver_number"] in (1, 16)]
    assert len(got) == len(expected)
    assert sorted((r["driver_number"], r["date"]) for r in got) == sorted(
        (r["driver_number"], r["date"]) for r in expected
    )


def test_speed_factor_moves_the_clock(server: tuple[OpenF1App, str], client: httpx.Client) -> None:
    app, _ = server
    assert app.clock is not None
    r = client.post("/_control", json={"clock": {"set": app.data.manifest["lights_out"], "speed": 400}})
    assert r.json()["clock"]["speed"] == 400
    time.sleep(0.4)  # >= 160 simulated seconds: VER's lap 1 (106.03 s) has arrived
    assert [x["lap_number"] for x in client.get("/v1/laps?driver_number=1&lap_number=1").json()] == [1]


def test_429_carries_retry_after_over_http(client: httpx.Client) -> None:
    client.post("/_control", json={"faults": {"burst_429": 1, "retry_after_s": 2}})
    r = client.get("/v1/laps")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    client.post("/_control", json={"faults": {"rate_limit": 30, "rate_window_s": 10}, "reset_stats": True})
    codes = [client.get("/v1/sessions").status_code for _ in range(31)]
    assert codes.count(200) == 30 and codes[-1] == 429
    last = client.get("/v1/sessions")
    assert last.status_code == 429 and 1 <= int(last.headers["Retry-After"]) <= 10


def test_500_drop_and_delay_over_http(server: tuple[OpenF1App, str], client: httpx.Client) -> None:
    client.post("/_control", json={"faults": {"error_next": 1}})
    assert client.get("/v1/laps").status_code == 500
    client.post("/_control", json={"faults": {"drop_next": 1}})
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v1/laps")
    assert client.get("/v1/laps").status_code == 200  # the client reconnects
    client.post("/_control", json={"faults": {"delay_s": 0.5}})
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1/sessions", timeout=0.1)
    client.post("/_control", json={"reset_faults": True})
    assert client.get("/v1/sessions").status_code == 200


def test_duplicates_over_http(server: tuple[OpenF1App, str], client: httpx.Client) -> None:
    app, _ = server
    assert app.clock is not None
    app.clock.advance(120)
    q = "/v1/car_data?driver_number=55&date>2023-11-19T06:05:00"
    clean = client.get(q).json()
    client.post("/_control", json={"faults": {"duplicate_records": 2}})
    dup = client.get(q).json()
    assert dup[2:] == clean and len(dup) == len(clean) + 2


def test_stats_count_requests(server: tuple[OpenF1App, str], client: httpx.Client) -> None:
    client.post("/_control", json={"reset_stats": True})
    for _ in range(4):
        client.get("/v1/laps?driver_number=1")
    client.get("/v1/weather")
    s = client.get("/_stats").json()
    assert s["total"] == 5 and s["by_endpoint"] == {"laps": 4, "weather": 1}
    assert [e["endpoint"] for e in s["log"]] == ["laps"] * 4 + ["weather"]
