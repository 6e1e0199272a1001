"""Reading boto3's answers for the deployer: ClientError codes ("missing" resources), IAM policy
documents, a deployed function's configuration and event-source mappings in comparable form, and
the retry while a new IAM role propagates. Re-exported by :mod:`stratx.localstack.deploy`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _missing(exc: ClientError) -> bool:
    return _code(exc) in {
        "NoSuchEntity",
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
    }


def _as_dict(document: Any) -> Any:
    """IAM returns policy documents decoded by boto3 (dict) or URL-encoded JSON text."""
    if isinstance(document, str):
        from urllib.parse import unquote

        return json.loads(unquote(document))
    return document


def _function_config(current: dict[str, Any]) -> dict[str, Any]:
    """The deployed function's configuration in the shape :meth:`Deployer._function` sends."""
    return {
        "Role": current.get("Role"),
        "Handler": current.get("Handler"),
        "Runtime": current.get("Runtime"),
        "MemorySize": current.get("MemorySize"),
        "Timeout": current.get("Timeout"),
        "Environment": {"Variables": current.get("Environment", {}).get("Variables", {})},
        "Layers": [layer["Arn"] for layer in current.get("Layers", [])],
    }


def _same_source(mapping: dict[str, Any], source: dict[str, Any]) -> bool:
    """Whether an existing mapping reads the source a new one would read (Kafka: same topics too;
    Lambda cannot change a mapping's topics or servers, so another source means a new mapping)."""
    if "Topics" in source and sorted(mapping.get("Topics", [])) != sorted(source["Topics"]):
        return False
    if "SelfManagedEventSource" in source:
        endpoints = mapping.get("SelfManagedEventSource", {}).get("Endpoints", {})
        return bool(endpoints) and endpoints == source["SelfManagedEventSource"]["Endpoints"]
    return bool(mapping.get("EventSourceArn")) and mapping.get("EventSourceArn") == source["EventSourceArn"]


def _retry_role_propagation(call: Callable[[], Any], attempts: int = 10, delay_s: float = 3.0) -> Any:
    """A new IAM role takes seconds before Lambda can assume it (real AWS); retry that one error."""
    for attempt in range(attempts):
        try:
            return call()
        except ClientError as exc:
            text = str(exc)
            if (
                _code(exc) != "InvalidParameterValueException"
                or "cannot be assumed" not in text
                or attempt == attempts - 1
            ):
                raise
            time.sleep(delay_s)
    raise AssertionError("unreachable")
