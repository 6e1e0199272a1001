"""Security basics (issue #8): loopback binds by default, websocket origins, secrets, request sizes.

No network beyond in-process ASGI calls; servers are replaced by recorders where binding is the
thing checked (mocks are fine in the unit tier), so nothing here listens on a port.
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from stratx.bentos.kit import serving_limits
from stratx.bentos.kit.serving_limits import BodyLimit
from stratx.bentos.lifecycle import serve
from stratx.functions import settings
from stratx.quix_apps.kit import openf1_client, openf1_server
from tests import bentos_support as support

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("functions", "quix_apps", "panel_app", "bentos", "localstack", "feature_repo")
ELSEWHERE = "10.20.30.40"  # a non-loopback address: the setting must reach the bind call
SECRET = "s3cr3t-Pa55word-do-not-print"


def settings_classes() -> list[type[BaseSettings]]:
    return [
        c
        for c in vars(settings).values()
        if inspect.isclass(c) and issubclass(c, BaseSettings) and c.__module__ == settings.__name__
    ]


# ------------------------------------------------------------------ binds
def test_every_host_setting_defaults_to_loopback() -> None:
    hosts = {
        (cls.__name__, name): info.default
        for cls in settings_classes()
        for name, info in cls.model_fields.items()
        if name.endswith("_host")
    }
    assert {name for _, name in hosts} >= {"broker_host", "serve_host", "dashboard_host", "metrics_host"}
    assert {k: v for k, v in hosts.items() if v != "127.0.0.1"} == {}


def wildcard_literals(path: Path) -> list[int]:
    """Lines of string constants that are a wildcard address (in a longer text they are prose)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in ("0.0.0.0", "::")]


def test_no_source_file_binds_a_wildcard_address() -> None:
    """0.0.0.0 / :: appear in no code (only in compose/k8s files, through the *_HOST settings)."""
    found = {
        str(p.relative_to(REPO)): wildcard_literals(p)
        for d in SOURCE_DIRS
        for p in sorted((REPO / d).rglob("*.py"))
    }
    assert {k: v for k, v in found.items() if v} == {}


def test_the_broker_binds_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from stratx.quix_apps import cli
    from stratx.quix_apps.cli import stack

    bound: list[str] = []

    class Recorder:
        def __init__(self, host: str, port: int, *_: object, **__: object) -> None:
            bound.append(host)

        def __enter__(self) -> None:
            raise KeyboardInterrupt  # stop before anything listens

        def __exit__(self, *_: object) -> None:
            return None

    monkeypatch.setattr(stack.broker, "EmbeddedBroker", Recorder)
    args = cli.build_parser().parse_args(["broker", "--no-topics"])
    for env, want in ((None, "127.0.0.1"), (ELSEWHERE, ELSEWHERE)):
        if env:
            monkeypatch.setenv("STRATX_BROKER_HOST", env)
        with pytest.raises(KeyboardInterrupt):
            stack.cmd_broker(args)
        assert bound[-1] == want


