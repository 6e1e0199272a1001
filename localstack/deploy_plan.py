"""What one deployment of the serverless ingest function consists of, as pure data: the name of
every resource (:class:`Names`), the settings the AWS API would refuse (:func:`check`), the
function's environment and its role's least-privilege inline policy (:func:`role_policy`).
No AWS calls; re-exported by :mod:`stratx.localstack.deploy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stratx.functions.settings import DeploySettings

RUNTIME = "python3.11"
STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST")
SASL_MECHANISMS = ("SASL_SCRAM_512_AUTH", "SASL_SCRAM_256_AUTH", "BASIC_AUTH")
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@dataclass(frozen=True)
class Names:
    """The name of every resource of one deployment."""

    role: str
    policy: str
    function: str
    secret: str
    table: str
    queue: str | None

    @classmethod
    def of(cls, settings: DeploySettings) -> Names:
        base = f"{settings.deploy_name}-ingest"
        # an MSK SASL/SCRAM secret must be named AmazonMSK_*; a Redpanda one may be named anything
        secret = f"{settings.deploy_name}-kafka-sasl"
        if settings.deploy_msk_cluster_arn:
            secret = f"AmazonMSK_{secret}"
        return cls(
            base,
            f"{base}-policy",
            base,
            secret,
            settings.idempotency_table,
            settings.deploy_sqs_queue or None,
        )


# ------------------------------------------------------------------ pure parts
def check(settings: DeploySettings) -> None:
    """Refuse settings the AWS API would refuse later, with the variable to fix."""
    if settings.deploy_kafka_starting_position not in STARTING_POSITIONS:
        raise ValueError(f"STRATX_DEPLOY_KAFKA_STARTING_POSITION must be one of {STARTING_POSITIONS}")
    if settings.deploy_kafka_sasl_mechanism not in SASL_MECHANISMS:
        raise ValueError(f"STRATX_DEPLOY_KAFKA_SASL_MECHANISM must be one of {SASL_MECHANISMS}")
    if bool(settings.deploy_kafka_sasl_username) != bool(settings.deploy_kafka_sasl_password):
        raise ValueError("set both STRATX_DEPLOY_KAFKA_SASL_USERNAME and _PASSWORD, or neither")
    if (
        settings.deploy_kafka_trigger or settings.deploy_msk_cluster_arn
    ) and not settings.deploy_kafka_topics:
        raise ValueError("a Kafka trigger needs STRATX_DEPLOY_KAFKA_TOPICS")
    if settings.deploy_msk_cluster_arn:
        msk_arn(settings.deploy_msk_cluster_arn, "topic", "check")


def has_secret(settings: DeploySettings) -> bool:
    return bool(settings.deploy_kafka_sasl_username and settings.deploy_kafka_sasl_password)


def function_env(settings: DeploySettings) -> dict[str, str]:
    """The function's environment: STRATX_* settings only (the handler reads them through IngestSettings)."""
    return {
        "STRATX_BROKER_ADDRESS": settings.broker_address,
        "STRATX_IDEMPOTENCY_BACKEND": "dynamodb",
        "STRATX_IDEMPOTENCY_TABLE": settings.idempotency_table,
    }


def role_policy(
    names: Names,
    region: str,
    account: str,
    *,
    table_arn: str,
    secret_arn: str | None = None,
    queue_arn: str | None = None,
    msk_cluster_arn: str | None = None,
    topics: tuple[str, ...] = (),
    consumer_group: str = "",
) -> dict[str, Any]:
    """The function role's inline policy: only the actions on only the resources it uses."""
    log_group = f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{names.function}"
    statements: list[dict[str, Any]] = [
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogGroup"], "Resource": log_group},
        {
            "Sid": "LogEvents",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{log_group}:*",
        },
        {
            "Sid": "Idempotency",
            "Effect": "Allow",
            "Action": ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem"],
            "Resource": table_arn,
        },
    ]
    if secret_arn:
        statements.append(
            {
                "Sid": "KafkaSecret",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": secret_arn,
            }
        )
    if queue_arn:
        statements.append(
            {
                "Sid": "ReplayQueue",
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                "Resource": queue_arn,
            }
        )
    if msk_cluster_arn:
        statements += [
            {
                "Sid": "MskCluster",
                "Effect": "Allow",
                "Action": [
                    "kafka:DescribeCluster",
                    "kafka:DescribeClusterV2",
                    "kafka:GetBootstrapBrokers",
                    "kafka-cluster:Connect",  # IAM access control on the cluster (no SASL secret)
                    "kafka-cluster:DescribeClusterDynamicConfiguration",
                ],
                "Resource": msk_cluster_arn,
            },
            {
                "Sid": "MskTopics",
                "Effect": "Allow",
                "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                "Resource": [msk_arn(msk_cluster_arn, "topic", t) for t in topics],
            },
            {
                "Sid": "MskGroup",
                "Effect": "Allow",
                "Action": ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
                "Resource": msk_arn(msk_cluster_arn, "group", consumer_group),
            },
            {  # Lambda polls MSK from network interfaces in the cluster's VPC; EC2 allows no narrower scope
                "Sid": "MskVpc",
                "Effect": "Allow",
                "Action": [
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeVpcs",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                ],
                "Resource": "*",
            },
        ]
    return {"Version": "2012-10-17", "Statement": statements}


def msk_arn(cluster_arn: str, kind: str, name: str) -> str:
    """ARN of a topic or group of an MSK cluster (arn:...:cluster/<name>/<uuid> -> arn:...:<kind>/<name>/<uuid>/<x>)."""
    prefix, found, rest = cluster_arn.partition(":cluster/")
    if not found or rest.count("/") != 1:
        raise ValueError(
            f"not an MSK cluster ARN (arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>): {cluster_arn}"
        )
    return f"{prefix}:{kind}/{rest}/{name}"
