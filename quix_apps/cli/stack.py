"""Subcommands that run the stack: broker, topics, demo, up, the streaming apps, dashboard, model services."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from stratx.bentos.lifecycle import sources
from stratx.functions import catalog
from stratx.functions.catalog import ALL_TOPICS, BY_NAME
from stratx.functions.settings import (
    BrokerSettings,
    FeatureAppSettings,
    PredictionAppSettings,
)
from stratx.quix_apps.cli.common import (
    DEMO_RACE,
    UserError,
    kafka_settings,
    override,
    print_counts,
    wait_for_signal,
)
from stratx.quix_apps.cli.races import replay_run, replay_settings
from stratx.quix_apps.kit import admin, broker


def cmd_broker(args: argparse.Namespace) -> int:
    settings = BrokerSettings()
    host, port = args.host or settings.broker_host, args.port or settings.broker_port
    with broker.EmbeddedBroker(host, port) as b:
        if not args.no_topics:
            client = admin.connect(b.address)
            created = admin.create_topics(client)
            client.close()
            print(f"created {len(created)} topics", file=sys.stderr)
        print(f"broker ready at {b.address} (Tansu, in-memory); Ctrl-C to stop", file=sys.stderr, flush=True)
        wait_for_signal(b)
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    settings = kafka_settings(args)
    client = admin.connect(settings.broker_address, settings.connect_timeout_s, settings.kafka_auth())
    try:
        if args.action == "create":
            created = admin.create_topics(client)
            print(f"created {len(created)} of {len(ALL_TOPICS)} catalog topics: {', '.join(created) or '-'}")
        elif args.action == "list":
            for name in admin.list_topics(client):
                spec = BY_NAME.get(name)
                print(f"{name:32s} {spec.description if spec else '(not in the StratX catalog)'}")
        else:
            names = args.names or [t.name for t in ALL_TOPICS]
            existing = set(admin.list_topics(client))
            absent = [n for n in names if n not in existing]
            if absent:
                raise UserError(f"no such topic(s): {', '.join(absent)}; run `stratx topics create`")
            for info in admin.describe_topics(client, names):
                spec = BY_NAME.get(info.name)
                print(f"{info.name}: partitions={info.partitions}")
                if spec:
                    print(
                        f"  key={spec.key.value} retention.ms={spec.retention_ms} "
                        f"cleanup.policy={spec.cleanup_policy} schema={spec.schema.__name__} v1"
                    )
                if info.configs:
                    print(
                        "  broker configs: " + ", ".join(f"{k}={v}" for k, v in sorted(info.configs.items()))
                    )
    finally:
        client.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Quickstart: embedded broker, topics, feature apps, replay of a bundled real race."""
    import tempfile

    from stratx.quix_apps.kit import pipeline

    base = BrokerSettings()
    port = args.port or (
        base.broker_port
        if broker.port_is_free(base.broker_host, base.broker_port)
        else broker.free_port(base.broker_host)
    )
    with broker.EmbeddedBroker(base.broker_host, port) as b, tempfile.TemporaryDirectory() as state:
        print(f"embedded broker at {b.address}", file=sys.stderr)
        client = admin.connect(b.address)
        admin.create_topics(client)
        client.close()
        log_dir = Path(state)
        procs = pipeline.start_apps(b.address, Path(state) / "quix", feast=not args.no_feast, log_dir=log_dir)
        print(f"feature apps started: {', '.join(procs)} (logs in {log_dir})", file=sys.stderr)
        try:
            args.broker = b.address
            year, event, session = DEMO_RACE
            code, race, result = replay_run(replay_settings(args), args, year, event, session)
            if code == 0:
                laps = result.published[catalog.LAPS.name]  # type: ignore[attr-defined]
                print("waiting for the feature apps to catch up ...", file=sys.stderr, flush=True)
                drivers = len(race.table("drivers"))
                counts = pipeline.wait_caught_up(
                    b.address, race.meta.session_key, laps, drivers, procs=procs, log_dir=log_dir
                )
                print_counts(counts)
                if not args.no_feast:
                    _print_feast_snapshot(race)
            if code == 0 and args.keep_running:
                print(f"topics stay readable at {b.address}; Ctrl-C to stop", file=sys.stderr, flush=True)
                wait_for_signal(b)
        finally:
            pipeline.stop_apps(procs)
    return code


def cmd_up(args: argparse.Namespace) -> int:
    """The whole pipeline on one machine (see ``quix_apps/kit/up.py``); the race: --year/--event
    [--session] (bundled, else the FastF1 cache), or the demo race."""
    from stratx.quix_apps.kit import up

    if (args.year is None) != (args.event is None):
        raise UserError("up: --year and --event go together (default: the demo race, 2023 Bahrain)")
    year, event = (args.year, args.event) if args.year is not None else DEMO_RACE[:2]
    session = args.session if args.year is not None else DEMO_RACE[2]

    def replay(address: str) -> tuple[int, sources.RaceData, object]:
        args.broker = address
        return replay_run(replay_settings(args), args, year, event, session)

    return up.up_main(args, replay)