def test_model_services_bind_the_serve_host(monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[list[str]] = []

    class Popen:
        def __init__(self, command: list[str], **_: object) -> None:
            commands.append(command)

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(serve.subprocess, "Popen", Popen)
    monkeypatch.setattr(serve, "wait_ready", lambda *_a, **_k: None)
    monkeypatch.setattr(serve, "stop", lambda *_a, **_k: None)
    for host in ("127.0.0.1", ELSEWHERE):
        with serve.services(["lap_time"], settings.ServingSettings(serve_host=host)):
            pass
        command = commands[-1]
        assert command[command.index("--host") + 1] == host


@pytest.mark.parametrize("key", support.SERVED_KEYS)
def test_a_bare_bentoml_serve_listens_on_loopback_and_limits_bodies(key: str) -> None:
    """`bentoml serve` without --host binds the service's http.host (BentoML's own default is
    0.0.0.0); every service carries the body-size middleware."""
    service = support.load_service(key)
    assert service.config["http"]["host"] == "127.0.0.1"
    assert (BodyLimit, {"max_bytes": serving_limits.MAX_REQUEST_BYTES}) in service.middlewares


def test_the_dashboard_binds_its_setting_and_allows_only_its_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    from stratx.panel_app import app

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(app.pn, "serve", lambda *_a, **kw: calls.append(kw))
    monkeypatch.setattr(app, "shared_consumer", lambda *_a, **_k: None)
    monkeypatch.setattr(app.metrics, "serve", lambda *_a, **_k: None)

    app.serve(settings.DashboardSettings(dashboard_port=5999))
    assert calls[-1]["address"] == "127.0.0.1"
    assert sorted(calls[-1]["allow_websocket_origin"]) == ["127.0.0.1:5999", "localhost:5999"]

    opened = settings.DashboardSettings(
        dashboard_host=ELSEWHERE, dashboard_port=5999, dashboard_allow_websocket_origin=["obs.local:8080"]
    )
    app.serve(opened)
    assert calls[-1]["address"] == ELSEWHERE
    assert sorted(calls[-1]["allow_websocket_origin"]) == sorted(
        [f"{ELSEWHERE}:5999", "127.0.0.1:5999", "localhost:5999", "obs.local:8080"]
    )
    assert not any("*" in o for call in calls for o in call["allow_websocket_origin"])


def test_metrics_exporters_bind_the_metrics_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from stratx.quix_apps.kit import metrics

    addresses: list[str] = []

    def recorder(port: int, addr: str = "0.0.0.0") -> tuple[object, object]:  # prometheus_client's default
        addresses.append(addr)
        return object(), object()

    monkeypatch.setattr(metrics, "start_http_server", recorder)
    for host in ("127.0.0.1", ELSEWHERE):
        monkeypatch.setattr(metrics, "_exporters", {})
        metrics.serve("lap", settings.FeatureAppSettings(metrics_host=host))
        assert addresses[-1] == host


def test_the_local_openf1_server_is_loopback_only() -> None:
    """The recording server of `stratx replay --recording` is in-process and never meant to be
    reached from elsewhere: loopback, not configurable."""
    assert inspect.signature(openf1_server.serve).parameters["host"].default == "127.0.0.1"
    from stratx.quix_apps.cli import races

    calls = [
        n
        for n in ast.walk(ast.parse(inspect.getsource(races._replay_recording)))
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "serve"
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "openf1_server"
    ]
    assert len(calls) == 1 and not calls[0].keywords and len(calls[0].args) == 1


# ------------------------------------------------------------------ secrets
@pytest.fixture()
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STRATX_OPENF1_USERNAME", "me@example.com")
    monkeypatch.setenv("STRATX_OPENF1_PASSWORD", SECRET)
    monkeypatch.setenv("STRATX_DEPLOY_KAFKA_SASL_USERNAME", "stratx")
    monkeypatch.setenv("STRATX_DEPLOY_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("STRATX_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STRATX_KAFKA_SASL_USERNAME", "stratx")
    monkeypatch.setenv("STRATX_KAFKA_SASL_PASSWORD", SECRET)
    yield


def test_secret_settings_are_secret_strings(secrets_in_env: None) -> None:
    live = settings.LiveSettings()
    deploy = settings.DeploySettings()
    assert isinstance(live.openf1_password, SecretStr) and live.openf1_password.get_secret_value() == SECRET
    assert isinstance(deploy.deploy_kafka_sasl_password, SecretStr)
    kafka = settings.KafkaSettings()
    assert isinstance(kafka.kafka_sasl_password, SecretStr)
    assert kafka.kafka_auth().librdkafka()["sasl.password"] == SECRET  # only a client gets it in clear
    for shown in (
        repr(live),
        str(live),
        live.model_dump_json(),
        repr(deploy),
        deploy.model_dump_json(),
        repr(kafka),
        kafka.model_dump_json(),
        repr(kafka.kafka_auth()),
        kafka.kafka_auth().describe(),
    ):
        assert SECRET not in shown


def test_stratx_config_never_prints_a_secret(
    secrets_in_env: None, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from stratx.quix_apps import cli

    caplog.set_level(logging.DEBUG)
    assert cli.main(["config"]) == 0
    out = capsys.readouterr()
    assert "STRATX_OPENF1_PASSWORD" in out.out and "STRATX_KAFKA_SASL_PASSWORD" in out.out
    assert SECRET not in out.out + out.err + caplog.text


@pytest.mark.parametrize(
    "answer",
    [
        lambda _r: httpx.Response(200, json={"access_token": "tok", "expires_in": 3600}),
        lambda _r: httpx.Response(401, text="invalid username or password"),
        lambda _r: httpx.Response(200, text="<html>oops</html>"),
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)),
    ],
    ids=["ok", "rejected", "malformed", "unreachable"],
)
def test_the_openf1_login_never_logs_or_raises_the_password(
    secrets_in_env: None, answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        result: httpx.Response = answer(request)
        return result

    live = settings.LiveSettings()
    assert live.openf1_username is not None and live.openf1_password is not None
    http = httpx.Client(transport=httpx.MockTransport(handler))
    provider = openf1_client.TokenProvider(live.openf1_username, live.openf1_password, http=http)
    message = ""
    try:
        provider.token()
    except openf1_client.OpenF1AuthError as exc:
        message = f"{exc} {exc!r} {exc.__cause__!r}"
    assert SECRET.encode() in sent[0]  # it does reach the token endpoint
    assert SECRET not in message + caplog.text + repr(provider) + str(vars(provider))


# ------------------------------------------------------------------ request size
def echo_app(max_bytes: int) -> TestClient:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"size": len(await request.body())})

    app = Starlette(routes=[Route("/predict", echo, methods=["POST"])])
    app.add_middleware(BodyLimit, max_bytes=max_bytes)
    return TestClient(app)


def test_a_body_over_the_limit_gets_413_before_the_app_reads_it() -> None:
    client = echo_app(1000)
    assert client.post("/predict", content=b"x" * 1000).json() == {"size": 1000}
    declared = client.post("/predict", content=b"x" * 1001)
    assert declared.status_code == 413 and "1000 bytes" in declared.json()["error"]

    def chunks(n: int) -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        for _ in range(n):
            yield b"x" * 300

    assert client.post("/predict", content=chunks(3)).json() == {"size": 900}  # handed on whole
    streamed = client.post("/predict", content=chunks(5))
    assert streamed.status_code == 413


def test_the_limit_fits_the_largest_legitimate_request() -> None:
    """MAX_ROWS rows of each service's row schema with every field at a long value fit the cap."""
    from stratx.bentos.kit.serving_schemas import MAX_ROWS, SCHEMAS

    for key, spec in SCHEMAS.items():
        row = {name: -1.2345678901234567e-100 for name in spec.row.model_fields}
        body = json.dumps({"rows": [row] * MAX_ROWS})
        assert len(body) < serving_limits.MAX_REQUEST_BYTES, key
