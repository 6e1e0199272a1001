"""Security basics on a real model service: a bare ``bentoml serve`` (no ``--host``) listens on
loopback only, and a body over the 16 MiB cap gets 413 (declared or chunked) while normal
requests are answered. One service (lap_time) with a small real champion."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import psutil
import pytest

from stratx.bentos.kit import serving_limits
from stratx.bentos.lifecycle import serve
from stratx.quix_apps.kit.broker import free_port
from tests import bentos_support as support

pytestmark = pytest.mark.integration
KEY = "lap_time"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, support.Champions]]:
    folder = tmp_path_factory.mktemp("limits")
    with support.bentoml_home(folder / "bentoml"):
        champions = support.train_and_import(folder / "registry", keys=(KEY,))
        champions.require(KEY)
        port = free_port()
        with (folder / "serve.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bentoml", "serve", ".", "--port", str(port)],  # no --host
                cwd=serve.BENTOS_DIR / KEY,
                env=serve.bento_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running = serve.Running(KEY, f"http://127.0.0.1:{port}", process)
        try:
            serve.wait_ready([running], 180)
            yield running.url, process.pid, champions
        finally:
            serve.stop([running])


def test_a_bare_bentoml_serve_listens_on_loopback_only(service: tuple[str, int, support.Champions]) -> None:
    url, pid, _ = service
    port = int(url.rsplit(":", 1)[1])
    family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    pids = {p.pid for p in family}
    listening = {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and (c.pid is None or c.pid in pids)
    }
    assert listening == {"127.0.0.1"}


def test_a_body_over_the_cap_gets_413_and_normal_requests_are_answered(
    service: tuple[str, int, support.Champions],
) -> None:
    url, _, champions = service
    rows = support.request_rows(KEY, champions.corpus.laps)
    ok = httpx.post(f"{url}/predict", json={"rows": rows}, timeout=30)
    assert ok.status_code == 200 and ok.json()["rows"] == len(rows)

    cap = serving_limits.MAX_REQUEST_BYTES
    declared = httpx.post(
        f"{url}/predict", content=b" " * (cap + 1), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert declared.status_code == 413, declared.text
    assert str(cap) in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap is counted as the body streams in
        for _ in range(cap // 2**20 + 1):
            yield b" " * 2**20
        yield b" "

    streamed = httpx.post(
        f"{url}/predict", content=chunks(), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert streamed.status_code == 413, streamed.text
    again = httpx.post(f"{url}/predict", json={"rows": rows[:1]}, timeout=30)
    assert again.status_code == 200  # the service goes on
