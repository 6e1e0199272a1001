"""`stratx up`: the whole pipeline on one machine, from a fresh clone.

1. Champions: every model without an ``@champion`` in the registry is trained first (the bundled
   corpus, a few minutes on 2 cores, with progress).
2. The embedded broker and the catalog topics.
3. The model services: each champion imported into the BentoML store, one ``bentoml serve``
   process per model (configured ports, or free ones when taken), waited for on ``/readyz``.
4. The streaming apps, each in its own process: lap features, telemetry windows, lap
   aggression, predictions (calling the services) and alerts; and the periodic drift job
   (``stratx drift --periodic``: Evidently on the session's lap features vs the training reference).
5. The dashboard (Panel), when ``panel_app`` is installed.
6. A replay of the race (``--year/--event/--session``: bundled first, else the FastF1 cache with
   ``--cache``/``--telemetry-dir``; default the demo race, 2023 Bahrain); then it waits until every driver-lap has its predictions and
   prints what landed (predictions per model, alerts, serving latency, the drift job's share and
   report after its first run over every lap).

Everything keeps running (topics readable, dashboard live) until Ctrl-C, which stops every
process it started; ``--exit-when-done`` stops right after the summary (tests, CI).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stratx.bentos.lifecycle import serve
from stratx.functions import catalog, models
from stratx.functions.settings import BrokerSettings, ServingSettings
from stratx.quix_apps.kit import admin, broker, kafka_io, pipeline

STREAM_APPS = (*pipeline.APPS, "predict", "alerts", "drift")


def ensure_champions(settings: ServingSettings, keys: list[str], progress: bool) -> None:
    """Train the models that have no champion yet (all of them on a fresh clone), building the
    corpus once for all of them."""
    from stratx.bentos.lifecycle import training

    missing = training.missing_champions(settings, keys)
    if not missing:
        return
    say(f"no @champion yet for {', '.join(missing)}: training on the bundled corpus first")
    args = argparse.Namespace(
        model=None, if_missing=True, exports=None, features=None, no_progress=not progress
    )
    training.train_main(args, settings)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_ports(settings: ServingSettings, keys: list[str]) -> ServingSettings:
    """The configured ports, each replaced by a free one when taken."""
    changes = {}
    for key in keys:
        port = settings.port(key)
        if not broker.port_is_free(settings.serve_host, port):
            changes[f"{key}_port"] = broker.free_port(settings.serve_host)
    return settings.model_copy(update=changes) if changes else settings


def latency_summary(broker_address: str, session_key: int) -> dict[str, Any]:
    """Predictions per model and status, and ProducedAt - IngestedAt (ms) p50/p99 over them."""
    status: Counter[str] = Counter()
    latencies: list[float] = []
    for spec in catalog.PREDICTION_TOPICS.values():
        for message in kafka_io.read_all(broker_address, spec.name, drain_s=0.3):
            record = json.loads(message.value() or b"{}")
            if record.get("SessionKey") != session_key:
                continue
            status[f"{record['Model']}:{record['Status']}"] += 1
            produced = datetime.fromisoformat(record["ProducedAt"])
            latencies.append((produced - datetime.fromisoformat(record["IngestedAt"])).total_seconds() * 1000)
    alerts: Counter[str] = Counter()
    for message in kafka_io.read_all(broker_address, catalog.ALERTS.name, drain_s=0.3):
        record = json.loads(message.value() or b"{}")
        if record.get("SessionKey") == session_key:
            alerts[record["Type"]] += 1
    latencies.sort()
    return {
        "predictions": dict(sorted(status.items())),
        "alerts": dict(sorted(alerts.items())),
        "serving_ms_p50": statistics.median(latencies) if latencies else None,
        "serving_ms_p99": latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
    }


@dataclasses.dataclass
class Stack:
    """The running pipeline: broker address, served model keys, app processes, logs folder."""

    address: str
    keys: list[str]
    procs: dict[str, Any]
    work: Path
    embedded: broker.EmbeddedBroker


def start_stack(
    stack: ExitStack, port: int | None, feast: bool, progress: bool, apps: tuple[str, ...] = STREAM_APPS
) -> Stack:
    """Steps 1-4 of ``stratx up`` (champions, broker + topics, model services, streaming apps), each
    stopped when ``stack`` closes; ``stratx backtest`` runs the same."""
    settings = ServingSettings()
    keys = serve.served_keys()
    ensure_champions(settings, keys, progress)
    base = BrokerSettings()
    port = port or (
        base.broker_port
        if broker.port_is_free(base.broker_host, base.broker_port)
        else broker.free_port(base.broker_host)
    )
    b = stack.enter_context(broker.EmbeddedBroker(base.broker_host, port))
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stratx-up-")))
    say(f"embedded broker at {b.address}; logs in {work}")
    client = admin.connect(b.address)
    admin.create_topics(client)
    client.close()
    serving = free_ports(settings, keys)
    from stratx.bentos.kit import serving as serving_mod

    for key in keys:
        serving_mod.import_champion(serving, key, serving.model_alias)
    say(f"starting {len(keys)} model services ({', '.join(keys)}) ...")
    running = stack.enter_context(serve.services(keys, serving, log_dir=work))
    urls = {m.url_env: "" for m in models.MODELS}  # no service: unavailable
    urls.update({models.spec(r.key).url_env: r.url for r in running})
    for r in running:
        say(f"  {r.key:<11} {r.url}")
    procs = pipeline.start_apps(
        b.address, work / "quix", apps=apps, feast=feast, log_dir=work, extra_env=urls
    )
    stack.callback(pipeline.stop_apps, procs)
    say(f"streaming apps: {', '.join(procs)}")
    return Stack(b.address, keys, procs, work, b)


def up_main(args: argparse.Namespace, replay: Any) -> int:
    """``replay(broker_address) -> (code, race, result)`` replays the race (the CLI's)."""
    from stratx.bentos.lifecycle import training

    training.quiet_mlflow()
    with ExitStack() as stack:
        running = start_stack(stack, args.port, feast=not args.no_feast, progress=not args.no_progress)
        procs, work = running.procs, running.work
        dashboard = start_dashboard(args, running.address, work)
        if dashboard is not None:
            stack.callback(dashboard.stop)
            say(f"dashboard: {dashboard.url}  (overlay: {dashboard.url}/overlay)")
        code, race, result = replay(running.address)
        if code != 0:
            return code
        laps = result.published[catalog.LAPS.name]
        say("waiting for every driver-lap's predictions ...")
        counts = pipeline.wait_predicted(
            running.address, race.meta.session_key, laps, tuple(running.keys), procs=procs, log_dir=work
        )
        summary = latency_summary(running.address, race.meta.session_key)
        print_summary(counts, summary, laps)
        print(drift_line(race.meta.session_key, datetime.now(UTC), procs.get("drift"), laps=laps))
        if not args.exit_when_done:
            say("everything keeps running; Ctrl-C stops it all")
            wait_forever(running.embedded, procs)
    return 0


def print_summary(counts: dict[str, int], summary: dict[str, Any], laps: int) -> None:
    print(f"{laps} driver-laps replayed; prediction records per model:")
    for key, n in counts.items():
        print(f"  {catalog.PREDICTION_TOPICS[key].name:32s} {n:>6d}")
    print("  by status: " + ", ".join(f"{k} {v}" for k, v in summary["predictions"].items()))
    print("alerts: " + (", ".join(f"{k} {v}" for k, v in summary["alerts"].items()) or "none"))
    if summary["serving_ms_p50"] is not None:
        print(
            f"serving latency (feature record read -> prediction produced): "
            f"p50 {summary['serving_ms_p50']:.1f} ms, p99 {summary['serving_ms_p99']:.1f} ms"
        )


def drift_line(
    session_key: int,
    since: datetime,
    proc: Any = None,
    timeout_s: float | None = None,
    laps: int | None = None,
) -> str:
    """The drift job's last result for the session, from its first run that started after
    ``since`` (all laps in), waited for up to one period + 60 s; at once when the session has
    fewer driver-laps (``laps``) than a run needs (the job would only write a skipped summary)."""
    from stratx.functions.settings import DriftSettings
    from stratx.quix_apps import drift

    settings = DriftSettings()
    if laps is not None and laps < settings.drift_min_rows:
        return f"drift: skipped ({laps} driver-laps < STRATX_DRIFT_MIN_ROWS {settings.drift_min_rows})"
    deadline = time.monotonic() + (timeout_s if timeout_s is not None else settings.drift_period_s + 60.0)
    say("waiting for the drift job's run over every lap ...")
    while True:
        found = drift.latest_summary(settings.drift_reports_dir, session_key)
        if found is not None and datetime.fromisoformat(found["run_at"]) >= since:
            if found.get("status") != "ok":
                return f"drift: skipped ({found.get('reason')})"
            alert = "drift alert raised" if found.get("alert") else "no alert"
            return (
                f"drift (lap features vs the training reference): share {found['share']:.3f} "
                f"({found['drifted']}/{found['compared']} columns, threshold {found['threshold']:.2f}, "
                f"{alert}); report {found['html']}"
            )
        if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
            return "drift: no run over every lap yet (see drift.log in the logs folder)"
        time.sleep(1.0)


def wait_forever(b: broker.EmbeddedBroker, procs: dict[str, Any]) -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while b.proc is not None and b.proc.poll() is None and all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
        say("a process exited; stopping everything")
    except KeyboardInterrupt:
        say("stopping everything")


@dataclasses.dataclass
class Dashboard:
    url: str
    process: Any

    def stop(self) -> None:
        from stratx.quix_apps.kit.pipeline import stop_apps

        stop_apps({"dashboard": self.process})


def start_dashboard(args: argparse.Namespace, broker_address: str, work: Path) -> Dashboard | None:
    """The Panel dashboard in its own process, or None (``--no-dashboard``, or not installed)."""
    import importlib.util
    import os
    import subprocess

    if args.no_dashboard or importlib.util.find_spec("stratx.panel_app") is None:
        return None
    from stratx.functions.settings import DashboardSettings

    host = DashboardSettings().dashboard_host  # loopback unless STRATX_DASHBOARD_HOST opens it
    port = args.dashboard_port or broker.free_port(host)
    env = {**os.environ, "STRATX_BROKER_ADDRESS": broker_address}
    command = [sys.executable, "-m", "stratx.panel_app", "--port", str(port), "--host", host]
    with (work / "dashboard.log").open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Dashboard(f"http://{host}:{port}", process)
