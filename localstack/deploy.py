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
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from stratx.functions.settings import DeploySettings

RUNTIME = "python3.11"
STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST")
SASL_MECHANISMS = ("SASL_SCRAM_512_AUTH", "SASL_SCRAM_256_AUTH", "BASIC_AUTH")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same modules give the same CodeSha256
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


# ------------------------------------------------------------------ packaging
LAZY_IMPORTS = ("kafka",)
"""Top-level modules the handler imports only when it runs (kafka-python: the output sink); boto3
is left out, the Lambda runtime has it."""
_PROBE = """
import importlib, importlib.metadata as md, json, sys
before = set(sys.modules)
importlib.import_module(sys.argv[1])
mods = {n: m.__file__ for n, m in list(sys.modules.items()) if n.split(".")[0] == "stratx" and getattr(m, "__file__", None)}
tops = {n.split(".")[0] for n in set(sys.modules) - before} - set(sys.stdlib_module_names) - {"stratx"}
dists = md.packages_distributions()
pins = sorted({f"{d}=={md.version(d)}" for t in tops | set(sys.argv[2:]) for d in dists.get(t, [])})
print(json.dumps({"modules": mods, "requirements": pins}))
"""


@dataclass(frozen=True)
class Package:
    """What the handler needs: the stratx files in the zip, the pinned third-party distributions."""

    files: dict[str, Path]
    requirements: list[str]


def handler_package(handler: str) -> Package:
    """Import the handler's module in a child interpreter and list what it loaded."""
    module = handler.rsplit(".", 1)[0]
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *LAZY_IMPORTS], capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"cannot import the handler module {module}: {last}")
    found = json.loads(run.stdout.strip().splitlines()[-1])
    files: dict[str, Path] = {}
    for name, file in found["modules"].items():
        path = Path(file)
        if path.suffix != ".py":
            continue
        parts = name.split(".")
        arcname = "/".join(parts) + ("/__init__.py" if path.name == "__init__.py" else ".py")
        files[arcname] = path
    return Package(dict(sorted(files.items())), list(found["requirements"]))


def build_zip(files: dict[str, Path]) -> bytes:
    """A deterministic zip (sorted entries, fixed times) of ``{arcname: file}``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in sorted(files.items()):
            info = zipfile.ZipInfo(arcname, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def code_sha256(blob: bytes) -> str:
    """Lambda's CodeSha256 of a zip."""
    return base64.b64encode(hashlib.sha256(blob).digest()).decode()


def layer_command(requirements_file: Path, target: Path) -> list[str]:
    """pip command that installs the handler's dependencies for Lambda's python3.11 x86_64 runtime."""
    return [
        sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.11",
        "--target", str(target / "python"), "-r", str(requirements_file),
    ]  # fmt: skip


# ------------------------------------------------------------------ AWS
Say = Callable[[str], None]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _missing(exc: ClientError) -> bool:
    return _code(exc) in {
        "NoSuchEntity",
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
    }


