"""The local OpenF1 test server, in process (no sockets): fixture, filters, clock, faults."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import httpx
import pytest

from stratx.quix_apps.kit.openf1_server import (
    DEFAULT_DATA_DIR,
    ENDPOINTS,
    DroppedConnection,
    Faults,
    OpenF1App,
    SimClock,
    _Compiled,
    create_app,
    lights_out_clock,
    parse_date,
    parse_query,
)

LIGHTS_OUT = "2023-11-19T06:04:05.009000+00:00"
VER_LAP1_END = parse_date(LIGHTS_OUT) + timedelta(seconds=106.03)  # real lap 1: 106.030 s


@pytest.fixture(scope="module")
def shared_app() -> OpenF1App:
    return create_app()


@pytest.fixture
def app(shared_app: OpenF1App) -> OpenF1App:
    """The loaded data is shared; clock, faults and stats are fresh per test."""
    return OpenF1App(shared_app.data)


class SyncClient:
    """Sync calls over ``httpx.ASGITransport`` (no sockets). Starlette's TestClient is not used:
    with httpx (not httpx2) it raises a StarletteDeprecationWarning, an error here."""

    def __init__(self, app: OpenF1App) -> None:
        self.app = app

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://openf1.test") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)


@pytest.fixture
def client(app: OpenF1App) -> SyncClient:
    return SyncClient(app)


# ---- fixture -----------------------------------------------------------------------------------
def test_fixture_is_small_and_matches_manifest() -> None:
    files = sorted(DEFAULT_DATA_DIR.glob("*"))
    assert sum(p.stat().st_size for p in files) < 6_000_000
    manifest = json.loads((DEFAULT_DATA_DIR / "MANIFEST.json").read_text())
    assert manifest["session_key"] == 9189 and manifest["lights_out"] == LIGHTS_OUT
    for name, count in manifest["files"].items():
        with gzip.open(DEFAULT_DATA_DIR / f"{name}.jsonl.gz", "rt") as fh:
            assert sum(1 for _ in fh) == count, name


def test_fixture_records_have_openf1_shape(app: OpenF1App) -> None:
    car = app.query("car_data")
    assert set(car[0]) == {
        "brake",
        "date",
        "driver_number",
        "drs",
        "meeting_key",
        "n_gear",
        "rpm",
        "session_key",
        "speed",
        "throttle",
    }
    assert {r["driver_number"] for r in car} == {1, 11, 16, 55}
    assert all(r["date"].endswith("+00:00") and r["meeting_key"] == 1225 for r in car[:100])
    assert set(app.query("location")[0]) == {
        "date",
        "driver_number",
        "meeting_key",
        "session_key",
        "x",
        "y",
        "z",
    }
    laps = app.query("laps")
    assert len(laps) == 949 and len({r["driver_number"] for r in laps}) == 20
    assert isinstance(laps[0]["segments_sector_1"], list)
    assert app.query("sessions")[0]["session_name"] == "Race"
    assert len(app.query("drivers")) == 20


# ---- query parsing and filters -----------------------------------------------------------------
def test_parse_query_operators_encoding_and_bare_keys() -> None:
    fs = parse_query(
        "session_key=9189&date>=2023-11-19T06:00:00+00:00&position%3C=3&lap_number>5&date&csv=true"
    )
    assert [(f.key, f.op, f.value) for f in fs] == [
        ("session_key", "=", "9189"),
        ("date", ">=", "2023-11-19T06:00:00+00:00"),
        ("position", "<=", "3"),
        ("lap_number", ">", "5"),
    ]


def test_exact_and_comparison_filters_are_anded(client: SyncClient) -> None:
    r = client.get("/v1/laps?session_key=9189&driver_number=1&lap_number>=10&lap_number<12")
    assert r.status_code == 200
    assert [(x["driver_number"], x["lap_number"]) for x in r.json()] == [(1, 10), (1, 11)]


def test_same_key_equality_is_ored(client: SyncClient) -> None:
    laps = client.get("/v1/laps?driver_number=1&driver_number=11&lap_number=1").json()
    assert sorted(x["driver_number"] for x in laps) == [1, 11]


@pytest.mark.parametrize(
    "bound",
    [
        "2023-11-19T06:10:00",
        "2023-11-19T06:10:00Z",
        "2023-11-19T06:10:00%2B00:00",
        "2023-11-19T06:10:00.000+00:00",
    ],
)
def test_date_filters_accept_openf1_date_forms(client: SyncClient, bound: str) -> None:
    rows = client.get(f"/v1/car_data?driver_number=16&date>{bound}&date<=2023-11-19T06:10:01").json()
    assert rows and all("2023-11-19T06:10:00" < x["date"] <= "2023-11-19T06:10:01" for x in rows)
    assert {x["driver_number"] for x in rows} == {16}


def test_date_only_value_and_numeric_and_bool_filters(client: SyncClient) -> None:
    assert len(client.get("/v1/laps?date_start>=2023-11-19").json()) == 949
    assert client.get("/v1/laps?date_start<2023-11-19").json() == []
    out_laps = client.get("/v1/laps?is_pit_out_lap=true").json()
    assert out_laps and all(x["is_pit_out_lap"] for x in out_laps)
    fast = client.get("/v1/car_data?speed>=340").json()
    assert fast and min(x["speed"] for x in fast) >= 340
    assert client.get("/v1/stints?compound=HARD&driver_number=1").json()[0]["compound"] == "HARD"


def test_latest_session_and_meeting(client: SyncClient) -> None:
    latest = client.get("/v1/laps?session_key=latest&driver_number=55").json()
    assert latest == client.get("/v1/laps?session_key=9189&driver_number=55").json() and latest
    assert client.get("/v1/sessions?meeting_key=latest").json()[0]["session_key"] == 9189
    assert client.get("/v1/laps?session_key=1234").json() == []


@pytest.mark.parametrize("endpoint", ["intervals", "position", "pit", "overtakes"])
def test_endpoints_without_recorded_data_answer_empty(client: SyncClient, endpoint: str) -> None:
    r = client.get(f"/v1/{endpoint}?session_key=9189")
    assert r.status_code == 200 and r.json() == []


def test_every_endpoint_served_and_unknown_is_404(client: SyncClient) -> None:
    for ep in ENDPOINTS:
        assert client.get(f"/v1/{ep}?session_key=9189&date>2099-01-01").status_code == 200
    assert client.get("/v1/nope").status_code == 404


def test_invalid_date_value_is_422(client: SyncClient) -> None:
    assert client.get("/v1/car_data?date>yesterday").status_code == 422


# ---- simulated clock ---------------------------------------------------------------------------
def test_clock_manual_advance_set_pause_and_speed() -> None:
    c = SimClock(LIGHTS_OUT, speed=0)
    assert c.now() == parse_date(LIGHTS_OUT)
    c.advance(10.5)
    assert c.now() == parse_date(LIGHTS_OUT) + timedelta(seconds=10.5)
    c.set("2023-11-19T07:00:00Z")
    assert c.now().isoformat() == "2023-11-19T07:00:00+00:00"
    c.set_speed(1000)
    time.sleep(0.02)
    assert c.now_ts() - parse_date("2023-11-19T07:00:00Z").timestamp() >= 20
    c.pause()
    frozen = c.now_ts()
    time.sleep(0.01)
    assert c.now_ts() == frozen
    c.resume()
    time.sleep(0.01)
    assert c.now_ts() > frozen


def test_laps_arrive_when_finished(app: OpenF1App, client: SyncClient) -> None:
    app.clock = lights_out_clock(app)
    assert client.get("/v1/laps?driver_number=1").json() == []
    app.clock.set(VER_LAP1_END - timedelta(milliseconds=1))
    assert client.get("/v1/laps?driver_number=1").json() == []
    app.clock.set(VER_LAP1_END)
    assert [x["lap_number"] for x in client.get("/v1/laps?driver_number=1").json()] == [1]


def test_dated_records_arrive_by_date(app: OpenF1App, client: SyncClient) -> None:
    app.clock = lights_out_clock(app, offset_s=60)
    now = app.clock.now_ts()
    car = client.get("/v1/car_data?driver_number=1").json()
    assert car and all(parse_date(x["date"]).timestamp() <= now for x in car)
    assert parse_date(car[-1]["date"]).timestamp() > now - 1.5
    rc = client.get("/v1/race_control").json()
    assert rc[-1]["date"] <= app.clock.now().isoformat()
    assert client.get("/v1/sessions").json() and client.get("/v1/drivers").json()  # known up front


def test_stints_arrive_at_their_first_lap_and_grow(app: OpenF1App, client: SyncClient) -> None:
    app.clock = lights_out_clock(app, offset_s=-1)
    assert client.get("/v1/stints?driver_number=1").json() == []
    app.clock.advance(1)
    first = client.get("/v1/stints?driver_number=1").json()
    assert [(s["stint_number"], s["lap_start"], s["lap_end"]) for s in first] == [(1, 1, 1)]
    app.clock.advance(3600 * 3)  # after the flag: recorded values
    full = client.get("/v1/stints?driver_number=1").json()
    assert full == [r.data for r in app.data.records["stints"] if r.data["driver_number"] == 1]


def test_laps_arrival_is_monotonic_per_driver(app: OpenF1App) -> None:
    by_driver: dict[int, list[tuple[int, float]]] = {}
    for r in app.data.records["laps"]:
        by_driver.setdefault(r.data["driver_number"], []).append((r.data["lap_number"], r.arrival))
    for rows in by_driver.values():
        arrivals = [a for _, a in sorted(rows)]
        assert arrivals == sorted(arrivals)


# ---- faults ------------------------------------------------------------------------------------
def test_burst_429_carries_retry_after_then_recovers(app: OpenF1App, client: SyncClient) -> None:
    app.faults.update(burst_429=2, retry_after_s=3)
    for _ in range(2):
        r = client.get("/v1/laps?driver_number=1&lap_number=1")
        assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert client.get("/v1/laps?driver_number=1&lap_number=1").status_code == 200


def test_rate_limit_per_window(app: OpenF1App, client: SyncClient) -> None:
    app.faults.update(rate_limit=3, rate_window_s=10)
    codes = [client.get("/v1/sessions").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = client.get("/v1/sessions")
    assert 1 <= int(r.headers["retry-after"]) <= 10
    app.faults.update(rate_window_s=0.05)
    time.sleep(0.06)
    assert client.get("/v1/sessions").status_code == 200


def test_errors_next_and_rate_are_seeded(app: OpenF1App, client: SyncClient) -> None:
    app.faults.update(error_next=1)
    assert client.get("/v1/sessions").status_code == 500
    assert client.get("/v1/sessions").status_code == 200
    app.faults.update(error_rate=0.5, seed=7)
    first = [client.get("/v1/sessions").status_code for _ in range(40)]
    assert 5 < first.count(500) < 35
    app.faults.update(seed=8)
    app.faults.update(seed=7)
    assert [client.get("/v1/sessions").status_code for _ in range(40)] == first


def test_delay(app: OpenF1App, client: SyncClient) -> None:
    app.faults.update(delay_s=0.2)
    t = time.monotonic()
    assert client.get("/v1/sessions").status_code == 200
    assert time.monotonic() - t >= 0.2


def test_drop_in_process_raises(app: OpenF1App, client: SyncClient) -> None:
    app.faults.update(drop_next=1)
    with pytest.raises(DroppedConnection):
        client.get("/v1/sessions")
    assert client.get("/v1/sessions").status_code == 200
    assert app.stats.snapshot()["by_status"] == {"dropped": 1, "200": 1}


def test_duplicates_repeat_records_before_the_cursor(app: OpenF1App, client: SyncClient) -> None:
    q = "/v1/car_data?driver_number=1&date>2023-11-19T06:10:00&date<=2023-11-19T06:10:05"
    clean = client.get(q).json()
    app.faults.update(duplicate_records=3)
    dup = client.get(q).json()
    assert dup[3:] == clean
    assert len(dup) == len(clean) + 3 and all(x["date"] <= "2023-11-19T06:10:00" for x in dup[:3])
    earlier = client.get("/v1/car_data?driver_number=1&date<=2023-11-19T06:10:00").json()
    assert dup[:3] == earlier[-3:]


def test_control_endpoint_sets_faults_and_clock(app: OpenF1App, client: SyncClient) -> None:
    r = client.post(
        "/_control",
        json={"faults": {"burst_429": 1}, "clock": {"set": LIGHTS_OUT, "speed": 0, "advance_s": 106.03}},
    )
    assert r.status_code == 200 and r.json()["faults"]["burst_429"] == 1
    assert r.json()["clock"]["now"] == VER_LAP1_END.isoformat()
    assert client.get("/v1/laps").status_code == 429
    assert [x["lap_number"] for x in client.get("/v1/laps?driver_number=1").json()] == [1]
    assert client.post("/_control", json={"faults": {"bogus": 1}}).status_code == 400
    state = client.post("/_control", json={"reset_faults": True, "reset_stats": True}).json()
    assert state["faults"] == asdict(Faults())
    assert client.get("/_stats").json()["total"] == 0


def test_stats_count_per_endpoint_and_window(app: OpenF1App, client: SyncClient) -> None:
    for _ in range(3):
        client.get("/v1/laps?driver_number=1")
    client.get("/v1/stints")
    client.get("/_stats")  # control paths are not counted
    s = client.get("/_stats").json()
    assert s["total"] == 4 and s["by_endpoint"] == {"laps": 3, "stints": 1} and s["by_status"] == {"200": 4}
    assert len(s["log"]) == 4 and app.stats.max_in_window(10) == 4
    assert "log" not in client.get("/_stats?log=0").json()


@pytest.mark.parametrize(
    "endpoint,query",
    [
        ("car_data", "driver_number=1&date>2023-11-19T06:10:00"),
        ("car_data", "driver_number=1&driver_number=55&date>=2023-11-19T06:10:00.144"),
        ("car_data", "date>2023-11-19T06:20:00&speed>300"),
        ("location", "driver_number=16&date<2023-11-19T06:06:00"),
        ("laps", "driver_number=4&date_start>2023-11-19T06:05:00"),
        ("laps", "lap_number>=3"),
        ("stints", "driver_number=11"),
        ("race_control", "date>2023-11-19T06:04:05"),
        ("weather", "date>=2023-11-19T06:00:00"),
    ],
)
@pytest.mark.parametrize("offset_s", [0.135, 600, 1e6])
def test_indexed_query_equals_full_scan(app: OpenF1App, endpoint: str, query: str, offset_s: float) -> None:
    app.clock = lights_out_clock(app, offset_s=offset_s)
    now = app.clock.now_ts()
    comp = _Compiled(parse_query(query))
    brute = [r.data for r in app.data.records[endpoint] if r.arrival <= now and comp.match(r)]
    if endpoint == "stints":
        brute = [app._live_stint(s, now) for s in brute]
    assert app.query(endpoint, query) == brute
