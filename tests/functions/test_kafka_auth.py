"""Kafka security settings (``functions/kafka_auth.py``): one set of STRATX_KAFKA_* variables rendered
for librdkafka, kafka-python and Quix Streams; inconsistent settings refused with the variables named.

The client libraries themselves check the rendered configuration: confluent-kafka refuses unknown
keys or values when a client is built (no broker needed), kafka-python's clients list their keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaAdminClient, KafkaProducer
from pydantic import SecretStr, ValidationError

from stratx.functions.kafka_auth import MECHANISMS, PLAINTEXT, KafkaAuth, KafkaAuthError
from stratx.functions.settings import IngestSettings, KafkaSettings, PredictionAppSettings

PASSWORD = "p4ss-do-not-print"


def sasl_ssl(ca: Path | None = None, mechanism: str = "SCRAM-SHA-512") -> KafkaAuth:
    return KafkaAuth("SASL_SSL", mechanism, "strategist", SecretStr(PASSWORD), ca)  # type: ignore[arg-type]


def test_plaintext_adds_nothing_to_any_client() -> None:
    assert PLAINTEXT.librdkafka() == {} and PLAINTEXT.kafka_python() == {}
    assert PLAINTEXT.connection("h:1").as_librdkafka_dict() == {"bootstrap.servers": "h:1"}
    assert KafkaSettings().kafka_auth() == PLAINTEXT  # the default: the embedded broker, local Redpanda


def test_sasl_ssl_renders_each_library_s_names(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    auth = sasl_ssl(ca)
    assert auth.librdkafka() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "strategist",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(ca),
    }
    assert auth.kafka_python() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "strategist",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": str(ca),
    }
    quix = auth.connection("broker-0:9092,broker-1:9092")
    assert quix.bootstrap_servers == "broker-0:9092,broker-1:9092"
    assert (quix.security_protocol, quix.sasl_mechanism, quix.sasl_username) == (
        "sasl_ssl",
        "SCRAM-SHA-512",
        "strategist",
    )
    assert quix.sasl_password is not None and quix.sasl_password.get_secret_value() == PASSWORD
    assert quix.ssl_ca_location == str(ca)
    assert PASSWORD not in repr(auth) + auth.describe() + repr(quix)
    assert auth.describe() == f"SASL_SSL, SCRAM-SHA-512 as strategist, CA {ca}"


def test_tls_without_sasl_sends_no_credentials() -> None:
    auth = KafkaAuth("SSL")
    assert auth.librdkafka() == {"security.protocol": "SSL"}
    assert auth.kafka_python() == {"security_protocol": "SSL"}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_accepts_the_rendered_configuration(mechanism: str) -> None:
    config = {"bootstrap.servers": "127.0.0.1:1", **sasl_ssl(mechanism=mechanism).librdkafka()}
    Producer(config)  # raises KafkaException on an unknown key or value; connects lazily
    Consumer({**config, "group.id": "stratx-auth-test"}).close()
    with pytest.raises(Exception, match="Unsupported SASL mechanism"):
        Producer({**config, "sasl.mechanisms": "NOT-A-MECHANISM"})  # the check is real


def test_kafka_python_knows_every_rendered_key() -> None:
    keys = set(sasl_ssl(Path(__file__)).kafka_python())
    assert keys <= set(KafkaAdminClient.DEFAULT_CONFIG) and keys <= set(KafkaProducer.DEFAULT_CONFIG)
    assert set(sasl_ssl().kafka_python()["sasl_mechanism"].split()) <= {
        "PLAIN",
        "SCRAM-SHA-256",
        "SCRAM-SHA-512",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "SASL_SSL"}, "needs STRATX_KAFKA_SASL_USERNAME and STRATX_KAFKA_SASL_PASSWORD"),
        ({"protocol": "SASL_PLAINTEXT", "username": "u"}, "STRATX_KAFKA_SASL_PASSWORD"),
        ({"protocol": "SASL_SSL", "username": "u", "password": SecretStr("")}, "STRATX_KAFKA_SASL_PASSWORD"),
        ({"protocol": "PLAINTEXT", "ca_location": Path(__file__)}, "use SSL or SASL_SSL"),
        (
            {"protocol": "SSL", "ca_location": Path("/nonexistent/ca.pem")},
            "no CA file at /nonexistent/ca.pem",
        ),
        ({"protocol": "TLS"}, "STRATX_KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"protocol": "SSL", "mechanism": "GSSAPI"}, "STRATX_KAFKA_SASL_MECHANISM must be one of"),
    ],
)
def test_settings_that_do_not_fit_together_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(KafkaAuthError, match=message):
        KafkaAuth(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [KafkaSettings, PredictionAppSettings, IngestSettings])
def test_every_kafka_deployable_reads_them_from_the_environment(
    cls: type[KafkaSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATX_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValidationError, match="STRATX_KAFKA_SASL_USERNAME"):
        cls()  # a half-configured deployable stops at start, naming what is missing
    monkeypatch.setenv("STRATX_KAFKA_SASL_USERNAME", "strategist")
    monkeypatch.setenv("STRATX_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("STRATX_KAFKA_SASL_MECHANISM", "PLAIN")
    auth = cls().kafka_auth()
    assert (auth.protocol, auth.mechanism, auth.username) == ("SASL_SSL", "PLAIN", "strategist")
    assert auth.password is not None and auth.password.get_secret_value() == PASSWORD
