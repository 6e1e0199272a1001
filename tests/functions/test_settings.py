"""Typed, frozen settings read from STRATX_* environment variables, listed in one place."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

from stratx.functions import settings as settings_mod
from stratx.functions.settings import ENV_VARS, BrokerSettings, KafkaSettings, ReplaySettings

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"

# every settings class of the module, found by inspection so a new one cannot be forgotten
SETTINGS_CLASSES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(settings_mod, inspect.isclass)
        if issubclass(cls, BaseSettings) and cls.__module__ == settings_mod.__name__ and cls.model_fields
    ),
    key=lambda c: c.__name__,
)
FIELDS = sorted({(cls, name) for cls in SETTINGS_CLASSES for name in cls.model_fields}, key=str)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("STRATX_"):
            monkeypatch.delenv(name)


def test_the_settings_classes_are_found() -> None:
    assert {BrokerSettings, KafkaSettings, ReplaySettings} <= set(SETTINGS_CLASSES)


def test_broker_address_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KafkaSettings().broker_address == "127.0.0.1:9092"
    monkeypatch.setenv("STRATX_BROKER_ADDRESS", "redpanda:29092")
    assert KafkaSettings().broker_address == "redpanda:29092"
    assert ReplaySettings().broker_address == "redpanda:29092"


def test_invalid_env_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATX_BROKER_PORT", "70000")
    with pytest.raises(ValidationError):
        BrokerSettings()


@pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda c: c.__name__)
def test_settings_are_frozen(cls: type[BaseSettings]) -> None:
    settings = cls()
    name = next(iter(cls.model_fields))
    with pytest.raises(ValidationError):
        setattr(settings, name, getattr(settings, name))


def test_env_vars_list_every_field() -> None:
    expected = {f"STRATX_{name.upper()}" for _, name in FIELDS}
    assert set(ENV_VARS) == expected
    assert all(re.fullmatch(r"STRATX_[A-Z0-9_]+", name) for name in ENV_VARS)
    assert all(ENV_VARS.values()), "every variable needs a description"


def _sample(default: object, tmp_path: Path, annotation: object = None) -> tuple[str, object]:
    """An env-var text different from the default, and the value it should parse to."""
    if isinstance(default, bool):
        return str(not default).lower(), not default
    if get_origin(annotation) is Literal:  # another allowed value
        other = next(v for v in get_args(annotation) if v != default)
        return str(other), other
    if isinstance(default, int):
        return str(default + 1), default + 1
    if isinstance(default, float):
        return str(default + 0.5), default + 0.5
    if isinstance(default, Path) or (default is None and "Path" in str(annotation)):
        return str(tmp_path / "somewhere"), tmp_path / "somewhere"
    if "list" in str(annotation):  # lists are JSON in the environment
        return '["studio.example:8080"]', ["studio.example:8080"]
    return "example.invalid:1234", "example.invalid:1234"


@pytest.mark.parametrize(("cls", "field"), FIELDS, ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_each_listed_variable_is_read(
    cls: type[BaseSettings], field: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    info = cls.model_fields[field]
    text, value = _sample(info.default, tmp_path, info.annotation)
    name = f"STRATX_{field.upper()}"
    assert name in ENV_VARS
    monkeypatch.setenv(name, text)
    if field == "kafka_ssl_ca_location":  # a CA file is only valid with a TLS protocol, and must exist
        monkeypatch.setenv("STRATX_KAFKA_SECURITY_PROTOCOL", "SSL")
        Path(text).write_text("-----BEGIN CERTIFICATE-----\n")
    got = getattr(cls(), field)
    assert (got.get_secret_value() if isinstance(got, SecretStr) else got) == value


def test_building_settings_creates_no_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRATX_FASTF1_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STRATX_DATA_DIR", str(tmp_path / "data"))
    ReplaySettings()
    assert list(tmp_path.iterdir()) == []


def test_functions_never_read_the_environment() -> None:
    """The pure core declares the settings (functions/settings.py, the one module that may import
    pydantic_settings: an object reads the environment only when an entry point builds it) and
    reads nothing itself."""
    offenders = [
        f"{path.name}:{n}"
        for path in sorted(FUNCTIONS_DIR.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if (
            re.search(r"\bos\.(environ|getenv)\b|\bgetenv\(", line.split("#")[0])
            and not (path.name == "settings.py" and n <= 12)
        )  # its docstring says who reads os.environ
        or ("pydantic_settings" in line and path.name != "settings.py")
    ]
    assert offenders == []
