"""Start a bundled race replay from the dashboard and change its speed (optional, off by default).

A speed change stops the running replay with SIGINT (the replay writes an exact checkpoint) and
restarts it with ``--resume`` at the new speed, so no event is lost or repeated. One controller
per server process (pn.state.cache): every browser session sees the same replay.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ReplayRequest:
    year: int
    event: str
    speed: float
    resume: bool = False


def replay_command(request: ReplayRequest) -> list[str]:
    """The `stratx replay` command line of a request (paced from lights out)."""
    cmd = [
        sys.executable,
        "-m",
        "stratx.quix_apps.cli",
        "replay",
        "--year",
        str(request.year),
        "--event",
        request.event,
        "--speed",
        f"{request.speed:g}",
        "--pace-from-lap",
        "1",
        "--no-progress",
    ]
    return [*cmd, "--resume"] if request.resume else cmd


class ReplayController:
    """Owns at most one replay subprocess."""

    def __init__(self, broker_address: str, log_path: Path | None = None) -> None:
        self.broker_address = broker_address
        self.log_path = log_path
        self.request: ReplayRequest | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def status(self) -> str:
        if self.request is None:
            return "no replay started from this dashboard"
        r = self.request
        if self.running:
            return f"replaying {r.year} {r.event} at {r.speed:g}x"
        code = self._proc.returncode if self._proc is not None else None
        return f"{r.year} {r.event}: replay finished (exit {code})"

    def start(self, year: int, event: str, speed: float) -> None:
        """Start ``event`` from its beginning, or change the speed of the same running replay."""
        with self._lock:
            same = self.request is not None and (self.request.year, self.request.event) == (year, event)
            resume = same and self.running
            self._stop_locked()
            self.request = ReplayRequest(year, event, speed, resume=resume)
            env = {**os.environ, "STRATX_BROKER_ADDRESS": self.broker_address}
            out = self.log_path.open("ab") if self.log_path is not None else subprocess.DEVNULL
            self._proc = subprocess.Popen(replay_command(self.request), env=env, stdout=out, stderr=out)

    def stop(self, timeout_s: float = 15.0) -> None:
        with self._lock:
            self._stop_locked(timeout_s)

    def _stop_locked(self, timeout_s: float = 15.0) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
