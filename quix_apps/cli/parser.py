"""The `stratx` argument parser. Light on purpose: it imports no subsystem, so `--help` and argument
errors answer at once; each subcommand names the function that runs it as ``"<module>:<function>"``."""

from __future__ import annotations

import argparse

from stratx.functions.models import MODEL_KEYS


def _add_replay_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="event-clock speed: 1 = real time, 10 = 10x, 0 = as fast as possible (default)",
    )
    p.add_argument(
        "--pace-from-lap",
        type=int,
        help="replay everything before this lap's start at full speed, then pace (1 = from lights out)",
    )
    p.add_argument("--drivers", help="comma-separated driver codes or numbers, e.g. VER,HAM,16")
    p.add_argument("--resume", action="store_true", help="continue after the last checkpointed event")
    p.add_argument("--replay-id", help="checkpoint id (default: the session key)")
    p.add_argument("--max-events", type=int, help="stop after N events (resume continues from there)")
    p.add_argument(
        "--source",
        choices=("auto", "bundled", "fastf1"),
        default="auto",
        help="bundled data, a FastF1 cache/download, or auto (bundled first)",
    )
    p.add_argument("--cache", help="FastF1 cache folder (STRATX_FASTF1_CACHE)")
    p.add_argument("--offline", action="store_true", help="never download (STRATX_FASTF1_OFFLINE)")
    p.add_argument("--telemetry-dir", help="OpenF1 car_data/location parquet folder (STRATX_TELEMETRY_DIR)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stratx", description="StratX real-time F1 race-strategy engine")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="quickstart: embedded broker + topics + replay of a bundled real race")
    p.add_argument("--port", type=int, help="embedded broker port (default 9092, or a free one)")
    p.add_argument("--keep-running", action="store_true", help="keep the broker up after the replay")
    p.add_argument(
        "--no-feast", action="store_true", help="do not push lap features to the Feast online store"
    )
    _add_replay_flags(p)
    p.set_defaults(func="stack:cmd_demo", broker=None, pace_from_lap=1)

    p = sub.add_parser(
        "up",
        help="the whole pipeline: broker, model services, streaming apps, dashboard, replay of a bundled race",
    )
    p.add_argument("--port", type=int, help="embedded broker port (default 9092, or a free one)")
    p.add_argument("--exit-when-done", action="store_true", help="stop everything after the summary")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the Panel dashboard")
    p.add_argument("--dashboard-port", type=int, help="dashboard port (default: a free one)")
    p.add_argument(
        "--no-feast", action="store_true", help="do not push lap features to the Feast online store"
    )
    p.add_argument("--year", type=int, help="season of the race to replay (default: the demo race, 2023)")
    p.add_argument("--event", help="event name, location, country or round number (default: Bahrain)")
    p.add_argument("--session", default="R", help="R, S, Q, SQ, FP1-3 (default R)")
    _add_replay_flags(p)
    p.set_defaults(func="stack:cmd_up", broker=None, pace_from_lap=1)

    p = sub.add_parser(
        "backtest",
        help="replay races through the whole pipeline at full speed and score every prediction and "
        "alert it emits: backtest.md + backtest.json",
    )
    _race_options(p)
    p.add_argument(
        "--source",
        choices=("auto", "bundled", "fastf1"),
        default="auto",
        help="with --year/--event: bundled data, the FastF1 cache, or auto (bundled first)",
    )
    p.add_argument("--cache", help="FastF1 cache folder for --year/--event (STRATX_FASTF1_CACHE)")
    p.add_argument("--telemetry-dir", help="OpenF1 car_data/location parquet folder (STRATX_TELEMETRY_DIR)")
    p.add_argument("--drivers", help="only these drivers (codes or numbers, comma-separated): a slice")
    p.add_argument("--max-events", type=int, help="stop each replay after N events: a slice")
    p.add_argument(
        "--wait-timeout", type=float, default=420.0, help="seconds to wait for a race's last predictions"
    )
    p.add_argument("--out", help="output folder (default <STRATX_REPORTS_DIR>/backtest)")
    p.add_argument(
        "--rescore",
        action="store_true",
        help="score the records an earlier run saved in --out (records.json.gz) without the pipeline",
    )
    p.add_argument(
        "--no-feast", action="store_true", help="do not push lap features to the Feast online store"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (the stage lines stay)")
    p.set_defaults(func="models:cmd_backtest", broker=None, offline=True)  # FastF1: never downloads

    p = sub.add_parser("broker", help="run the embedded Kafka-API broker (Tansu) and create the topics")
    p.add_argument("--host", help="listen address (STRATX_BROKER_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (STRATX_BROKER_PORT, default 9092)")
    p.add_argument("--no-topics", action="store_true", help="do not create the catalog topics")
    p.set_defaults(func="stack:cmd_broker")

    p = sub.add_parser("topics", help="create, list or describe the topics")
    p.add_argument("action", choices=("create", "list", "describe"))
    p.add_argument("names", nargs="*", help="topics to describe (default: the whole catalog)")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    p.set_defaults(func="stack:cmd_topics")

    p = sub.add_parser(
        "replay",
        help="replay a FastF1 session (bundled, cached or downloadable) or an OpenF1 recording into the topics",
    )
    p.add_argument("--year", type=int, help="season (FastF1 sessions)")
    p.add_argument("--event", help="event name, location, country or round number (FastF1 sessions)")
    p.add_argument("--recording", help="a folder made by `stratx record` (replayed through the live poller)")
    p.add_argument("--session", default="R", help="R, S, Q, SQ, FP1-3 (default R)")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    _add_replay_flags(p)
    p.set_defaults(func="races:cmd_replay")

    p = sub.add_parser("races", help="list the bundled races")
    p.set_defaults(func="races:cmd_races")

    p = sub.add_parser(
        "bundle", help="write a FastF1 session into the bundled parquet format (refresh data/)"
    )
    p.add_argument("--year", type=int, required=True)
    p.add_argument("--event", required=True)
    p.add_argument("--session", default="R")
    p.add_argument("--out", default="data/races")
    p.add_argument("--cache", help="FastF1 cache folder")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--telemetry-dir", help="OpenF1 car_data/location parquet folder")
    p.set_defaults(func="races:cmd_bundle", broker=None)

    p = sub.add_parser("features", help="features: build offline tables, or run the streaming apps")
    fsub = p.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    b = fsub.add_parser(
        "build", help="offline lap features of the bundled races (+ FastF1 exports) to parquet"
    )
    b.add_argument(
        "--exports",
        action="append",
        help="folder with flat FastF1 exports (laps.parquet, ...); default: the bundled data/corpus/fastf1_exports",
    )
    b.add_argument("--out", default=".stratx/features/lap_features_offline.parquet")
    b.add_argument(
        "--aggression-out",
        default=".stratx/features/lap_aggression_offline.parquet",
        help="per-lap driver aggression of the races with car telemetry ('' to skip)",
    )
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func="races:cmd_features_build")
    r = fsub.add_parser("run", help="run the streaming lap-features app (Quix Streams) against the broker")
    r.add_argument(
        "--app",
        choices=("lap", "telemetry", "aggression", "race", "progress", "gaps", "all"),
        default="all",
        help="which app: lap features, telemetry windows, lap aggression, race state (retirements), "
        "track progress, track gaps, "
        "or all in their own processes",
    )
    r.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    r.add_argument("--no-feast", action="store_true", help="do not push to the Feast online store")
    r.add_argument("--idle-timeout", type=float, help="stop after this many seconds without new input")
    r.set_defaults(func="stack:cmd_features_run")

    p = sub.add_parser("dashboard", help="the live Panel dashboard (/) and broadcast overlay (/overlay)")
    _dashboard_arguments(p)
    p.set_defaults(func="stack:cmd_dashboard")

    p = sub.add_parser(
        "serve", help="serve every model's @champion with BentoML, one port each (Ctrl-C stops)"
    )
    p.add_argument("--model", dest="models", action="append", choices=MODEL_KEYS, help="only these models")
    p.add_argument("--no-import", action="store_true", help="serve the BentoML store as it is (no MLflow)")
    p.set_defaults(func="stack:cmd_serve")

    p = sub.add_parser("bentos", help="build one Bento per model (bentoml build, offline)")
    bsub = p.add_subparsers(dest="bentos_command", required=True, metavar="ACTION")
    b = bsub.add_parser("build", help="serving wheel + champions into the BentoML store + bentoml build")
    b.add_argument("--model", dest="models", action="append", choices=MODEL_KEYS, help="only these models")
    b.add_argument("--no-import", action="store_true", help="use the BentoML store as it is (no MLflow)")
    b.add_argument(
        "--export",
        action="store_true",
        help="also unpack each Bento to bentos/dist/containers/<model>/ (its generated Dockerfile; "
        "compose.bentos.yaml builds the images from there)",
    )
    b.set_defaults(func="stack:cmd_bentos")

    for name, text in (
        ("predict", "run the prediction app: lap features -> the model services -> prediction topics"),
        ("alerts", "run the alerts app: prediction topics -> debounced alerts on stratx.alerts"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
        p.add_argument("--idle-timeout", type=float, help="stop after this many seconds without new input")
        p.set_defaults(func="stack:cmd_stream_app")

    p = sub.add_parser("ingest", help="stateless ingest: inbound OpenF1 records -> raw topics + dead letters")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    p.add_argument("--idle-timeout", type=float, help="stop after this many seconds without new input")
    p.set_defaults(func="stack:cmd_ingest")

    p = sub.add_parser("live", help="follow a session through the OpenF1 API into the raw topics")
    p.add_argument("--session-key", default="latest", help="OpenF1 session key, or 'latest'")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    p.add_argument("--openf1-url", help="OpenF1 base URL (STRATX_OPENF1_URL)")
    p.add_argument("--poll-interval", type=float, help="seconds between poll cycles (STRATX_POLL_INTERVAL_S)")
    p.add_argument("--max-cycles", type=int, help="stop after N poll cycles")
    p.add_argument("--idle-cycles", type=int, help="stop after N cycles in a row without new records")
    p.add_argument("--no-resume", action="store_true", help="ignore the checkpoint; start from the beginning")
    p.add_argument("--out", help="also save every fetched record to this folder (a recording)")
    p.add_argument(
        "--push",
        action="store_true",
        help="OpenF1's MQTT feed (STRATX_OPENF1_MQTT_*; needs the account), polling only as a safety net",
    )
    p.set_defaults(func="races:cmd_live")

    p = sub.add_parser("record", help="follow a session through OpenF1 and save it to disk (and the topics)")
    p.add_argument("--session-key", default="latest", help="OpenF1 session key, or 'latest'")
    p.add_argument("--out", required=True, help="recording folder (replay with `stratx replay --recording`)")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    p.add_argument("--openf1-url", help="OpenF1 base URL (STRATX_OPENF1_URL)")
    p.add_argument("--poll-interval", type=float, help="seconds between poll cycles (STRATX_POLL_INTERVAL_S)")
    p.add_argument("--max-cycles", type=int, help="stop after N poll cycles")
    p.add_argument("--idle-cycles", type=int, help="stop after N cycles in a row without new records")
    p.add_argument("--no-resume", action="store_true", help="ignore the checkpoint; start from the beginning")
    p.set_defaults(func="races:cmd_live")

    p = sub.add_parser("train", help="train the models on the bundled races + corpus, tracked in MLflow")
    p.add_argument("--model", choices=("all", *MODEL_KEYS), default="all")
    p.add_argument("--if-missing", action="store_true", help="only the models without a @champion yet")
    p.add_argument(
        "--exports", action="append", help="flat FastF1 exports (default: data/corpus/fastf1_exports)"
    )
    p.add_argument("--features", help="reuse a built lap-feature parquet (stratx features build --out)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func="models:cmd_train")

    p = sub.add_parser("evaluate", help="score the models' @champions on unseen races: report + metrics.json")
    p.add_argument("--model", choices=("all", *MODEL_KEYS), default="all")
    _race_options(p)
    p.add_argument("--out", help="output folder (STRATX_REPORTS_DIR, default .stratx/reports)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func="models:cmd_evaluate")

    p = sub.add_parser("drift", help="Evidently drift of a session's lap features vs the training reference")
    p.add_argument("--session-key", type=int, help="the session (default: the latest on stratx.features.lap)")
    p.add_argument(
        "--window-laps", type=int, help="last N race laps (0: all so far; STRATX_DRIFT_WINDOW_LAPS)"
    )
    p.add_argument(
        "--window-minutes", type=float, help="last T minutes of session time (STRATX_DRIFT_WINDOW_MINUTES)"
    )
    p.add_argument(
        "--threshold", type=float, help="drifted-column share that raises an alert (STRATX_DRIFT_THRESHOLD)"
    )
    p.add_argument("--reports-dir", help="reports folder (STRATX_DRIFT_REPORTS_DIR)")
    p.add_argument("--broker", help="bootstrap address (STRATX_BROKER_ADDRESS)")
    p.add_argument("--every", type=float, help="repeat every S seconds until Ctrl-C (exports /metrics)")
    p.add_argument("--periodic", action="store_true", help="repeat every STRATX_DRIFT_PERIOD_S seconds")
    p.add_argument("--max-runs", type=int, help="with --every: stop after N runs")
    p.add_argument("--rebuild-reference", action="store_true", help="rebuild the reference parquet first")
    p.set_defaults(func="models:cmd_drift")

    p = sub.add_parser("config", help="list the STRATX_* environment variables")
    p.set_defaults(func="models:cmd_config")
    return parser


def _dashboard_arguments(p: argparse.ArgumentParser) -> None:
    from stratx.panel_app.options import add_arguments  # no Panel import until the server starts

    add_arguments(p)


def _race_options(p: argparse.ArgumentParser) -> None:
    """The races `stratx evaluate` and `stratx backtest` take (``evaluation.user_races``)."""
    p.add_argument("--race-dir", action="append", help="a bundled-format race folder (repeatable)")
    p.add_argument(
        "--exports", action="append", help="folder with FastF1-format laps.parquet etc. (repeatable)"
    )
    p.add_argument("--fastf1-cache", help="FastF1 cache folder (with --year/--event [--session])")
    p.add_argument(
        "--year", type=int, help="season (alone with --event: bundled first, then the FastF1 cache)"
    )
    p.add_argument(
        "--event",
        action="append",
        help="event name, location, country or round number (repeatable: several races of the season)",
    )
    p.add_argument("--session", default="R", help="R, S, Q, SQ, FP1-3 (default R)")
