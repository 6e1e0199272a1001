"""Typed, frozen settings, one object per deployable, read once at the entry point.

Every environment variable StratX reads is a field below, prefixed ``STRATX_`` (see
:data:`ENV_VARS`). Nothing else in StratX reads ``os.environ``; ``functions/`` never does.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stratx.functions.kafka_auth import KafkaAuth, Mechanism, Protocol
from stratx.functions.models.registry import MODEL_KEYS

REPO_ROOT = Path(__file__).resolve().parents[1]


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STRATX_", frozen=True, extra="ignore")


class BrokerSettings(_Base):
    """`stratx broker`: the embedded Kafka-API broker (Tansu)."""

    broker_host: str = Field("127.0.0.1", description="loopback address the embedded broker listens on")
    broker_port: int = Field(9092, ge=1, le=65535, description="port of the embedded broker")


class MetricsSettings(_Base):
    """The Prometheus exporter of every app (``quix_apps/kit/metrics.py``): one port per app, at a fixed
    offset from ``metrics_port_base`` (``metrics.PORT_OFFSETS``), so one variable moves them all;
    copy ``instance`` of an app on one host adds 100 per copy (``metrics.INSTANCE_PORT_STEP``)."""

    metrics_host: str = Field(
        "127.0.0.1", description="address the apps' /metrics exporters bind to (0.0.0.0 in containers)"
    )
    metrics_port_base: int = Field(
        9400, ge=1, le=65000, description="first exporter port; each app listens on base + its fixed offset"
    )
    metrics_enabled: bool = Field(
        True, description="start the /metrics exporter and count records (false: no metrics at all)"
    )
    instance: int = Field(
        0, ge=0, le=99, description="copy n of an app on one host (n > 0: state in instance-n/, port + 100 n)"
    )


class KafkaSettings(MetricsSettings):
    """Any client of the broker: the bootstrap address is the one thing that changes for Redpanda."""

    broker_address: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (Redpanda or Tansu)")
    consumer_session_timeout_ms: int = Field(6000, ge=1000, description="consumer group session timeout")
    # Tansu answers an empty fetch only after fetch.wait.max.ms (librdkafka default 500), and an app reading
    # topics in time order (concat) waits out its whole poll (Quix default 1 s) unless 10,000 messages come
    consumer_fetch_wait_ms: int = Field(20, ge=1, le=5000, description="librdkafka fetch.wait.max.ms")
    consumer_poll_timeout_s: float = Field(0.02, gt=0, le=5, description="Quix consumer_poll_timeout, s")
    connect_timeout_s: float = Field(5.0, gt=0, description="fail if the broker does not answer in this time")
    kafka_security_protocol: Protocol = Field(
        "PLAINTEXT",
        description="PLAINTEXT (embedded broker, local Redpanda), SSL, SASL_PLAINTEXT or SASL_SSL "
        "(Redpanda Cloud, clusters with authentication)",
    )
    kafka_sasl_mechanism: Mechanism = Field(
        "SCRAM-SHA-256",
        description="SASL mechanism: SCRAM-SHA-256 (Redpanda's default), SCRAM-SHA-512 or PLAIN",
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (SASL_* protocols)")
    kafka_sasl_password: SecretStr | None = Field(
        None, repr=False, description="SASL password (SASL_* protocols; never printed or logged)"
    )
    kafka_ssl_ca_location: Path | None = Field(
        None, description="PEM CA bundle to verify the broker (SSL protocols; unset: the system's CAs)"
    )

    @model_validator(mode="after")
    def _auth_fits(self) -> KafkaSettings:
        self.kafka_auth()  # raises KafkaAuthError (a ValueError) naming the variables to set
        return self

    def kafka_auth(self) -> KafkaAuth:
        """How every Kafka client of this deployable connects (``functions/kafka_auth.py``)."""
        return KafkaAuth(
            protocol=self.kafka_security_protocol,
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password,
            ca_location=self.kafka_ssl_ca_location,
        )


class ReplaySettings(KafkaSettings):
    """`stratx replay`: data locations and pacing defaults."""

    data_dir: Path = Field(REPO_ROOT / "data", description="folder with races/ (bundled sessions)")
    fastf1_cache: Path = Field(
        Path.home() / ".cache" / "stratx" / "fastf1",
        description="FastF1 cache folder for non-bundled sessions",
    )
    fastf1_offline: bool = Field(False, description="never download; use only the FastF1 cache")
    telemetry_dir: Path | None = Field(
        None, description="OpenF1 car_data/location parquet folder for sessions without FastF1 telemetry"
    )
    checkpoint_every: int = Field(5000, ge=1, description="events between resume checkpoints")
    replay_validate: bool = Field(
        True,
        description="check every record against its schema before producing (false: publish the source "
        "rows as they are, no dead letters; for the observability-overhead benchmark)",
    )


class FeastSettings(_Base):
    """Where the Feast repo and its data (registry, SQLite online store, offline parquet) live."""

    feast_repo: Path = Field(
        REPO_ROOT / "feature_repo", description="Feast repo (feature_store.yaml, definitions)"
    )
    feast_data_dir: Path = Field(
        REPO_ROOT / ".stratx" / "feast",
        description="Feast registry, online store and offline parquet; ${STRATX_FEAST_DATA_DIR} in the yaml",
    )
    feast_redis_connection: str | None = Field(
        None,
        repr=False,
        description="scale-out: Redis as the Feast online store, connection string 'host:port[,password=...,"
        "ssl=true]' (needs the `scale` extra); unset: the SQLite file of feature_store.yaml",
    )


class FeatureAppSettings(KafkaSettings, FeastSettings):
    """`stratx features run`: the streaming feature apps."""

    state_dir: Path = Field(REPO_ROOT / ".stratx" / "state", description="Quix state (RocksDB) folder")
    consumer_group_prefix: str = Field("stratx", description="prefix of the feature apps' consumer groups")
    feast_push: bool = Field(True, description="push lap features to the Feast online store as they are made")


class LiveSettings(KafkaSettings):
    """`stratx live`: following a session through the OpenF1 API."""

    openf1_url: str = Field(
        "https://api.openf1.org/v1", description="OpenF1 API base URL (tests: a local one)"
    )
    openf1_rate_limit: int = Field(30, ge=1, description="requests per rate window (OpenF1's limit)")
    openf1_rate_window_s: float = Field(10.0, gt=0, description="rate window, s")
    openf1_username: str | None = Field(None, description="OpenF1 account for the authenticated live tier")
    openf1_password: SecretStr | None = Field(None, description="OpenF1 password (never printed or logged)")
    poll_interval_s: float = Field(2.0, ge=0, description="seconds between poll cycles")
    # `stratx live --push`: OpenF1's MQTT feed (docs/streaming.md); password = the OAuth2 access token
    openf1_mqtt_broker: str = Field("mqtt.openf1.org", description="MQTT broker of the push feed")
    openf1_mqtt_port: int = Field(8883, ge=1, le=65535, description="its port (8883 TLS; 8084 websockets)")
    openf1_mqtt_tls: bool = Field(True, description="TLS to the MQTT broker (false: a local test broker)")
    openf1_mqtt_websockets: bool = Field(False, description="MQTT over websockets (path /mqtt)")
    push_silence_s: float = Field(5.0, gt=0, description="push feed silent this long: normal poll cadence")
    push_poll_interval_s: float = Field(30.0, gt=0, description="safety-net poll period while push is live")
    push_checkpoint_s: float = Field(1.0, gt=0, description="seconds between checkpoints of pushed records")


class TrainingSettings(FeastSettings):
    """`stratx train` / `stratx evaluate`: corpus, MLflow tracking/registry, reports, and the Feast
    store training reads its rows from (the services read its online store by entity key)."""

    train_from_feast: bool = Field(
        True,
        description="`stratx train` writes the lap-feature table to the Feast offline store and fits each "
        "model on its FeatureService read back point-in-time (false: fit on the built table directly)",
    )

    data_dir: Path = Field(REPO_ROOT / "data", description="folder with races/ (bundled sessions)")
    mlflow_uri: str = Field(
        f"sqlite:///{REPO_ROOT / '.stratx' / 'mlflow' / 'mlflow.db'}",
        description="MLflow tracking and registry URI (sqlite backend)",
    )
    mlflow_artifact_dir: Path = Field(
        REPO_ROOT / ".stratx" / "mlflow" / "artifacts", description="MLflow artifact store of new experiments"
    )
    reports_dir: Path = Field(
        REPO_ROOT / ".stratx" / "reports", description="output folder of `stratx evaluate`"
    )


class ServingSettings(TrainingSettings):
    """`stratx serve`: where each model's BentoML service listens and how long it may take to start.

    The services need the MLflow registry only when a champion is imported into the BentoML model
    store (`stratx serve` does it before starting, `make bentos` before `bentoml build`); the store
    itself is BentoML's own (``$BENTOML_HOME``, default ``~/bentoml``)."""

    serve_host: str = Field("127.0.0.1", description="address every BentoML service binds to")
    lap_time_port: int = Field(3101, ge=1, le=65535, description="port of the lap_time service")
    tyre_deg_port: int = Field(3102, ge=1, le=65535, description="port of the tyre_deg service")
    pit_window_port: int = Field(3103, ge=1, le=65535, description="port of the pit_window service")
    overtake_port: int = Field(3104, ge=1, le=65535, description="port of the overtake service")
    anomaly_port: int = Field(3105, ge=1, le=65535, description="port of the anomaly service")
    serve_start_timeout_s: float = Field(120.0, gt=0, description="fail if a service is not ready by then")
    model_alias: str = Field("champion", description="MLflow registry alias imported by `stratx serve`")

    def port(self, key: str) -> int:
        """The port of model ``key``'s service."""
        found: int = getattr(self, f"{key}_port")
        return found