def _print_feast_snapshot(race: sources.RaceData) -> None:
    """The Feast online store's view of the race: every driver's latest lap features."""
    from stratx.quix_apps.kit import feature_store

    store = feature_store.setup_store(FeatureAppSettings())
    drivers = race.table("drivers")
    rows = [{"DriverNumber": str(d), "SessionKey": race.meta.session_key} for d in drivers.DriverNumber]
    got = feature_store.online_features(store, "pit_window_v1", rows)
    table = sorted(
        (dict(zip(got, vals, strict=True)) for vals in zip(*got.values(), strict=True)),
        key=lambda r: (r.get("LapNumber") is None, -(r.get("LapNumber") or 0), r.get("PositionOnLap") or 99),
    )
    codes = dict(zip(drivers.DriverNumber.astype(str), drivers.Abbreviation, strict=True))
    print("Feast online store (pit_window_v1), latest lap per driver:", file=sys.stderr)
    print(
        f"  {'drv':4s} {'lap':>4s} {'pos':>4s} {'gap s':>8s} {'tyre':>6s} {'age':>4s} {'deg s/lap':>9s}",
        file=sys.stderr,
    )
    for r in table:
        deg = r.get("StintDegSlope")
        print(
            f"  {codes.get(str(r['DriverNumber']), '?'):4s} {r.get('LapNumber') or 0:>4d} "
            f"{r.get('PositionOnLap') or 0:>4d} {r.get('GapToLeader') or 0:>8.1f} "
            f"{(r.get('Compound') or '-')[:6]:>6s} {int(r.get('TyreLife') or 0):>4d} "
            f"{deg if deg is not None else float('nan'):>9.3f}",
            file=sys.stderr,
        )


def _run_all(settings: FeatureAppSettings, args: argparse.Namespace) -> int:
    from stratx.quix_apps.kit import pipeline

    procs = pipeline.start_apps(
        settings.broker_address, settings.state_dir, apps=pipeline.ALL_APPS, feast=settings.feast_push
    )
    print(f"feature apps running ({', '.join(procs)}); Ctrl-C stops them", file=sys.stderr, flush=True)
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        pipeline.stop_apps(procs)
    return max((p.returncode or 0) for p in procs.values())


# the feature apps of `stratx features run --app`: app name -> its module under quix_apps/
FEATURE_APPS = {
    "lap": "lap_features",
    "telemetry": "telemetry_features",
    "aggression": "lap_aggression",
    "race": "race_state",
}


def cmd_features_run(args: argparse.Namespace) -> int:
    """Run one streaming feature app until Ctrl-C (or --idle-timeout seconds without input): the
    app module's ``main()`` is its whole wiring; the CLI only applies the flags."""
    settings = FeatureAppSettings()
    settings = override(settings, broker_address=args.broker, feast_push=False if args.no_feast else None)
    if args.app == "all":
        return _run_all(settings, args)
    print(f"{args.app}-features app consuming {settings.broker_address}", file=sys.stderr, flush=True)
    if args.app in ("progress", "gaps"):
        from stratx.quix_apps import track_gaps

        return track_gaps.main(settings, args.idle_timeout or 0.0, which=args.app)
    app = importlib.import_module(f"stratx.quix_apps.{FEATURE_APPS[args.app]}")
    return int(app.main(settings, args.idle_timeout or 0.0))


def cmd_stream_app(args: argparse.Namespace) -> int:
    """`stratx predict` / `stratx alerts`: the prediction or alert app until Ctrl-C (or idle)."""
    from stratx.quix_apps import alerts_app, predictions

    settings = override(PredictionAppSettings(), broker_address=args.broker)
    print(f"{args.command} app consuming {settings.broker_address}", file=sys.stderr, flush=True)
    app = alerts_app if args.command == "alerts" else predictions
    return app.main(settings, args.idle_timeout or 0.0)


def cmd_ingest(args: argparse.Namespace) -> int:
    """`stratx ingest`: the stateless OpenF1 ingest app (inbound topic -> raw topics + dead letters)."""
    from stratx.functions.settings import IngestSettings
    from stratx.quix_apps import ingest_app

    settings = override(IngestSettings(), broker_address=args.broker)
    print(f"ingest app consuming {catalog.INBOUND_OPENF1.name} on {settings.broker_address}", file=sys.stderr)
    return ingest_app.main(settings, args.idle_timeout or 0.0)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """`stratx dashboard`: the Panel dashboard + broadcast overlay until Ctrl-C."""
    from stratx.panel_app import app

    return app.main(args=args)


def cmd_serve(args: argparse.Namespace) -> int:
    """`stratx serve`: every model's BentoML service on its own port until Ctrl-C."""
    from stratx.bentos.lifecycle import serve

    return serve.serve_main(args)


def cmd_bentos(args: argparse.Namespace) -> int:
    """`stratx bentos build`: the serving wheel, the champions, then `bentoml build` per model."""
    from stratx.bentos.lifecycle import serve

    return serve.build_main(args)
