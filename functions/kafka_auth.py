"""How StratX's Kafka clients authenticate and encrypt: one set of settings, three client libraries.

The embedded broker and a local Redpanda speak PLAINTEXT; a managed or multi-tenant Redpanda
(Redpanda Cloud, a cluster with authorization on) wants SASL (SCRAM or PLAIN) over TLS. StratX
reaches the broker through three libraries with three spellings of the same settings:

* confluent-kafka / librdkafka (``security.protocol``, ``sasl.mechanisms``, ...): the readers and
  writers in :mod:`kafka_io`, the lag monitor, the dashboard's consumer;
* Quix Streams' ``ConnectionConfig`` (every streaming app, built from the librdkafka names);
* kafka-python (``security_protocol``, ``sasl_plain_username``, ...): topic admin and the
  serverless sink.

:class:`KafkaAuth` holds the ``STRATX_KAFKA_*`` settings once and renders each. The password stays
a ``SecretStr`` until a client is built, so it is in no repr, log line or ``stratx config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr

if TYPE_CHECKING:  # Quix is imported only by the apps that connect through it (not by serverless handlers)
    from quixstreams.kafka.configuration import ConnectionConfig

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PROTOCOLS: tuple[Protocol, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS: tuple[Mechanism, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaAuthError(ValueError):
    """The security settings do not fit together; the message names the variables to set."""


@dataclass(frozen=True)
class KafkaAuth:
    """Security of a Kafka connection. ``PLAINTEXT`` (the default) adds nothing to any client."""

    protocol: Protocol = "PLAINTEXT"
    mechanism: Mechanism = "SCRAM-SHA-256"
    username: str | None = None
    password: SecretStr | None = None
    ca_location: Path | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaAuthError(f"STRATX_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}")
        if self.mechanism not in MECHANISMS:
            raise KafkaAuthError(f"STRATX_KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}")
        if self.sasl and not (self.username and self.password and self.password.get_secret_value()):
            raise KafkaAuthError(
                f"security protocol {self.protocol} needs STRATX_KAFKA_SASL_USERNAME and "
                "STRATX_KAFKA_SASL_PASSWORD"
            )
        if self.ca_location is not None and not self.tls:
            raise KafkaAuthError(
                f"STRATX_KAFKA_SSL_CA_LOCATION is set but the security protocol is {self.protocol}; "
                "use SSL or SASL_SSL"
            )
        if self.ca_location is not None and not self.ca_location.is_file():
            raise KafkaAuthError(f"STRATX_KAFKA_SSL_CA_LOCATION: no CA file at {self.ca_location}")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    def describe(self) -> str:
        """One line for logs and error messages, never the password."""
        parts: list[str] = [self.protocol]
        if self.sasl:
            parts.append(f"{self.mechanism} as {self.username}")
        if self.ca_location is not None:
            parts.append(f"CA {self.ca_location}")
        return ", ".join(parts)

    def librdkafka(self) -> dict[str, str]:
        """confluent-kafka / librdkafka configuration keys (empty for PLAINTEXT)."""
        if self.protocol == "PLAINTEXT":
            return {}
        config: dict[str, str] = {"security.protocol": self.protocol}
        if self.sasl and self.password is not None:
            config |= {
                "sasl.mechanisms": self.mechanism,
                "sasl.username": self.username or "",
                "sasl.password": self.password.get_secret_value(),
            }
        if self.ca_location is not None:
            config["ssl.ca.location"] = str(self.ca_location)
        return config

    def kafka_python(self) -> dict[str, Any]:
        """kafka-python client keyword arguments (empty for PLAINTEXT)."""
        if self.protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl and self.password is not None:
            config |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password.get_secret_value(),
            }
        if self.ca_location is not None:
            config["ssl_cafile"] = str(self.ca_location)
        return config

    def connection(self, bootstrap_servers: str) -> ConnectionConfig:
        """Quix Streams' connection settings (``Application(broker_address=...)``)."""
        from quixstreams.kafka.configuration import ConnectionConfig

        return ConnectionConfig.from_librdkafka_dict(
            {"bootstrap.servers": bootstrap_servers, **self.librdkafka()}
        )


PLAINTEXT = KafkaAuth()
