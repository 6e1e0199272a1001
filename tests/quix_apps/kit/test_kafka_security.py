"""Kafka security settings end to end on real brokers: TLS and SASL.

TLS: Tansu 0.6's own TLS listener does not answer TLS here, so the broker sits behind a TLS
terminating proxy on loopback (a real TLS 1.3 handshake against a throwaway CA made for the test)
and advertises the proxy's port: every client connection, bootstrap and after, is TLS. Through it,
with ``STRATX_KAFKA_SECURITY_PROTOCOL=SSL`` and the CA file, the kafka-python admin creates topics,
the Quix replay publishes a real race, a Quix feature app turns it into lap features and the
confluent reader reads them back. Without the CA, or in PLAINTEXT, the same commands fail with
a clear error instead of hanging.

SASL: Tansu with ``--authentication`` refuses unauthenticated clients; its ``user create`` cannot
run against such a broker (in-memory storage, no user store before auth), so the positive SASL
path cannot be shown here. What is shown: the SASL settings reach both client libraries (the
broker answers the SCRAM exchange, "unknown user") and a plaintext client is refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from stratx.functions.kafka_auth import KafkaAuth
from stratx.quix_apps.kit import kafka_io
from stratx.quix_apps.kit.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration
STRATX = str(Path(sys.executable).parent / "stratx")
HOST = "127.0.0.1"


# ---------------------------------------------------------------- a CA and a TLS proxy
def _make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server cert.pem, server key.pem): a CA and a server certificate for 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "StratX test CA (throwaway)")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class TLSProxy:
    """TLS on ``port``, plaintext to ``upstream``: a TLS-terminating load balancer in miniature."""

    def __init__(self, port: int, upstream: int, cert: Path, key: Path) -> None:
        self.port, self.upstream = port, upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.handshakes = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TLSProxy:
        self._thread.start()
        assert self._ready.wait(10), "TLS proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, HOST, self.port, ssl=self.context)
        )
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(server.wait_closed())
            self.loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1  # start_server completes the handshake before calling back
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, TLSProxy]]:
    """(TLS bootstrap address, CA file, proxy): Tansu reachable only through the TLS proxy."""
    folder = tmp_path_factory.mktemp("tls")
    ca, cert, key = _make_ca_and_server_cert(folder)
    inner, outer = free_port(HOST), free_port(HOST)
    with (
        EmbeddedBroker(HOST, inner, folder / "tansu.log", advertised_port=outer),
        TLSProxy(outer, inner, cert, key) as proxy,
    ):
        yield f"{HOST}:{outer}", ca, proxy


def _env(protocol: str, ca: Path | None = None, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATX_KAFKA_")}
    env |= {"STRATX_KAFKA_SECURITY_PROTOCOL": protocol, "STRATX_METRICS_ENABLED": "false", **more}
    if ca is not None:
        env["STRATX_KAFKA_SSL_CA_LOCATION"] = str(ca)
    return env


def _stratx(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STRATX, *args], capture_output=True, text=True, timeout=timeout, env=env)


# ---------------------------------------------------------------- TLS
def test_the_pipeline_runs_over_tls_with_the_configured_ca(
    tls_broker: tuple[str, Path, TLSProxy], tmp_path: Path
) -> None:
    address, ca, proxy = tls_broker
    env = _env("SSL", ca, STRATX_STATE_DIR=str(tmp_path / "state"))
    before = proxy.handshakes

    created = _stratx(["topics", "create", "--broker", address], env)  # kafka-python admin over TLS
    assert created.returncode == 0, created.stderr
    listed = _stratx(["topics", "list", "--broker", address], env)
    assert "stratx.raw.laps" in listed.stdout, listed.stderr

    replay = _stratx(  # the Quix replay producer over TLS
        [
            "replay",
            "--year",
            "2023",
            "--event",
            "Bahrain",
            "--drivers",
            "VER",
            "--no-progress",
            "--broker",
            address,
        ],
        env,
        timeout=300,
    )
    assert replay.returncode == 0, replay.stderr
    assert "0 dead letters" in replay.stderr

    lap_app = _stratx(  # a Quix feature app, consumer and producer, over TLS
        ["features", "run", "--app", "lap", "--no-feast", "--idle-timeout", "8", "--broker", address],
        env,
        timeout=300,
    )
    assert lap_app.returncode == 0, lap_app.stderr

    auth = KafkaAuth(protocol="SSL", ca_location=ca)  # the confluent reader over TLS
    laps = [json.loads(m.value()) for m in kafka_io.read_all(address, "stratx.features.lap", auth=auth)]
    assert sorted(r["LapNumber"] for r in laps) == list(range(1, 58))  # VER, all 57 laps
    assert {r["DriverNumber"] for r in laps} == {"1"}
    assert proxy.handshakes > before  # every byte above went through TLS


def test_a_client_without_the_ca_or_without_tls_fails_clearly(
    tls_broker: tuple[str, Path, TLSProxy],
) -> None:
    address, _ca, _proxy = tls_broker
    started = time.monotonic()
    untrusted = _stratx(["topics", "list", "--broker", address], _env("SSL"), timeout=60)
    assert untrusted.returncode != 0
    assert "Traceback" not in untrusted.stderr
    assert address in untrusted.stderr and "SSL" in untrusted.stderr, untrusted.stderr

    plain = _stratx(["topics", "list", "--broker", address], _env("PLAINTEXT"), timeout=60)
    assert plain.returncode != 0 and "Traceback" not in plain.stderr
    assert address in plain.stderr, plain.stderr
    assert time.monotonic() - started < 50  # errors, not hangs


# ---------------------------------------------------------------- SASL
def test_sasl_settings_reach_the_broker_and_plaintext_is_refused(tmp_path: Path) -> None:
    port = free_port(HOST)
    with EmbeddedBroker(HOST, port, tmp_path / "tansu.log", authentication=True) as broker:
        sasl = _env(
            "SASL_PLAINTEXT",
            STRATX_KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
            STRATX_KAFKA_SASL_USERNAME="strategist",
            STRATX_KAFKA_SASL_PASSWORD="not-a-user-here",
        )
        refused = _stratx(["topics", "list", "--broker", broker.address], sasl, timeout=60)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "SASL_PLAINTEXT, SCRAM-SHA-256 as strategist" in refused.stderr, refused.stderr
        assert "not-a-user-here" not in refused.stderr + refused.stdout  # the password is never printed

        auth = KafkaAuth("SASL_PLAINTEXT", "SCRAM-SHA-256", "strategist", SecretStr("not-a-user-here"))
        with pytest.raises(Exception) as err:  # librdkafka: the SCRAM exchange ran and was refused
            list(kafka_io.read_all(broker.address, "stratx.raw.laps", timeout_s=5, auth=auth))
        assert "not-a-user-here" not in str(err.value)

        plain = _stratx(["topics", "list", "--broker", broker.address], _env("PLAINTEXT"), timeout=60)
        assert plain.returncode != 0 and "Traceback" not in plain.stderr
    log = (tmp_path / "tansu.log").read_text(errors="replace")
    assert "NotAuthenticated" in log or "unknown" in log.lower(), log[-2000:]
