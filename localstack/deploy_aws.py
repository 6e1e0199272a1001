"""The deployer: creates or updates, inspects and removes one deployment (role, secret, table,
queue, function, event-source mappings) through boto3 clients of one session, printing one line
per resource. Re-exported by :mod:`stratx.localstack.deploy`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import boto3
from botocore.exceptions import ClientError

from stratx.functions.settings import DeploySettings
from stratx.localstack.deploy_boto import (
    _as_dict,
    _function_config,
    _missing,
    _retry_role_propagation,
    _same_source,
)
from stratx.localstack.deploy_package import build_zip, code_sha256, handler_package
from stratx.localstack.deploy_plan import (
    LAMBDA_TRUST,
    RUNTIME,
    Names,
    check,
    function_env,
    has_secret,
    role_policy,
)

Say = Callable[[str], None]


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
