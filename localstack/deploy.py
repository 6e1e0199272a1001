"""Deploy the serverless ingest function to AWS or LocalStack: role, secret, table, function, triggers.

``python -m stratx.localstack.deploy deploy|teardown|status|layer``. Every run prints one progress
line per resource (created / updated / unchanged / deleted / absent) with its ARN; secret values
are never printed. ``deploy`` is idempotent: a second run changes nothing and prints "unchanged".

Where it goes is boto3's business: ``AWS_ENDPOINT_URL`` (LocalStack, moto) and the usual
credential variables, which boto3 >= 1.28.57 reads natively; the region comes from
``STRATX_DEPLOY_REGION``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION`` (:class:`DeploySettings`).

Resources, all named from ``STRATX_DEPLOY_NAME`` (default ``stratx``):

* IAM role ``<name>-ingest`` (trusted by Lambda) with one inline least-privilege policy: its own
  log group, the idempotency table, the SASL secret, the SQS queue, the MSK cluster (only those
  that are deployed);
* Secrets Manager secret with the Kafka SASL credentials (``{"username", "password"}``, the
  format Lambda's Kafka triggers read), only when both are set in the environment;
* DynamoDB idempotency table (``STRATX_IDEMPOTENCY_TABLE``, string hash key ``Id``);
* Lambda function ``<name>-ingest`` (python3.11): a zip of the ``stratx`` modules the handler
  imports, found by importing it in a child interpreter; its third-party dependencies go in a
  layer (``layer`` writes their pinned list and the ``pip install --target`` command);
* event source mappings: SQS (replay queue; moto and LocalStack free run it), and opt-in the
  self-managed Kafka / Redpanda trigger (``--kafka``) and Amazon MSK (``--msk-cluster-arn``).
  LocalStack runs Kafka triggers only in its paid edition; moto does not model them.

This module is the CLI; the deployment's pure description lives in
:mod:`~stratx.localstack.deploy_plan`, the packaging in :mod:`~stratx.localstack.deploy_package`,
the deployer in :mod:`~stratx.localstack.deploy_aws` and its boto3 helpers in
:mod:`~stratx.localstack.deploy_boto`; all are re-exported here (the public import path).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from stratx.functions.settings import DeploySettings
from stratx.localstack.deploy_aws import Deployer, Say
from stratx.localstack.deploy_boto import (
    _as_dict,
    _code,
    _function_config,
    _missing,
    _retry_role_propagation,
    _same_source,
)
from stratx.localstack.deploy_package import (
    LAZY_IMPORTS,
    ZIP_DATE,
    Package,
    build_zip,
    code_sha256,
    handler_package,
    layer_command,
)
from stratx.localstack.deploy_plan import (
    LAMBDA_TRUST,
    RUNTIME,
    SASL_MECHANISMS,
    STARTING_POSITIONS,
    Names,
    check,
    function_env,
    has_secret,
    msk_arn,
    role_policy,
)

__all__ = [
    "LAMBDA_TRUST",
    "LAZY_IMPORTS",
    "RUNTIME",
    "SASL_MECHANISMS",
    "STARTING_POSITIONS",
    "ZIP_DATE",
    "Deployer",
    "Names",
    "Package",
    "Say",
    "_as_dict",
    "_code",
    "_function_config",
    "_missing",
    "_retry_role_propagation",
    "_same_source",
    "build_zip",
    "check",
    "code_sha256",
    "function_env",
    "handler_package",
    "has_secret",
    "layer_command",
    "main",
    "msk_arn",
    "role_policy",
    "write_layer",
]


# ------------------------------------------------------------------ CLI
def write_layer(settings: DeploySettings, out: Path, install: bool, say: Say = print) -> Path:
    """Write the handler's pinned third-party requirements (and with ``install`` pip them into out/python)."""
    package = handler_package(settings.deploy_handler)
    out.mkdir(parents=True, exist_ok=True)
    requirements = out / "requirements.txt"
    requirements.write_text("".join(f"{line}\n" for line in package.requirements))
    command = layer_command(requirements, out)
    say(f"{len(package.requirements)} distributions the handler imports -> {requirements}")
    if install:
        subprocess.run(command, check=True)
        say(f"installed into {out / 'python'}; zip that folder's parent and publish it as a layer")
    else:
        say("build the layer with: " + " ".join(command))
    return requirements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stratx.localstack.deploy", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("deploy", "create or update everything"),
        ("teardown", "delete everything"),
        ("status", "what exists"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--kafka", action="store_true", help="also map the self-managed Kafka at STRATX_BROKER_ADDRESS"
        )
        p.add_argument("--msk-cluster-arn", help="also map this Amazon MSK cluster")
    layer = sub.add_parser("layer", help="the handler's dependencies as a layer requirements file")
    layer.add_argument("--out", type=Path, default=Path("build/lambda-layer"))
    layer.add_argument("--install", action="store_true", help="pip install them into OUT/python (needs PyPI)")
    args = parser.parse_args(argv)
    settings = DeploySettings()
    update: dict[str, Any] = {}
    if getattr(args, "kafka", False):
        update["deploy_kafka_trigger"] = True
    if getattr(args, "msk_cluster_arn", None):
        update["deploy_msk_cluster_arn"] = args.msk_cluster_arn
    settings = settings.model_copy(update=update)
    try:
        if args.command == "layer":
            write_layer(settings, args.out, args.install)
            return 0
        deployer = Deployer(settings)
        if args.command == "deploy":
            deployer.deploy()
        elif args.command == "teardown":
            deployer.teardown()
        else:
            deployer.status()
    except (ValueError, RuntimeError, ClientError) as exc:
        print(f"deploy: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
