"""Bad bytes on an input topic become dead letters in every app, never a crash."""

from __future__ import annotations

from typing import Any

import pytest

from stratx.functions import schemas
from stratx.quix_apps import telemetry_features
from stratx.quix_apps.kit import wire


class _State:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", "not a JSON object: list"),
        (b"42", "not a JSON object: int"),
        (b'{"_invalid": null}', "a JSON object with a reserved key"),  # found by the fuzz test
        (b'{"_raw": 1, "Speed": 300}', "a JSON object with a reserved key"),
    ],
)
def test_telemetry_app_dead_letters_undecodable_samples(raw: bytes, reason: str) -> None:
    state = _State()
    out = telemetry_features.process(wire.parse(raw), "9189:1", 0, None, state)
    assert len(out) == 1
    letter = schemas.DeadLetter.model_validate(out[0]["DeadLetter"])
    assert letter.Reason.startswith(reason) and letter.Stage == telemetry_features.STAGE
    assert state.data == {}


def test_parse_keeps_dicts_and_marks_the_rest() -> None:
    assert wire.parse({"a": 1}) == {"a": 1}
    assert wire.parse(b'{"a": 1}') == {"a": 1}
    assert wire.is_invalid(wire.parse(None))
    assert wire.parse(b"\xff\xfe")[wire.RAW]  # undecodable bytes are kept (replaced) for the record


@pytest.mark.parametrize("fails", [False, True])
def test_run_stops_the_lag_monitor_when_the_app_returns_or_raises(
    monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    """An app run in-process (tests, serverless adapters) must not leave its lag thread polling a
    broker that may be gone."""
    from types import SimpleNamespace

    from stratx.functions.settings import KafkaSettings
    from stratx.quix_apps.kit import metrics

    stopped: list[bool] = []
    monitor = SimpleNamespace(stop=lambda: stopped.append(True))
    monkeypatch.setattr(metrics, "instrument_app", lambda *a, **k: monitor)

    def run(timeout: float) -> None:
        if fails:
            raise RuntimeError("broker gone")

    app = SimpleNamespace(config=SimpleNamespace(consumer_group="g"), run=run)
    if fails:
        with pytest.raises(RuntimeError):
            wire.run(app, "lap", KafkaSettings(), idle_timeout=1.0)  # type: ignore[arg-type]
    else:
        assert wire.run(app, "lap", KafkaSettings(), idle_timeout=1.0) == 0  # type: ignore[arg-type]
    assert stopped == [True]
