"""Subcommands about races: list, replay (FastF1 or an OpenF1 recording), bundle, offline features, live."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from stratx.bentos.lifecycle import sources
from stratx.functions.settings import (
    LiveSettings,
    ReplaySettings,
)
from stratx.quix_apps.cli.common import (
    UserError,
    log,
    override,
    print_counts,
)


def cmd_races(args: argparse.Namespace) -> int:
    settings = ReplaySettings()
    races = sources.list_bundled(settings.data_dir)
    if not races:
        raise UserError(f"no bundled races under {settings.data_dir / 'races'}")
    for r in races:
        m = r.meta
        print(
            f"{m.year} {m.event_name:28s} {m.session_name:10s} session_key={m.session_key} folder={r.path.name}"
        )
    return 0


def load_race(settings: ReplaySettings, year: int, event: str, session: str, source: str) -> sources.RaceData:
    if source in ("auto", "bundled"):
        bundled = sources.find_bundled(settings.data_dir, year, event, session)
        if bundled is not None:
            log.info("loading bundled race %s", bundled.path.name)
            return sources.load_bundled(bundled.path)
        if source == "bundled":
            raise UserError(f"no bundled race matches {year} '{event}' {session}; see `stratx races`")
    log.info("loading %s %s %s through FastF1 (cache %s)", year, event, session, settings.fastf1_cache)
    settings.fastf1_cache.mkdir(parents=True, exist_ok=True)
    return sources.load_fastf1(
        year, event, session, settings.fastf1_cache, settings.fastf1_offline, settings.telemetry_dir
    )


def replay_settings(args: argparse.Namespace) -> ReplaySettings:
    settings = ReplaySettings()
    cache, telemetry = getattr(args, "cache", None), getattr(args, "telemetry_dir", None)
    return override(
        settings,
        broker_address=args.broker,
        fastf1_cache=Path(cache) if cache else None,
        fastf1_offline=True if getattr(args, "offline", False) else None,
        telemetry_dir=Path(telemetry) if telemetry else None,
    )


def _replay(settings: ReplaySettings, args: argparse.Namespace, year: int, event: str, session: str) -> int:
    return replay_run(settings, args, year, event, session)[0]


def replay_run(
    settings: ReplaySettings, args: argparse.Namespace, year: int, event: str, session: str
) -> tuple[int, sources.RaceData, object]:
    race = load_race(settings, year, event, session, args.source)  # a race it cannot find: before Quix loads
    from stratx.quix_apps import replay

    if args.drivers:
        race = race.filter_drivers({d.strip() for d in args.drivers.split(",") if d.strip()})
    if race.missing:
        print(
            f"note: source tables unavailable for this session, skipped: {', '.join(race.missing)}",
            file=sys.stderr,
        )
    options = replay.ReplayOptions(
        speed=args.speed,
        resume=args.resume,
        replay_id=args.replay_id,
        max_events=args.max_events,
        progress=not args.no_progress,
        pace_from_lap=args.pace_from_lap,
    )
    from stratx.quix_apps.kit import metrics

    metrics.serve(replay.APP, settings)
    result = replay.run(race, settings, options)
    _print_summary(result)
    if result.interrupted:
        print(f"interrupted after Seq {result.last_seq}; continue with --resume", file=sys.stderr)
        return 130, race, result
    return 0, race, result


def _print_summary(result: object) -> None:
    r = result
    published: Counter[str] = r.published  # type: ignore[attr-defined]
    total = sum(published.values())
    rate = total / r.elapsed_s if r.elapsed_s else 0.0  # type: ignore[attr-defined]
    state = "finished" if r.finished else "stopped"  # type: ignore[attr-defined]
    print(
        f"replay {r.replay_id} {state}: {total} events published "  # type: ignore[attr-defined]
        f"({rate:,.0f}/s), {r.dead_letters} dead letters, {r.skipped} skipped on resume",  # type: ignore[attr-defined]
        file=sys.stderr,
    )
    print_counts(published)


def cmd_replay(args: argparse.Namespace) -> int:
    if args.recording:
        return _replay_recording(args)
    if args.year is None or args.event is None:
        raise UserError("replay needs --year and --event (a FastF1 session) or --recording DIR")
    return _replay(replay_settings(args), args, args.year, args.event, args.session)


def _replay_recording(args: argparse.Namespace) -> int:
    """Serve the recording on loopback (simulated clock at --speed) and follow it with the live poller."""
    from datetime import timedelta

    from stratx.quix_apps import live
    from stratx.quix_apps.kit import metrics, openf1_client, openf1_server

    folder = Path(args.recording)
    if not (folder / "MANIFEST.json").exists():
        raise UserError(f"{folder} is not a recording (no MANIFEST.json); make one with `stratx record`")
    app = openf1_server.create_app(folder)
    start = app.data.manifest.get("lights_out")
    if args.speed and args.speed > 0 and start:
        app.clock = openf1_server.SimClock(
            openf1_server.parse_date(start) - timedelta(seconds=5), speed=args.speed
        )
    else:  # as fast as possible: everything recorded is visible at once
        app.clock = openf1_server.SimClock(datetime.now(UTC) + timedelta(days=3650), speed=0)
    base_url, stop = openf1_server.serve(app)
    settings = LiveSettings().model_copy(update={"openf1_url": f"{base_url}/v1", "poll_interval_s": 1.0})
    if args.broker:
        settings = settings.model_copy(update={"broker_address": args.broker})
    key = str(app.data.manifest.get("session_key", "latest"))
    options = live.LiveOptions(session_key=key, idle_cycles=3 if args.speed else 1, resume=args.resume)
    try:
        with openf1_client.OpenF1Client(base_url=settings.openf1_url, rate_limit=10_000) as client:
            metrics.serve(live.APP, settings)
            result = live.run(client, settings, options)
    finally:
        stop()
    _print_live(result)
    return 130 if result.interrupted else 0


def cmd_bundle(args: argparse.Namespace) -> int:
    settings = replay_settings(args)
    race = sources.load_fastf1(
        args.year,
        args.event,
        args.session,
        settings.fastf1_cache,
        settings.fastf1_offline,
        settings.telemetry_dir,
    )
    out = sources.write_bundle(
        race,
        Path(args.out),
        {"fastf1_cache": str(settings.fastf1_cache), "telemetry_dir": str(settings.telemetry_dir)},
    )
    print(f"wrote {out}: {json.dumps(race.row_counts())}; missing: {list(race.missing)}")
    return 0


def cmd_features_build(args: argparse.Namespace) -> int:
    """Offline lap features for the bundled races and the bundled (or given) FastF1 exports -> parquet."""
    from stratx.bentos.lifecycle import feature_build

    settings = ReplaySettings()
    races = [sources.load_bundled(r.path) for r in sources.list_bundled(settings.data_dir)]
    seen = {(r.meta.year, r.meta.event_name, r.meta.session_name) for r in races}
    corpus = settings.data_dir / "corpus" / "fastf1_exports"
    export_dirs = args.exports or ([str(corpus)] if corpus.is_dir() else [])
    for export_dir in export_dirs:
        for race in sources.load_exports(Path(export_dir)):  # bundled copies win: they have real keys
            ident = (race.meta.year, race.meta.event_name, race.meta.session_name)
            if ident not in seen:
                seen.add(ident)
                races.append(race)
    if not races:
        raise UserError("no races to build from: no bundled races and no --exports")
    table, report = feature_build.build_lap_table(races, progress=not args.no_progress)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, compression="zstd", index=False)
    print(
        f"wrote {out}: {report.rows} driver-laps from {report.races} races; {len(report.rejected)} laps rejected"
    )
    for reason in report.rejected[:10]:
        print(f"  rejected: {reason}", file=sys.stderr)
    if args.aggression_out:
        aggression = feature_build.build_aggression_table(races, progress=not args.no_progress)
        aggression.to_parquet(args.aggression_out, compression="zstd", index=False)
        print(
            f"wrote {args.aggression_out}: {len(aggression)} driver-laps of aggression (car samples, else OpenF1 per-lap aggregates)"
        )
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    """Follow a session through OpenF1 into the raw topics (same schemas as the replay)."""
    from stratx.quix_apps import live
    from stratx.quix_apps.kit import metrics, openf1_client, recording

    settings = LiveSettings()
    settings = override(
        settings, broker_address=args.broker, openf1_url=args.openf1_url, poll_interval_s=args.poll_interval
    )
    token = None
    if settings.openf1_username and settings.openf1_password:  # the authenticated live tier
        token = openf1_client.TokenProvider(settings.openf1_username, settings.openf1_password)
    options = live.LiveOptions(
        session_key=args.session_key,
        max_cycles=args.max_cycles,
        idle_cycles=args.idle_cycles,
        resume=not args.no_resume,
    )
    recorder = recording.Recorder(Path(args.out)) if getattr(args, "out", None) else None
    push = getattr(args, "push", False)
    if (
        push
        and token is None
        and settings.openf1_mqtt_broker == LiveSettings.model_fields["openf1_mqtt_broker"].default
    ):
        raise UserError(
            "--push needs the OpenF1 account: set STRATX_OPENF1_USERNAME and STRATX_OPENF1_PASSWORD"
        )
    with openf1_client.OpenF1Client(
        base_url=settings.openf1_url,
        rate_limit=settings.openf1_rate_limit,
        rate_window=settings.openf1_rate_window_s,
        token_provider=token,
    ) as client:
        metrics.serve(live.APP, settings)
        if push:  # MQTT password = the OAuth2 access token (a fresh one on every connect)
            from stratx.quix_apps import live_push

            password = token.token if token is not None else None
            result = live_push.run(client, settings, options, recorder, password=password)
        else:
            result = live.run(client, settings, options, recorder)
    _print_live(result)
    if recorder is not None:
        print(
            f"recording saved to {recorder.out_dir} (replay: stratx replay --recording {recorder.out_dir})",
            file=sys.stderr,
        )
    return 130 if result.interrupted else 0


def _print_live(result: object) -> None:
    r = result
    published: Counter[str] = r.published  # type: ignore[attr-defined]
    print(
        f"live session {r.session_key}: {r.cycles} poll cycles, {r.requests} requests, "  # type: ignore[attr-defined]
        f"{sum(published.values())} events published, {r.dead_letters} dead letters",  # type: ignore[attr-defined]
        file=sys.stderr,
    )
    if r.push:  # type: ignore[attr-defined]
        print(f"push feed: {dict(r.push)}", file=sys.stderr)  # type: ignore[attr-defined]
    print_counts(published)