class PredictionAppSettings(KafkaSettings):
    """`stratx predict` / `stratx alerts`: the prediction and alert apps and the services they call."""

    state_dir: Path = Field(REPO_ROOT / ".stratx" / "state", description="Quix state (RocksDB) folder")
    consumer_group_prefix: str = Field("stratx", description="prefix of the apps' consumer groups")
    lap_time_url: str = Field("http://127.0.0.1:3101", description="base URL of the lap_time service")
    tyre_deg_url: str = Field("http://127.0.0.1:3102", description="base URL of the tyre_deg service")
    pit_window_url: str = Field("http://127.0.0.1:3103", description="base URL of the pit_window service")
    overtake_url: str = Field("http://127.0.0.1:3104", description="base URL of the overtake service")
    anomaly_url: str = Field("http://127.0.0.1:3105", description="base URL of the anomaly service")
    model_timeout_s: float = Field(2.0, gt=0, description="timeout of one model-service call, s")
    model_retries: int = Field(3, ge=0, description="retries of a failed model-service call")
    model_backoff_s: float = Field(0.05, ge=0, description="first retry delay (doubles, jittered), s")

    def urls(self) -> dict[str, str]:
        """Base URL per model key (the fields are one per registry entry; a unit test checks it)."""
        return {k: getattr(self, f"{k}_url") for k in MODEL_KEYS}


