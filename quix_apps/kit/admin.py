"""Topic administration with kafka-python (the card's Redpanda client): create, list, describe.

Topics are created up front from the catalog with explicit partitions and configs: Tansu's
auto-created topics lack ``retention.ms`` and Quix Streams raises on them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stratx.functions.catalog import ALL_TOPICS, TopicSpec
from stratx.functions.kafka_auth import PLAINTEXT, KafkaAuth


class AdminError(Exception):
    """The broker cannot be reached or refused a request; the message is for the user as is."""


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    configs: dict[str, str]


def refused(broker_address: str, timeout_s: float = 1.0) -> str | None:
    """Why no bootstrap server can even be reached over TCP (e.g. connection refused), or None.
    A refused port fails at once; without this check kafka-python retries for its whole timeout."""
    reasons = []
    for server in broker_address.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
                return None
        except (OSError, ValueError) as exc:
            reasons.append(f"{server.strip()}: {exc}")
    return "; ".join(reasons)


def connect(broker_address: str, timeout_s: float = 5.0, auth: KafkaAuth = PLAINTEXT) -> KafkaAdminClient:
    """An admin client of ``broker_address`` (``auth``: TLS / SASL, see ``kafka_auth.py``); AdminError
    with the reason when nothing answers or the broker refuses the credentials."""
    why = refused(broker_address, min(timeout_s, 1.0))
    if why:
        raise AdminError(f"no Kafka broker answers at {broker_address} ({why})")
    try:
        return KafkaAdminClient(
            bootstrap_servers=broker_address,
            client_id="stratx-admin",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            **auth.kafka_python(),
        )
    except (KafkaError, OSError) as exc:
        how = "" if auth.protocol == "PLAINTEXT" else f" over {auth.describe()}"
        raise AdminError(
            f"no Kafka broker answers at {broker_address}{how} ({type(exc).__name__}: {exc})"
        ) from exc


def create_topics(admin: KafkaAdminClient, specs: Iterable[TopicSpec] = ALL_TOPICS) -> list[str]:
    """Create missing topics; returns the names created (existing ones are left as they are)."""
    existing = set(admin.list_topics())
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, topic_configs=s.config())
        for s in specs
        if s.name not in existing
    ]
    if not new:
        return []
    try:
        result = admin.create_topics(new)
    except TopicAlreadyExistsError:
        return []
    except KafkaError as exc:
        raise AdminError(f"creating topics failed: {exc}") from exc
    errors = [t for t in _topic_results(result) if t.get("error_code") not in (0, 36)]
    if errors:
        raise AdminError(f"creating topics failed: {errors}")
    return [t.name for t in new]


def _topic_results(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, dict):
        return list(result.get("topics", []))
    return [dict(zip(("name", "error_code", "error_message"), t, strict=False)) for t in result.topic_errors]


def list_topics(admin: KafkaAdminClient) -> list[str]:
    return sorted(admin.list_topics())


def describe_topics(admin: KafkaAdminClient, names: list[str]) -> list[TopicInfo]:
    described = admin.describe_topics(names)
    out = []
    for topic in described:
        if topic.get("error_code", 0) != 0:
            raise AdminError(f"topic {topic.get('name')}: error code {topic['error_code']}")
        configs: dict[str, str] = {}
        try:
            result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic["name"])])
            configs = _configs(result)
        except KafkaError:
            pass  # some brokers (Tansu) do not answer DescribeConfigs; partitions are still known
        out.append(TopicInfo(topic["name"], len(topic["partitions"]), configs))
    return out


def _configs(result: Any) -> dict[str, str]:
    if isinstance(result, dict):
        for per_topic in result.values():
            for cfg in per_topic.values():
                return {str(k): str(v) for k, v in (cfg or {}).items()}
        return {}
    out = {}
    for response in result if isinstance(result, list) else [result]:
        for res in getattr(response, "resources", []):
            for entry in res[4]:
                out[str(entry[0])] = str(entry[1])
    return out
