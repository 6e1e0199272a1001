"""Run the streaming apps next to a replay: the quickstart's pipeline on one machine.

Each Quix Streams app runs in its own process (``stratx features run --app ...``), as it would in
its own container; this module starts them, waits until they have caught up with a replay, and
stops them with SIGINT (Quix apps then commit and close cleanly).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stratx.functions import catalog
from stratx.quix_apps.kit import kafka_io

# the quickstart's apps; the two track-gap apps (positions -> progress -> session gaps) run with
# `stratx features run --app all|progress|gaps` (the session gap app is the slowest stage: see README)
APPS = ("lap", "telemetry", "aggression", "race")


class AppExited(Exception):
    """A feature app stopped on its own; the message is for the user."""


def log_tail(log_dir: Path | None, name: str, lines: int = 25) -> str:
    """The last ``lines`` of app ``name``'s log in ``log_dir`` (indented), or "" without one."""
    path = log_dir / f"{name}.log" if log_dir is not None else None
    if path is None or not path.is_file():
        return ""
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    return "".join(f"\n    {line}" for line in tail)


def check_alive(procs: dict[str, subprocess.Popen[bytes]] | None, log_dir: Path | None = None) -> None:
    """Raise AppExited, with the end of its log, if any of ``procs`` has stopped."""
    for name, proc in (procs or {}).items():
        if proc.poll() is not None:
            where = f"its log {log_dir / (name + '.log')} ends:" if log_dir is not None else "see its log"
            raise AppExited(
                f"the {name} app exited early (code {proc.returncode}); {where}{log_tail(log_dir, name)}"
            )


ALL_APPS = (*APPS, "progress", "gaps")
# apps with their own command (the rest are `stratx features run --app <name>`)
COMMAND_APPS = ("predict", "alerts", "drift")
# extra arguments of a command app (the drift job repeats every STRATX_DRIFT_PERIOD_S)
COMMAND_ARGS: dict[str, tuple[str, ...]] = {"drift": ("--periodic",)}


def start_apps(
    broker_address: str,
    state_dir: Path,
    apps: tuple[str, ...] = APPS,
    feast: bool = True,
    log_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, subprocess.Popen[bytes]]:
    """One process per app; ``state_dir`` must live as long as the broker (Tansu: a fresh one).
    ``extra_env``: more STRATX_* settings for the apps (e.g. the model services' URLs)."""
    env = {**os.environ, "STRATX_STATE_DIR": str(state_dir), **(extra_env or {})}
    procs = {}
    for name in apps:
        head = [sys.executable, "-m", "stratx.quix_apps.cli"]
        if name in COMMAND_APPS:
            cmd = [*head, name, *COMMAND_ARGS.get(name, ())]
        else:
            cmd = [*head, "features", "run", "--app", name]
        cmd += ["--broker", broker_address]
        if not feast and name not in COMMAND_APPS:
            cmd.append("--no-feast")
        if log_dir is None:
            procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
            continue
        with (log_dir / f"{name}.log").open("ab") as out:  # the child keeps its own descriptor
            procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    return procs


def count_session(broker_address: str, topic: str, session_key: int) -> int:
    return sum(
        1
        for m in kafka_io.read_all(broker_address, topic, drain_s=0.2)
        if json.loads(m.value()).get("SessionKey") == session_key
    )


def wait_caught_up(
    broker_address: str,
    session_key: int,
    expected_laps: int,
    drivers: int,
    timeout_s: float = 180.0,
    procs: dict[str, subprocess.Popen[bytes]] | None = None,
    log_dir: Path | None = None,
) -> dict[str, int]:
    """Poll the feature topics until every lap has its features, every lap but (at most) each
    driver's last has its aggression record, and the telemetry windows have stopped growing."""
    deadline = time.monotonic() + timeout_s
    growing = (catalog.TELEMETRY_WINDOW.name, catalog.LAP_AGGRESSION.name)
    last: dict[str, int] = {}
    stable = 0
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        check_alive(procs, log_dir)
        counts = {
            t.name: count_session(broker_address, t.name, session_key)
            for t in (catalog.FEATURES_LAP, catalog.TELEMETRY_WINDOW, catalog.LAP_AGGRESSION)
        }
        now = {t: counts[t] for t in growing}
        stable = stable + 1 if now == last else 0
        last = now
        complete = (
            counts[catalog.FEATURES_LAP.name] >= expected_laps
            and counts[catalog.LAP_AGGRESSION.name] >= expected_laps - drivers
            and counts[catalog.TELEMETRY_WINDOW.name] > 0
        )
        if complete and stable >= 2:
            return counts
        time.sleep(1.0)
    return counts


def wait_predicted(
    broker_address: str,
    session_key: int,
    expected: int,
    keys: tuple[str, ...],
    timeout_s: float = 300.0,
    procs: dict[str, subprocess.Popen[bytes]] | None = None,
    log_dir: Path | None = None,
) -> dict[str, int]:
    """Poll the prediction topics until each of ``keys`` holds ``expected`` records of the session
    (one per lap-feature record; overtake: one per car that had a car ahead, so it is not waited for),
    less the lap records of retired cars after their last completed lap (:func:`unpredictable`)."""
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        check_alive(procs, log_dir)
        counts = {
            key: count_session(broker_address, catalog.PREDICTION_TOPICS[key].name, session_key)
            for key in catalog.PREDICTION_TOPICS
        }
        short = [counts[k] for k in keys if k != "overtake" and counts[k] < expected]
        if not short or min(short) >= expected - unpredictable(broker_address, session_key):
            return counts
        time.sleep(0.5)
    return counts


def unpredictable(broker_address: str, session_key: int) -> int:
    """Lap-feature records of the session that may get no prediction: a retired car's laps after its
    last completed one (``stratx.race.retirements``). Its unfinished last lap is predicted only when
    its record reaches the prediction app before the retirement does, which is a matter of timing."""
    retired: dict[str, int] = {}
    for m in kafka_io.read_all(broker_address, catalog.RETIREMENTS.name, drain_s=0.2):
        r = json.loads(m.value() or b"{}")
        if r.get("SessionKey") == session_key:
            retired[str(r["DriverNumber"])] = int(r["LapNumber"])
    if not retired:
        return 0
    return sum(
        1
        for m in kafka_io.read_all(broker_address, catalog.FEATURES_LAP.name, drain_s=0.2)
        for f in [json.loads(m.value() or b"{}")]
        if f.get("SessionKey") == session_key
        and f.get("LapNumber", 0) > retired.get(str(f.get("DriverNumber")), 999)
    )


def stop_apps(procs: dict[str, subprocess.Popen[bytes]], timeout_s: float = 20.0) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs.values():
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
