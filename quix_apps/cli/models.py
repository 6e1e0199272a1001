"""Subcommands of the model lifecycle and monitoring: train, evaluate, drift, config."""

from __future__ import annotations

import argparse
from pathlib import Path

from stratx.functions.settings import (
    ENV_VARS,
)
from stratx.quix_apps.cli.common import (
    UserError,
    override,
)
from stratx.quix_apps.kit import admin


def cmd_train(args: argparse.Namespace) -> int:
    from stratx.bentos.lifecycle import training

    return training.train_main(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stratx.bentos.lifecycle import evaluation

    return evaluation.evaluate_main(args)


def cmd_backtest(args: argparse.Namespace) -> int:
    """`stratx backtest`: the races through the pipeline of `stratx up`, every record scored."""
    import shlex
    import sys

    from stratx.quix_apps import backtest

    args.command_line = shlex.join(["stratx", *sys.argv[1:]])
    return backtest.backtest_main(args)


def cmd_drift(args: argparse.Namespace) -> int:
    """`stratx drift`: Evidently drift of a session's lap features vs the training reference (once,
    or every S seconds), HTML + JSON reports, Prometheus gauges, a drift alert on a crossing."""
    from stratx.functions.settings import DriftSettings
    from stratx.quix_apps import drift

    settings = override(
        DriftSettings(),
        broker_address=args.broker,
        drift_window_laps=args.window_laps,
        drift_window_minutes=args.window_minutes,
        drift_threshold=args.threshold,
        drift_reports_dir=Path(args.reports_dir) if args.reports_dir else None,
    )
    every = settings.drift_period_s if args.periodic else args.every
    if every is not None and every <= 0:
        raise UserError("--every must be a positive number of seconds")
    client = admin.connect(
        settings.broker_address, settings.connect_timeout_s, settings.kafka_auth()
    )  # fails fast if unreachable
    admin.create_topics(client)
    client.close()
    if every is not None:
        drift.serve_metrics(settings)
    try:
        return drift.run_job(settings, args.session_key, every, args.max_runs, args.rebuild_reference)
    except drift.NoData as exc:
        raise UserError(str(exc)) from exc


def cmd_config(args: argparse.Namespace) -> int:
    for name, doc in ENV_VARS.items():
        print(f"{name:36s} {doc}")
    return 0