class DashboardSettings(KafkaSettings):
    """The Panel server: where it listens, who may embed it, how often sessions refresh."""

    dashboard_host: str = Field("127.0.0.1", description="address the dashboard server listens on")
    dashboard_port: int = Field(
        5006, ge=0, le=65535, description="port of the dashboard server (0: any free)"
    )
    dashboard_allow_websocket_origin: list[str] = Field(
        default_factory=list,
        description="extra origins (host[:port]) allowed to open the websocket, e.g. an embedding page "
        "or a broadcast graphics machine; JSON list in the environment",
    )
    dashboard_refresh_ms: int = Field(
        100, ge=20, le=5000, description="period of each browser session's refresh callback"
    )
    dashboard_replay_control: bool = Field(
        False, description="show the replay panel (start/restart a bundled race replay at a speed)"
    )


class IngestSettings(KafkaSettings):
    """`stratx ingest` and the serverless adapters (``localstack/adapters/``): the stateless OpenF1
    ingest function (``functions/inbound.py``) and the idempotency store in front of it."""

    ingest_consumer_group: str = Field("stratx-ingest", description="consumer group of `stratx ingest`")
    idempotency_table: str = Field(
        "stratx-idempotency",
        description="DynamoDB table of processed source records (key Id = topic/partition/offset)",
    )
    idempotency_backend: str = Field(
        "memory",
        description="where the serverless adapters remember processed records: memory (per warm "
        "instance), dynamodb (STRATX_IDEMPOTENCY_TABLE, conditional puts) or none",
    )
    lambda_batch_item_failures: bool = Field(
        False,
        description="the Lambda Kafka mapping has ReportBatchItemFailures (provisioned mode): report "
        "failed records instead of failing the whole invocation",
    )


