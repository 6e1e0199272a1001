"""Track-gap apps: car positions -> per-driver progress (~1 Hz) -> continuous gaps per session.

Two apps around the pure functions of :mod:`stratx.functions.features.track_gaps`:

* **progress** (:func:`build_progress_app`): ``stratx.raw.car_position`` (key
  ``<SessionKey>:<DriverNumber>``, one Quix state per driver) -> :func:`progress_step` ->
  ``stratx.features.progress`` (same key, so each driver's points stay in order).
* **gaps** (:func:`build_gap_app`): ``stratx.features.progress`` -> ``group_by`` session (one
  state holds every driver of the session) -> :func:`gap_step` -> ``stratx.features.track_gap``
  (key ``<SessionKey>:<DriverNumber>``), rows emitted behind the event-time watermark.

Both need the session's :class:`SessionTrack` (static track map, race start, drivers): a replay's
comes from its bundled race (on the replay's clock), a live session's from its ``stratx.race.track``
record (the race-state app, ``functions/track_state.py``), which every replica follows whole
(:class:`Registry`). Until a session has one, the apps hold its inputs in their state
(``functions/features/track_hold.py``), say so once in the log, and release them when it comes;
a session that never gets one (no map and no clean lap) produces no gaps.

Failure policy: a record that is not JSON, fails its schema, is a duplicate or out of order goes
to ``stratx.dead_letter`` (Stage ``track_gaps``) with the reason; the pipeline keeps going.

Restart after a hard kill: the inputs after the last committed offsets are processed again from
the committed state (the gap app's session topic gives them back in their first order) and give
the same points and rows; those already on the output topic are not sent again
(:class:`~stratx.quix_apps.kit.emitted.Emitted`, idempotency key SessionKey, DriverNumber,
SessionTime, the whole value compared). The gap app's re-partitioning sends those progress points
to its session topic again; the second copies are dead-lettered (duplicate, out of order or late).

Maps: ``python -m stratx.quix_apps.track_gaps maps data/races/2023_bahrain_grand_prix_race
data/races/2023_las_vegas_grand_prix_race --out data/circuits`` rebuilds the shipped maps.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.state import State

from stratx.bentos.lifecycle import sources
from stratx.functions import catalog, dead_letters, ingest, schemas
from stratx.functions.catalog import TopicSpec
from stratx.functions.features import track_gaps as tg
from stratx.functions.features import track_hold as hold
from stratx.functions.features.track_progress import from_race_track, on_clock
from stratx.functions.racedata import RaceData
from stratx.functions.settings import REPO_ROOT, FeatureAppSettings, KafkaSettings, ReplaySettings
from stratx.quix_apps.kit import admin, metrics, wire
from stratx.quix_apps.kit.emitted import restart_filter
from stratx.quix_apps.kit.follower import Follower

STAGE = "track_gaps"
PROGRESS_APP, GAPS_APP = "progress", "gaps"  # metrics app labels and exporter port offsets
PROGRESS_GROUP = "stratx-track-progress"
GAP_GROUP = "stratx-track-gaps"
STATE_KEY = "track"
CIRCUITS_DIR = REPO_ROOT / "data" / "circuits"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
log = logging.getLogger(__name__)


CarProgress, TrackGap = schemas.CarProgress, schemas.TrackGap
PROGRESS, TRACK_GAP = catalog.PROGRESS, catalog.TRACK_GAP


# --- callbacks -------------------------------------------------------------------------------

Tracks = Mapping[int, tg.SessionTrack]


def _letter(
    source: TopicSpec, key: str | None, payload: dict[str, Any], reason: str | ValidationError
) -> dict[str, Any]:
    letter = dead_letters.build(source, payload, reason, stage=STAGE, key=key)
    return {"DeadLetter": letter.model_dump(mode="json")}


class Registry:
    """Which SessionTrack a record is on: a replay's static track (the bundled race, on its clock),
    else the session's ``stratx.race.track`` record from ``follower`` (the topic followed in the
    background, :mod:`~stratx.quix_apps.kit.follower`), else None: the app holds the session's
    inputs and says so once. A RaceTrack record that fails its schema is dead-lettered once
    (``letters``) and skipped."""

    def __init__(self, static: Tracks, follower: Any = None, letters: bool = True) -> None:
        self.static, self.follower, self.letters = static, follower, letters
        self.waiting: set[int] = set()
        self._streamed: dict[int, tuple[Any, tg.SessionTrack | None]] = {}
        self.bad: list[dict[str, Any]] = []  # dead letters not yet sent

    def __call__(self, record: dict[str, Any]) -> tg.SessionTrack | None:
        key = int(record["SessionKey"])
        static = self.static.get(key)
        if static is not None and on_clock(static, record):
            return static
        found = self._from_stream(key)
        if found is not None and on_clock(found, record):
            if key in self.waiting:
                self.waiting.discard(key)
                log.warning(
                    "session %s: track from %s, start %.3f s", key, catalog.RACE_TRACK.name, found.start_time
                )
            return found
        if key not in self.waiting:
            self.waiting.add(key)
            why = "its bundled track is on another clock" if static is not None else "no track yet"
            until = catalog.RACE_TRACK.name
            log.warning(
                "session %s has no track map (%s): holding its inputs until %s has it", key, why, until
            )
        return None

    def _from_stream(self, key: int) -> tg.SessionTrack | None:
        record = self.follower.get(key) if self.follower is not None else None
        if record is None:
            return None
        cached = self._streamed.get(key)
        if cached is not None and cached[0] is record:
            return cached[1]
        try:
            track: tg.SessionTrack | None = from_race_track(
                schemas.RaceTrack.model_validate(record).model_dump(mode="json")
            )
        except (ValidationError, ValueError, KeyError) as exc:
            track = None
            log.warning("session %s: its %s record is unusable: %s", key, catalog.RACE_TRACK.name, exc)
            if self.letters:
                reason = exc if isinstance(exc, ValidationError) else f"RaceTrack: {exc}"
                self.bad.append(_letter(catalog.RACE_TRACK, str(key), record, reason))
        self._streamed[key] = (record, track)
        return track

    def letters_due(self) -> list[dict[str, Any]]:
        out, self.bad = self.bad, []
        return out


def _registry(tracks: Tracks | Registry) -> Registry:
    return tracks if isinstance(tracks, Registry) else Registry(tracks)


def progress_callback(
    tracks: Tracks | Registry,
) -> Callable[[Any, Any, int, Any, State], list[dict[str, Any]]]:
    lookup = _registry(tracks)

    def process(value: Any, key: Any, timestamp: int, headers: Any, state: State) -> list[dict[str, Any]]:
        """One position sample -> ``{"Progress": point}``s and ``{"DeadLetter": ...}``s; a sample
        of a session without a track yet is held (track_hold.py) and released with a later one."""
        if wire.is_invalid(value):
            return [_letter(catalog.CAR_POSITION, key, {"raw": value.get(wire.RAW)}, value[wire.INVALID])]
        checked = ingest.validate(ingest.RawRecord(catalog.CAR_POSITION, key, value))
        if isinstance(checked, ingest.Rejected):
            return [_letter(catalog.CAR_POSITION, key, value, checked.reason)]
        sample = checked.model_dump()
        session = lookup(sample)
        current = state.get(STATE_KEY)
        released: list[dict[str, Any]] = []
        if session is None:
            current, items = hold.hold_sample(current, sample)
        else:
            if hold.holding(current):
                mine = current["key"] == [sample["SessionKey"], sample["DriverNumber"]]
                current, released = hold.release_samples(current, session) if mine else (None, [])
            current, items = tg.progress_step(current, sample, session)
        state.set(STATE_KEY, current)
        out = lookup.letters_due()
        for item, payload in [*((i, i.get("Value")) for i in released), *((i, value) for i in items)]:
            rejected = tg.is_rejected(item)
            out.append(
                _letter(catalog.CAR_POSITION, key, payload, item[tg.REJECTED])
                if rejected
                else {"Progress": item}
            )
        return out

    return process


def gap_callback(
    tracks: Tracks | Registry, stale_s: float | None = tg.STALE_S
) -> Callable[[Any, State], list[dict[str, Any]]]:
    lookup = _registry(tracks)

    def process(value: Any, state: State) -> list[dict[str, Any]]:
        """One progress point -> ``{"Gap": row}`` per emitted row, or ``{"DeadLetter": ...}``; a
        point of a session without a track yet is held and released with a later one."""
        key = dead_letters.record_key(value)
        if wire.is_invalid(value):
            return [_letter(PROGRESS, key, {"raw": value.get(wire.RAW)}, value[wire.INVALID])]
        try:
            point = CarProgress.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            return [_letter(PROGRESS, key, value, exc)]
        session = lookup(point)
        current = state.get(STATE_KEY)
        released: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        if session is None:
            current = hold.hold_point(current, point)
        else:
            if hold.holding(current):
                current, released = hold.release_points(current, session, stale_s)
            current, items = tg.gap_step(current, point, session, stale_s)
        state.set(STATE_KEY, current)
        out = lookup.letters_due()
        for item, payload in [*((i, i.get("Value")) for i in released), *((i, value) for i in items)]:
            out.append(
                _letter(PROGRESS, key, payload, item[tg.REJECTED]) if tg.is_rejected(item) else {"Gap": item}
            )
        return out

    return process


def session_of(value: dict[str, Any]) -> str:
    return "invalid" if wire.is_invalid(value) else str(value.get("SessionKey"))


def point_id(record: dict[str, Any]) -> tuple[object, ...]:
    """The idempotency key of a progress point or gap row: one per driver and SessionTime."""
    return (record["SessionKey"], record["DriverNumber"], record["SessionTime"])


def driver_key(row: dict[str, Any]) -> str:
    return catalog.message_key(TRACK_GAP, row["SessionKey"], row["DriverNumber"])


def date_timestamp(row: dict[str, Any], key: Any, timestamp: int, headers: Any) -> int:
    """Message timestamp: the row's Date in ms (the input's timestamp when it has no Date)."""
    if row.get("Date") is None:
        return timestamp
    return (datetime.fromisoformat(row["Date"]) - _EPOCH) // timedelta(milliseconds=1)


def _split(items: StreamingDataFrame, kind: str) -> StreamingDataFrame:
    return items.filter(lambda item: kind in item).apply(lambda item: item[kind])


# --- apps ------------------------------------------------------------------------------------


def _application(settings: KafkaSettings, group: str, state_dir: Path | None, loglevel: int) -> Application:
    client = admin.connect(settings.broker_address, settings.connect_timeout_s, settings.kafka_auth())
    try:
        admin.create_topics(client, catalog.ALL_TOPICS)
    finally:
        client.close()
    return wire.application(settings, group, state_dir, loglevel)


def build_progress_app(
    settings: KafkaSettings,
    tracks: Tracks | Registry,
    *,
    state_dir: Path | None = None,
    consumer_group: str = PROGRESS_GROUP,
    loglevel: int = logging.INFO,
) -> Application:
    """Positions -> per-driver progress points (needs the broker: creates the topics first, reads
    the progress topic for the restart filter)."""
    app = _application(settings, consumer_group, state_dir, loglevel)
    m = metrics.AppMeter(PROGRESS_APP, settings.metrics_enabled)
    raw = app.topic(catalog.CAR_POSITION.name, value_deserializer="bytes", key_deserializer="str")
    out = app.topic(PROGRESS.name, value_serializer="json", key_serializer="str")
    dead = app.topic(catalog.DEAD_LETTER.name, value_serializer="json", key_serializer="str")
    items = m.consumed(app.dataframe(raw), raw.name).apply(wire.parse)
    items = items.apply(m.timed(progress_callback(tracks)), stateful=True, metadata=True, expand=True)
    m.letters(_split(items, "DeadLetter")).to_topic(dead, key=lambda letter: letter["Key"])
    # a restart after a hard kill does not re-emit what is already on the topic (quix_apps/kit/emitted.py)
    progress = _split(items, "Progress").filter(
        restart_filter(settings.broker_address, out.name, point_id, auth=settings.kafka_auth())
    )
    progress = m.produced(progress, out.name).set_timestamp(date_timestamp)
    progress.to_topic(out, key=lambda p: catalog.message_key(PROGRESS, p["SessionKey"], p["DriverNumber"]))
    return app


def build_gap_app(
    settings: KafkaSettings,
    tracks: Tracks | Registry,
    *,
    stale_s: float | None = tg.STALE_S,
    state_dir: Path | None = None,
    consumer_group: str = GAP_GROUP,
    loglevel: int = logging.INFO,
) -> Application:
    """Progress points -> per-session gaps (needs the broker: creates the topics first, reads the
    gap topic for the restart filter)."""
    app = _application(settings, consumer_group, state_dir, loglevel)
    m = metrics.AppMeter(GAPS_APP, settings.metrics_enabled)
    points = app.topic(PROGRESS.name, value_deserializer="bytes", key_deserializer="str")
    out = app.topic(TRACK_GAP.name, value_serializer="json", key_serializer="str")
    dead = app.topic(catalog.DEAD_LETTER.name, value_serializer="json", key_serializer="str")
    sdf = (
        m.consumed(app.dataframe(points), points.name).apply(wire.parse).group_by(session_of, name="session")
    )
    items = sdf.apply(m.timed(gap_callback(tracks, stale_s)), stateful=True, expand=True)
    m.letters(_split(items, "DeadLetter")).to_topic(dead, key=lambda letter: letter["Key"])
    gaps = _split(items, "Gap").filter(
        restart_filter(settings.broker_address, out.name, point_id, auth=settings.kafka_auth())
    )
    m.produced(gaps, out.name).set_timestamp(date_timestamp).to_topic(out, key=driver_key)
    return app


def bundled_tracks(races_dir: Path, circuits_dir: Path = CIRCUITS_DIR) -> dict[int, tg.SessionTrack]:
    """SessionTrack of every bundled race whose circuit has a map (the demo's static lookup)."""
    tracks: dict[int, tg.SessionTrack] = {}
    for folder in sorted(p for p in races_dir.iterdir() if (p / "meta.json").exists()):
        race = sources.load_bundled(folder)
        track = tg.load_track_map(circuits_dir, race.meta.circuit)
        if track is None:
            log.warning("%s: no map for circuit %r", folder.name, race.meta.circuit)
            continue
        tracks[race.meta.session_key] = tg.session_track(race, track)
    return tracks


def build_maps(race_dirs: list[Path], out: Path) -> list[Path]:
    """Write one map per circuit (the first race given for a circuit wins)."""
    written: dict[str, Path] = {}
    for folder in race_dirs:
        race: RaceData = sources.load_bundled(folder)
        slug = tg.circuit_slug(race.meta.circuit or race.meta.slug)
        if slug not in written:
            written[slug] = tg.write_track_map(tg.build_track_map(race), out)
    return list(written.values())


def main(settings: FeatureAppSettings | None = None, idle_timeout: float = 0.0, which: str = "gaps") -> int:
    """The deployable ``which`` (``progress`` or ``gaps``): topics, the bundled circuit maps, the app,
    its metrics; runs until Ctrl-C / SIGTERM or ``idle_timeout`` seconds without input."""
    if which not in ("progress", "gaps"):
        raise ValueError(f"no track app {which!r}: progress or gaps")
    settings = settings or FeatureAppSettings()
    wire.ensure_topics(settings)
    static = bundled_tracks(ReplaySettings().data_dir / "races")  # STRATX_DATA_DIR, as the replay
    build = build_progress_app if which == "progress" else build_gap_app
    group = f"{settings.consumer_group_prefix}-track-{which}"
    with follow_tracks(settings) as follower:
        tracks = Registry(static, follower, letters=which == "progress")  # one dead letter, not two
        app = build(
            settings, tracks, state_dir=settings.state_dir, consumer_group=group, loglevel=logging.WARNING
        )
        return wire.run(app, which, settings, idle_timeout)


def follow_tracks(settings: KafkaSettings) -> Follower:
    """``stratx.race.track`` followed whole in the background: every replica needs every session's
    track, whichever partitions of its input it is given."""
    return Follower(settings.broker_address, catalog.RACE_TRACK.name, _track_key, auth=settings.kafka_auth())


def _track_key(record: dict[str, Any]) -> int | None:
    key = record.get("SessionKey")
    return key if isinstance(key, int) and not isinstance(key, bool) else None


def cli(argv: list[str] | None = None) -> int:
    """``maps`` rebuilds circuit maps; ``progress`` / ``gaps`` run an app (STRATX_* settings)."""
    parser = argparse.ArgumentParser(prog="python -m stratx.quix_apps.track_gaps")
    sub = parser.add_subparsers(dest="command", required=True)
    maps = sub.add_parser("maps", help="build data/circuits/<circuit>.json from bundled races")
    maps.add_argument("races", nargs="+", type=Path)
    maps.add_argument("--out", type=Path, default=CIRCUITS_DIR)
    sub.add_parser("progress", help="run the progress app")
    sub.add_parser("gaps", help="run the session gap app")
    args = parser.parse_args(argv)
    if args.command == "maps":
        for path in build_maps(args.races, args.out):
            print(path)
        return 0
    return main(which=args.command)


if __name__ == "__main__":
    sys.exit(cli())
