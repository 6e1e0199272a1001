"""The serverless deploy script against a moto server on loopback (what moto models: IAM roles and
policies, Secrets Manager, DynamoDB, Lambda functions, SQS event source mappings), and opt-in
against an endpoint that runs Kafka triggers (LocalStack Pro or real AWS).

moto does not model Kafka event source mappings (it refuses a mapping without EventSourceArn), so
the Kafka/MSK path runs only with STRATX_TEST_AWS_KAFKA_ENDPOINT set (see localstack/README.md).
"""

from __future__ import annotations

import json
import os
import urllib.request
import zipfile
from collections.abc import Iterator
from io import BytesIO

import boto3
import pytest

from stratx.functions.settings import DeploySettings
from stratx.localstack import deploy
from stratx.quix_apps.kit.broker import free_port

PASSWORD = "pw-9f2c-never-printed"
USER = "stratx-ingest-user"
KAFKA_ENDPOINT = os.environ.get("STRATX_TEST_AWS_KAFKA_ENDPOINT")  # opt-in, not a StratX setting


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("STRATX_", "AWS_")):
            monkeypatch.delenv(name)


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server on a free loopback port; boto3 reaches it through AWS_ENDPOINT_URL only."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto's backends are process-wide: start each test from an empty account
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
    _clean_env(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # boto3 itself reads only AWS_DEFAULT_REGION
    monkeypatch.setenv("STRATX_DEPLOY_KAFKA_SASL_USERNAME", USER)
    monkeypatch.setenv("STRATX_DEPLOY_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("STRATX_BROKER_ADDRESS", "redpanda-0.example:9092,redpanda-1.example:9092")
    try:
        yield endpoint
    finally:
        server.stop()


def _client(name: str) -> object:
    return boto3.client(name, region_name="eu-west-1")


def _states(out: str) -> dict[str, str]:
    """progress lines 'kind name state arn' -> {kind: state}"""
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in {
            "role",
            "role-policy",
            "secret",
            "table",
            "queue",
            "function",
            "sqs-mapping",
        }:
            found[parts[0]] = parts[2]
    return found


@pytest.mark.integration
def test_deploy_is_idempotent_and_teardown_leaves_nothing(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = DeploySettings()
    assert settings.deploy_region == "eu-west-1"
    deployer = deploy.Deployer(settings)
    assert deployer.lam.meta.endpoint_url == moto_endpoint  # boto3 honours AWS_ENDPOINT_URL natively

    first = deployer.deploy()
    out1 = capsys.readouterr().out
    assert set(_states(out1).values()) == {"created"}, out1
    second = deploy.Deployer(DeploySettings()).deploy()
    out2 = capsys.readouterr().out
    assert second == first
    assert set(_states(out2).values()) == {"unchanged"}, out2
    assert len(_states(out2)) == 7
    assert PASSWORD not in out1 + out2 and USER not in out1 + out2

    iam, secrets, ddb, lam, sqs = (_client(n) for n in ("iam", "secretsmanager", "dynamodb", "lambda", "sqs"))
    names = deploy.Names.of(settings)
    role = iam.get_role(RoleName=names.role)["Role"]  # type: ignore[attr-defined]
    assert role["Arn"] == first["role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com"
    }
    policy = iam.get_role_policy(RoleName=names.role, PolicyName=names.policy)["PolicyDocument"]  # type: ignore[attr-defined]
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"Logs", "LogEvents", "Idempotency", "KafkaSecret", "ReplayQueue"}
    assert by_sid["Idempotency"]["Resource"] == first["table"]
    assert by_sid["KafkaSecret"]["Resource"] == first["secret"]
    assert by_sid["ReplayQueue"]["Resource"] == first["queue"]
    assert by_sid["LogEvents"]["Resource"].endswith(f":log-group:/aws/lambda/{names.function}:*")
    assert all(s["Resource"] != "*" for s in policy["Statement"]), "least privilege: no wildcard resources"

    secret = secrets.get_secret_value(SecretId=names.secret)  # type: ignore[attr-defined]
    assert json.loads(secret["SecretString"]) == {"username": USER, "password": PASSWORD}

    table = ddb.describe_table(TableName=settings.idempotency_table)["Table"]  # type: ignore[attr-defined]
    assert table["KeySchema"] == [{"AttributeName": "Id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "Id", "AttributeType": "S"}]

    config = lam.get_function(FunctionName=names.function)["Configuration"]  # type: ignore[attr-defined]
    assert config["Handler"] == "stratx.localstack.adapters.aws_lambda.handler"
    assert config["Runtime"] == "python3.11"
    assert config["Role"] == first["role"]
    assert config["Environment"]["Variables"] == {
        "STRATX_BROKER_ADDRESS": "redpanda-0.example:9092,redpanda-1.example:9092",
        "STRATX_IDEMPOTENCY_BACKEND": "dynamodb",
        "STRATX_IDEMPOTENCY_TABLE": "stratx-idempotency",
    }
    package = deploy.handler_package(settings.deploy_handler)
    assert config["CodeSha256"] == deploy.code_sha256(deploy.build_zip(package.files))

    (mapping,) = lam.list_event_source_mappings(FunctionName=names.function)["EventSourceMappings"]  # type: ignore[attr-defined]
    assert mapping["EventSourceArn"] == first["queue"]
    assert mapping["BatchSize"] == settings.deploy_batch_size
    assert sqs.get_queue_url(QueueName="stratx-replay")["QueueUrl"]  # type: ignore[attr-defined]

    # a changed setting updates only what it touches
    with monkeypatch.context() as patch:
        patch.setenv("STRATX_DEPLOY_MEMORY_MB", "1024")
        patch.setenv("STRATX_DEPLOY_BATCH_SIZE", "25")
        deploy.Deployer(DeploySettings()).deploy()
    states = _states(capsys.readouterr().out)
    assert (
        states["function"] == "updated"
        and states["sqs-mapping"] == "updated"
        and states["role"] == "unchanged"
    )
    assert lam.get_function(FunctionName=names.function)["Configuration"]["MemorySize"] == 1024  # type: ignore[attr-defined]

    # a trigger turned off is removed by the next deploy (the queue itself stays until teardown)
    with monkeypatch.context() as patch:
        patch.setenv("STRATX_DEPLOY_SQS_QUEUE", "")
        deploy.Deployer(DeploySettings()).deploy()
    assert "(not configured)" in capsys.readouterr().out
    assert lam.list_event_source_mappings()["EventSourceMappings"] == []  # type: ignore[attr-defined]
    deploy.Deployer(DeploySettings()).deploy()
    assert _states(capsys.readouterr().out)["sqs-mapping"] == "created"

    assert deploy.main(["status"]) == 0
    status = capsys.readouterr().out
    assert status.count(" present ") == 6 and " absent" not in status and first["queue"] in status

    assert deploy.main(["teardown"]) == 0
    down = capsys.readouterr().out
    assert "deleted" in down and PASSWORD not in down
    assert lam.list_functions()["Functions"] == []  # type: ignore[attr-defined]
    assert lam.list_event_source_mappings()["EventSourceMappings"] == []  # type: ignore[attr-defined]
    assert names.role not in {r["RoleName"] for r in iam.list_roles()["Roles"]}  # type: ignore[attr-defined]
    assert secrets.list_secrets()["SecretList"] == []  # type: ignore[attr-defined]
    assert ddb.list_tables()["TableNames"] == []  # type: ignore[attr-defined]
    assert sqs.list_queues().get("QueueUrls", []) == []  # type: ignore[attr-defined]
    present = deploy.Deployer(DeploySettings()).status()
    assert not any(present.values())
    deploy.Deployer(DeploySettings()).teardown()  # again: everything absent, no error
    assert "deleted" not in capsys.readouterr().out


@pytest.mark.integration
def test_without_credentials_no_secret_and_no_secret_permission(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STRATX_DEPLOY_KAFKA_SASL_USERNAME")
    monkeypatch.delenv("STRATX_DEPLOY_KAFKA_SASL_PASSWORD")
    monkeypatch.setenv("STRATX_DEPLOY_SQS_QUEUE", "")
    arns = deploy.Deployer(DeploySettings()).deploy()
    assert set(arns) == {"role", "table", "function"}
    assert "skipped" in capsys.readouterr().out
    names = deploy.Names.of(DeploySettings())
    policy = _client("iam").get_role_policy(RoleName=names.role, PolicyName=names.policy)["PolicyDocument"]  # type: ignore[attr-defined]
    assert {s["Sid"] for s in policy["Statement"]} == {"Logs", "LogEvents", "Idempotency"}
    assert _client("lambda").list_event_source_mappings()["EventSourceMappings"] == []  # type: ignore[attr-defined]


@pytest.mark.integration
def test_bad_settings_fail_before_any_call(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STRATX_DEPLOY_KAFKA_STARTING_POSITION", "EARLIEST")
    assert deploy.main(["deploy", "--kafka"]) == 2
    assert "STRATX_DEPLOY_KAFKA_STARTING_POSITION" in capsys.readouterr().err
    assert _client("iam").list_roles()["Roles"] == []  # type: ignore[attr-defined]


# ------------------------------------------------------------------ without a server
def test_role_policy_scopes_msk_topics_and_group() -> None:
    names = deploy.Names.of(
        DeploySettings(deploy_msk_cluster_arn="arn:aws:kafka:eu-west-1:1:cluster/f1/abc-1")
    )
    assert names.secret == "AmazonMSK_stratx-kafka-sasl"  # MSK SASL/SCRAM secrets must be named AmazonMSK_*
    policy = deploy.role_policy(
        names,
        "eu-west-1",
        "1",
        table_arn="arn:aws:dynamodb:eu-west-1:1:table/t",
        msk_cluster_arn="arn:aws:kafka:eu-west-1:1:cluster/f1/abc-1",
        topics=("stratx.inbound.openf1",),
        consumer_group="g",
    )
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["MskTopics"]["Resource"] == [
        "arn:aws:kafka:eu-west-1:1:topic/f1/abc-1/stratx.inbound.openf1"
    ]
    assert by_sid["MskGroup"]["Resource"] == "arn:aws:kafka:eu-west-1:1:group/f1/abc-1/g"
    assert "KafkaSecret" not in by_sid  # IAM auth: no secret
    with pytest.raises(ValueError, match="MSK cluster ARN"):
        deploy.msk_arn("arn:aws:kafka:eu-west-1:1:topic/x", "topic", "t")


def test_a_mapping_is_the_same_source_only_with_the_same_servers_and_topics() -> None:
    servers = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["a:9092"]}}
    kafka = {"SelfManagedEventSource": servers, "Topics": ["t1", "t2"]}
    assert deploy._same_source(
        {"SelfManagedEventSource": servers, "Topics": ["t2", "t1"], "UUID": "u"}, kafka
    )
    assert not deploy._same_source({"SelfManagedEventSource": servers, "Topics": ["t1"]}, kafka)
    other = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b:9092"]}}
    assert not deploy._same_source({"SelfManagedEventSource": other, "Topics": ["t1", "t2"]}, kafka)
    msk = {"EventSourceArn": "arn:aws:kafka:eu-west-1:1:cluster/f1/abc-1", "Topics": ["t1"]}
    assert deploy._same_source({**msk, "UUID": "u"}, msk)
    assert not deploy._same_source({**msk, "Topics": ["t9"]}, msk)
    assert not deploy._same_source({"EventSourceArn": "arn:aws:sqs:eu-west-1:1:q"}, msk)
    sqs = {"EventSourceArn": "arn:aws:sqs:eu-west-1:1:q"}
    assert deploy._same_source({"EventSourceArn": "arn:aws:sqs:eu-west-1:1:q", "BatchSize": 5}, sqs)
    assert not deploy._same_source({"SelfManagedEventSource": servers, "Topics": ["t1"]}, sqs)


@pytest.mark.integration  # imports the handler in a child interpreter
def test_zip_is_deterministic_and_holds_the_handler_modules() -> None:
    package = deploy.handler_package("stratx.localstack.adapters.aws_lambda.handler")
    assert "stratx/localstack/adapters/aws_lambda.py" in package.files
    assert all(name.startswith("stratx/") and name.endswith(".py") for name in package.files)
    assert not any(name.startswith("stratx/quix_apps/cli") for name in package.files)
    blob = deploy.build_zip(package.files)
    assert blob == deploy.build_zip(dict(reversed(package.files.items())))
    with zipfile.ZipFile(BytesIO(blob)) as archive:
        assert archive.namelist() == sorted(package.files)
    names = {r.split("==")[0].lower().replace("_", "-") for r in package.requirements}
    assert {"pydantic", "kafka-python"} <= names  # kafka-python: imported lazily by the sink
    assert not names & {"pandas", "numpy"}, (
        "the record path imports neither (a lighter layer, faster cold start)"
    )
    assert "quixstreams" not in names, "the function needs the pure core, not the stream apps"
    with pytest.raises(RuntimeError, match="cannot import the handler module"):
        deploy.handler_package("stratx.no_such_module.handler")


@pytest.mark.skipif(
    not KAFKA_ENDPOINT,
    reason="Kafka event source mappings need LocalStack Pro or real AWS (moto does not model them): set "
    "STRATX_TEST_AWS_KAFKA_ENDPOINT (e.g. http://localhost:4566, or 'aws' for the default endpoint) and "
    "STRATX_BROKER_ADDRESS to a Kafka reachable from it; STRATX_DEPLOY_MSK_CLUSTER_ARN adds the MSK mapping",
)
@pytest.mark.integration
def test_kafka_mappings_opt_in(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    if KAFKA_ENDPOINT != "aws":
        monkeypatch.setenv("AWS_ENDPOINT_URL", str(KAFKA_ENDPOINT))
    monkeypatch.setenv("STRATX_DEPLOY_NAME", f"stratx-test-{free_port()}")
    settings = DeploySettings().model_copy(update={"deploy_kafka_trigger": True})
    deployer = deploy.Deployer(settings)
    try:
        arns = deployer.deploy()
        assert "kafka-mapping" in arns
        deployer.deploy()
        assert "kafka-mapping" in capsys.readouterr().out
        mappings = deployer.lam.list_event_source_mappings(FunctionName=deployer.names.function)[
            "EventSourceMappings"
        ]
        kafka = [m for m in mappings if "SelfManagedEventSource" in m]
        assert len(kafka) == 1, "re-deploy must not add a second Kafka mapping"
        assert kafka[0]["Topics"] == settings.deploy_kafka_topics
        servers = kafka[0]["SelfManagedEventSource"]["Endpoints"]["KAFKA_BOOTSTRAP_SERVERS"]
        assert servers == settings.broker_address.split(",")
        if settings.deploy_msk_cluster_arn:
            assert "msk-mapping" in arns
    finally:
        deployer.teardown()
    assert not any(deployer.status().values())