class DeploySettings(KafkaSettings):
    """`python -m stratx.localstack.deploy`: the serverless ingest function on AWS or LocalStack.

    The AWS endpoint and credentials are boto3's own variables (AWS_ENDPOINT_URL for LocalStack or
    moto, AWS_ACCESS_KEY_ID, ...). ``broker_address`` is the Kafka the function writes to and the
    bootstrap of the self-managed Kafka trigger."""

    deploy_name: str = Field("stratx", description="prefix of every AWS resource the deploy script creates")
    deploy_region: str | None = Field(
        None,
        validation_alias=AliasChoices("STRATX_DEPLOY_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
        description="AWS region of the deployment (else AWS_REGION, else AWS_DEFAULT_REGION)",
    )
    deploy_handler: str = Field(
        "stratx.localstack.adapters.aws_lambda.handler", description="module.function of the Lambda handler"
    )
    deploy_memory_mb: int = Field(512, ge=128, le=10240, description="Lambda memory, MB")
    deploy_timeout_s: int = Field(60, ge=1, le=900, description="Lambda timeout, s")
    deploy_layer_arns: list[str] = Field(
        default_factory=list,
        description="Lambda layers with the handler's dependencies (JSON list; see localstack/README.md)",
    )
    idempotency_table: str = Field(
        "stratx-idempotency",
        description="DynamoDB table of processed source records (key Id = topic/partition/offset)",
    )
    deploy_sqs_queue: str | None = Field(
        "stratx-replay",
        description="SQS queue mapped to the function (replay / dead-letter redrive); empty: no queue",
    )
    deploy_batch_size: int = Field(100, ge=1, le=10000, description="records per function invocation")
    deploy_kafka_trigger: bool = Field(
        False, description="map the function to the self-managed Kafka (Redpanda) at STRATX_BROKER_ADDRESS"
    )
    deploy_msk_cluster_arn: str | None = Field(
        None, description="map the function to this Amazon MSK cluster (unset: no MSK mapping)"
    )
    deploy_kafka_topics: list[str] = Field(
        default_factory=lambda: ["stratx.inbound.openf1"],
        description="topics of the Kafka/MSK mappings (JSON list)",
    )
    deploy_kafka_starting_position: str = Field(
        "TRIM_HORIZON", description="where a new Kafka mapping starts: TRIM_HORIZON or LATEST"
    )
    deploy_kafka_consumer_group: str = Field(
        "stratx-lambda-ingest", description="consumer group id of the Kafka/MSK mappings"
    )
    deploy_kafka_sasl_mechanism: str = Field(
        "SASL_SCRAM_512_AUTH",
        description="Lambda auth type of the Kafka mapping: SASL_SCRAM_512_AUTH, SASL_SCRAM_256_AUTH or "
        "BASIC_AUTH (SASL/PLAIN)",
    )
    deploy_kafka_sasl_username: str | None = Field(
        None, repr=False, description="Kafka SASL user, stored in Secrets Manager (never printed)"
    )
    deploy_kafka_sasl_password: SecretStr | None = Field(
        None, repr=False, description="Kafka SASL password, stored in Secrets Manager (never printed)"
    )


class DriftSettings(KafkaSettings, TrainingSettings):
    """`stratx drift`: Evidently drift of a live session's lap features (and the lap_time/tyre_deg
    champions' predictions) vs the training reference; the registry is the training one."""

    drift_window_laps: int = Field(
        0, ge=0, description="compare the session's last N race laps (0: every lap of the session so far)"
    )
    drift_window_minutes: float = Field(
        0.0,
        ge=0,
        description="also cut the window to laps ended in the last T minutes of session time (0: no cut)",
    )
    drift_min_rows: int = Field(
        200, ge=1, description="skip a run while the window has fewer driver-laps (early laps of a race)"
    )
    drift_threshold: float = Field(
        0.02, gt=0, description="drift alert when this share of the compared columns drifted (0.02: any one)"
    )
    drift_rearm_share: float = Field(
        0.01,
        ge=0,
        description="after an alert, a new one needs a run below this share first (hysteresis; <= threshold)",
    )
    drift_period_s: float = Field(30.0, gt=0, description="seconds between runs of the periodic drift job")
    drift_alert_datasets: str = Field(
        "features",
        description="datasets whose crossings raise alerts, comma-separated (features, predictions); "
        "the others get reports and gauges only",
    )
    drift_reports_dir: Path = Field(
        REPO_ROOT / ".stratx" / "reports" / "drift",
        description="drift HTML reports, JSON summaries, the reference parquet and the alarm state",
    )
    drift_reference_size: int = Field(
        5000, ge=100, description="reference driver-laps (seed 0) the champions run on (predictions)"
    )
    drift_reference_years: str = Field(
        "",
        description="comma-separated seasons of the training races in the reference, e.g. 2023 (empty: all)",
    )

    def reference_years(self) -> list[int]:
        """``drift_reference_years`` as numbers (a clear ValueError for anything else)."""
        try:
            return sorted(int(y) for y in self.drift_reference_years.split(",") if y.strip())
        except ValueError:
            raise ValueError(
                f"STRATX_DRIFT_REFERENCE_YEARS must be comma-separated years, not {self.drift_reference_years!r}"
            ) from None


def env_vars() -> dict[str, str]:
    """Every environment variable StratX reads, with its description."""
    out: dict[str, str] = {}
    for cls in (
        BrokerSettings,
        MetricsSettings,
        KafkaSettings,
        ReplaySettings,
        FeastSettings,
        FeatureAppSettings,
        LiveSettings,
        TrainingSettings,
        ServingSettings,
        PredictionAppSettings,
        DashboardSettings,
        IngestSettings,
        DeploySettings,
        DriftSettings,
    ):
        for name, info in cls.model_fields.items():
            out[f"STRATX_{name.upper()}"] = info.description or ""
    return out


ENV_VARS = env_vars()