class Deployer:
    """Creates, inspects and removes one deployment through boto3 clients of one session."""

    def __init__(self, settings: DeploySettings, say: Say = print) -> None:
        check(settings)
        self.settings, self.names, self.say = settings, Names.of(settings), say
        session = boto3.session.Session(region_name=settings.deploy_region)
        if not session.region_name:
            raise ValueError("no AWS region: set STRATX_DEPLOY_REGION, AWS_REGION or AWS_DEFAULT_REGION")
        self.region: str = session.region_name
        self.iam = session.client("iam")
        self.secrets = session.client("secretsmanager")
        self.dynamodb = session.client("dynamodb")
        self.sqs = session.client("sqs")
        self.lam = session.client("lambda")
        self.logs = session.client("logs")

    def _line(self, kind: str, name: str, state: str, arn: str = "") -> None:
        self.say(f"{kind:<14} {name:<34} {state:<9} {arn}".rstrip())

    # ---------------------------------------------------------- deploy
    def deploy(self) -> dict[str, str]:
        """Create or update everything; returns the ARN of each resource by kind."""
        n, s = self.names, self.settings
        self.say(f"deploying {n.function} to {self.region} via {self.lam.meta.endpoint_url}")
        arns = {"role": self._role()}
        account = arns["role"].split(":")[4]
        if has_secret(s):
            arns["secret"] = self._secret()
        else:
            self._line("secret", n.secret, "skipped", "(no STRATX_DEPLOY_KAFKA_SASL_USERNAME/_PASSWORD)")
        arns["table"] = self._table()
        if n.queue:
            arns["queue"] = self._queue()
        policy = role_policy(
            n,
            self.region,
            account,
            table_arn=arns["table"],
            secret_arn=arns.get("secret"),
            queue_arn=arns.get("queue"),
            msk_cluster_arn=s.deploy_msk_cluster_arn,
            topics=tuple(s.deploy_kafka_topics),
            consumer_group=s.deploy_kafka_consumer_group,
        )
        self._policy(policy)
        arns["function"] = self._function(arns["role"])
        if n.queue:
            arns["sqs-mapping"] = self._mapping("sqs-mapping", {"EventSourceArn": arns["queue"]})
        if s.deploy_kafka_trigger:
            arns["kafka-mapping"] = self._mapping(
                "kafka-mapping", self._kafka_source(arns.get("secret"), msk=False)
            )
        if s.deploy_msk_cluster_arn:
            arns["msk-mapping"] = self._mapping(
                "msk-mapping", self._kafka_source(arns.get("secret"), msk=True)
            )
        self._prune({v for k, v in arns.items() if k.endswith("-mapping")})
        return arns

    def _prune(self, keep: set[str]) -> None:
        """Delete the function's mappings this run did not ask for (a trigger turned off, a Kafka
        mapping whose topics or bootstrap servers changed), so a deploy leaves exactly the
        configured triggers."""
        for mapping in self._mappings():
            if mapping["UUID"] not in keep:
                self.lam.delete_event_source_mapping(UUID=mapping["UUID"])
                self._line("mapping", self.names.function, "deleted", f"{mapping['UUID']} (not configured)")

    def _role(self) -> str:
        name = self.names.role
        try:
            role = self.iam.get_role(RoleName=name)["Role"]
        except ClientError as exc:
            if not _missing(exc):
                raise
            role = self.iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST),
                Description="StratX ingest function (stratx.localstack.deploy)",
            )["Role"]
            self._line("role", name, "created", role["Arn"])
            return str(role["Arn"])
        if _as_dict(role.get("AssumeRolePolicyDocument")) != LAMBDA_TRUST:
            self.iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(LAMBDA_TRUST))
            self._line("role", name, "updated", role["Arn"])
        else:
            self._line("role", name, "unchanged", role["Arn"])
        return str(role["Arn"])

    def _policy(self, policy: dict[str, Any]) -> None:
        n = self.names
        try:
            current = _as_dict(
                self.iam.get_role_policy(RoleName=n.role, PolicyName=n.policy)["PolicyDocument"]
            )
        except ClientError as exc:
            if not _missing(exc):
                raise
            current = None
        if current == policy:
            self._line("role-policy", n.policy, "unchanged")
            return
        self.iam.put_role_policy(RoleName=n.role, PolicyName=n.policy, PolicyDocument=json.dumps(policy))
        self._line("role-policy", n.policy, "created" if current is None else "updated")

    def _secret(self) -> str:
        s, name = self.settings, self.names.secret
        password = s.deploy_kafka_sasl_password.get_secret_value() if s.deploy_kafka_sasl_password else None
        value = json.dumps({"username": s.deploy_kafka_sasl_username, "password": password})
        try:
            current = self.secrets.get_secret_value(SecretId=name)
        except ClientError as exc:
            if not _missing(exc):
                raise
            arn = str(self.secrets.create_secret(Name=name, SecretString=value)["ARN"])
            self._line("secret", name, "created", arn)
            return arn
        if current.get("SecretString") != value:
            self.secrets.put_secret_value(SecretId=name, SecretString=value)
            self._line("secret", name, "updated", current["ARN"])
        else:
            self._line("secret", name, "unchanged", current["ARN"])
        return str(current["ARN"])

    def _table(self) -> str:
        name = self.names.table
        try:
            arn = str(self.dynamodb.describe_table(TableName=name)["Table"]["TableArn"])
            self._line("table", name, "unchanged", arn)
            return arn
        except ClientError as exc:
            if not _missing(exc):
                raise
        arn = str(
            self.dynamodb.create_table(
                TableName=name,
                AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )["TableDescription"]["TableArn"]
        )
        self.dynamodb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        self._line("table", name, "created", arn)
        return arn

    def _queue(self) -> str:
        name = str(self.names.queue)
        try:
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            state = "unchanged"
        except ClientError as exc:
            if not _missing(exc):
                raise
            url, state = self.sqs.create_queue(QueueName=name)["QueueUrl"], "created"
        arn = str(
            self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        )
        self._line("queue", name, state, arn)
        return arn

    def _function(self, role_arn: str) -> str:
        s, name = self.settings, self.names.function
        package = handler_package(s.deploy_handler)
        blob = build_zip(package.files)
        config: dict[str, Any] = {
            "Role": role_arn,
            "Handler": s.deploy_handler,
            "Runtime": RUNTIME,
            "MemorySize": s.deploy_memory_mb,
            "Timeout": s.deploy_timeout_s,
            "Environment": {"Variables": function_env(s)},
            "Layers": list(s.deploy_layer_arns),
        }
        try:
            current = self.lam.get_function(FunctionName=name)["Configuration"]
        except ClientError as exc:
            if not _missing(exc):
                raise
            created = _retry_role_propagation(
                lambda: self.lam.create_function(
                    FunctionName=name,
                    Code={"ZipFile": blob},
                    Description="StratX ingest (stratx.localstack)",
                    **config,
                )
            )
            self.lam.get_waiter("function_active_v2").wait(FunctionName=name)
            self._line(
                "function", name, "created", f"{created['FunctionArn']} ({len(package.files)} modules)"
            )
            return str(created["FunctionArn"])
        changed = []
        if current.get("CodeSha256") != code_sha256(blob):
            self.lam.update_function_code(FunctionName=name, ZipFile=blob)
            self.lam.get_waiter("function_updated_v2").wait(FunctionName=name)
            changed.append("code")
        if _function_config(current) != config:
            _retry_role_propagation(
                lambda: self.lam.update_function_configuration(FunctionName=name, **config)
            )
            self.lam.get_waiter("function_updated_v2").wait(FunctionName=name)
            changed.append("configuration")
        state = f"updated ({', '.join(changed)})" if changed else "unchanged"
        self._line("function", name, state, current["FunctionArn"])
        return str(current["FunctionArn"])

    def _kafka_source(self, secret_arn: str | None, *, msk: bool) -> dict[str, Any]:
        s = self.settings
        source: dict[str, Any] = {
            "Topics": list(s.deploy_kafka_topics),
            "StartingPosition": s.deploy_kafka_starting_position,
        }
        group = {"ConsumerGroupId": s.deploy_kafka_consumer_group}
        if msk:
            source |= {
                "EventSourceArn": s.deploy_msk_cluster_arn,
                "AmazonManagedKafkaEventSourceConfig": group,
            }
        else:
            servers = [a.strip() for a in s.broker_address.split(",") if a.strip()]
            source |= {
                "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": servers}},
                "SelfManagedKafkaEventSourceConfig": group,
            }
        if secret_arn:
            source["SourceAccessConfigurations"] = [
                {"Type": s.deploy_kafka_sasl_mechanism, "URI": secret_arn}
            ]
        return source

    def _mappings(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        try:
            for page in self.lam.get_paginator("list_event_source_mappings").paginate(
                FunctionName=self.names.function
            ):
                found += page["EventSourceMappings"]
        except ClientError as exc:
            if not _missing(exc):
                raise
        return found

    def _mapping(self, kind: str, source: dict[str, Any]) -> str:
        name, batch = self.names.function, self.settings.deploy_batch_size
        mine = [m for m in self._mappings() if _same_source(m, source)]
        if not mine:
            made = self.lam.create_event_source_mapping(
                FunctionName=name, BatchSize=batch, Enabled=True, **source
            )
            self._line(kind, name, "created", made.get("EventSourceMappingArn") or made["UUID"])
            return str(made["UUID"])
        mapping = mine[0]
        ident = mapping.get("EventSourceMappingArn") or mapping["UUID"]
        if mapping.get("BatchSize") != batch:
            self.lam.update_event_source_mapping(UUID=mapping["UUID"], BatchSize=batch)
            self._line(kind, name, "updated", ident)
        else:
            self._line(kind, name, "unchanged", ident)
        return str(mapping["UUID"])

    # ---------------------------------------------------------- status / teardown
    def status(self) -> dict[str, bool]:
        """Print and return which resources exist."""
        n = self.names
        self.say(f"status of {n.function} in {self.region} via {self.lam.meta.endpoint_url}")
        checks: dict[str, tuple[str, Callable[[], Any]]] = {
            "role": (n.role, lambda: self.iam.get_role(RoleName=n.role)["Role"]["Arn"]),
            "role-policy": (
                n.policy,
                lambda: self.iam.get_role_policy(RoleName=n.role, PolicyName=n.policy)["PolicyName"],
            ),
            "secret": (n.secret, lambda: self.secrets.describe_secret(SecretId=n.secret)["ARN"]),
            "table": (n.table, lambda: self.dynamodb.describe_table(TableName=n.table)["Table"]["TableArn"]),
            "function": (
                n.function,
                lambda: self.lam.get_function(FunctionName=n.function)["Configuration"]["FunctionArn"],
            ),
        }
        if n.queue:
            checks["queue"] = (n.queue, lambda: self.sqs.get_queue_url(QueueName=n.queue)["QueueUrl"])
        present: dict[str, bool] = {}
        for kind, (name, probe) in checks.items():
            try:
                self._line(kind, name, "present", str(probe()))
                present[kind] = True
            except ClientError as exc:
                if not _missing(exc):
                    raise
                self._line(kind, name, "absent")
                present[kind] = False
        mappings = self._mappings()
        for m in mappings:
            source = m.get("EventSourceArn") or ",".join(m.get("Topics", [])) or "kafka"
            self._line("mapping", n.function, str(m.get("State", "?")), f"{m['UUID']} <- {source}")
        present["mappings"] = bool(mappings)
        return present

    def teardown(self) -> None:
        """Delete every resource of the deployment (absent ones are reported, not an error)."""
        n = self.names
        self.say(f"tearing down {n.function} in {self.region} via {self.lam.meta.endpoint_url}")
        for m in self._mappings():
            self.lam.delete_event_source_mapping(UUID=m["UUID"])
            self._line("mapping", n.function, "deleted", m["UUID"])
        secret_names = {n.secret, n.secret.removeprefix("AmazonMSK_"), f"AmazonMSK_{n.secret}"}
        steps: list[tuple[str, str, Callable[[], Any]]] = [
            ("function", n.function, lambda: self.lam.delete_function(FunctionName=n.function)),
            (
                "log-group",
                f"/aws/lambda/{n.function}",
                lambda: self.logs.delete_log_group(logGroupName=f"/aws/lambda/{n.function}"),
            ),
            ("table", n.table, lambda: self._delete_table(n.table)),
            *(("secret", name, partial(self._delete_secret, name)) for name in sorted(secret_names)),
            (
                "role-policy",
                n.policy,
                lambda: self.iam.delete_role_policy(RoleName=n.role, PolicyName=n.policy),
            ),
            ("role", n.role, lambda: self.iam.delete_role(RoleName=n.role)),
        ]
        if n.queue:
            url = lambda: self.sqs.get_queue_url(QueueName=n.queue)["QueueUrl"]  # noqa: E731
            steps.insert(2, ("queue", n.queue, lambda: self.sqs.delete_queue(QueueUrl=url())))
        for kind, name, delete in steps:
            try:
                delete()
                self._line(kind, name, "deleted")
            except ClientError as exc:
                if not _missing(exc):
                    raise
                self._line(kind, name, "absent")

    def _delete_table(self, name: str) -> None:
        self.dynamodb.delete_table(TableName=name)
        self.dynamodb.get_waiter("table_not_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )

    def _delete_secret(self, name: str) -> None:
        self.secrets.describe_secret(SecretId=name)  # raises ResourceNotFoundException when absent
        self.secrets.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


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
