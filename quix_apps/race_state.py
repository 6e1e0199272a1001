"""Race-state app: raw session info, laps, race control, track status and car positions ->
``stratx.race.retirements``, ``stratx.race.neutralisations`` and ``stratx.race.track``.

:func:`stratx.functions.race_state.retire_step` says, event by event, which cars are out of the
race; each retirement goes out once, keyed by session (the prediction app reads the topic beside
its lap features, co-partitioned). :func:`stratx.functions.neutralisations.neutral_step` says
when a safety car or VSC is deployed, with every running car's tyres (the alerts app announces
the cheap stops from it). :func:`stratx.functions.track_state.track_step` says when a session's
clock, drivers, race start and map are known (from the bundled map or the session's own
positions), for the track-gap apps: one record per session. The inputs have different partition
counts, so the app
runs one dataframe per topic and keeps the detector's state per session in process memory
(small: a few numbers per car); Quix consumes the topics aligned by message timestamp (event time).

Failure policy: a record that is not JSON or fails its raw schema changes nothing here (the replay
and ingest stages dead-letter raw records); the app keeps going.

Restart: the state is rebuilt from the input offsets the group has not committed; a retirement
already on the topic is not sent again (:class:`~stratx.quix_apps.kit.emitted.Emitted`, key
SessionKey, DriverNumber). After a restart mid-race the parked-car and overdue rules need a lap of
each car to re-arm. A session whose track is not out yet gets its SessionInfo and lap-1 records
back from their topics at start (a built map then waits for the next clean lap).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from quixstreams import Application

from stratx.functions import catalog, ingest, neutralisations, race_state, track_state
from stratx.functions.catalog import TopicSpec
from stratx.functions.features.track_map import TrackMap, load_track_maps
from stratx.functions.settings import REPO_ROOT, FeatureAppSettings
from stratx.quix_apps.kit import metrics, wire
from stratx.quix_apps.kit.emitted import Emitted, read_topic

APP = "race"  # metrics app label and exporter port offset
CIRCUITS_DIR = REPO_ROOT / "data" / "circuits"  # the bundled maps (as the track-gap apps)
INPUTS: tuple[TopicSpec, ...] = (
    catalog.SESSION_INFO,
    catalog.LAPS,
    catalog.RACE_CONTROL,
    catalog.TRACK_STATUS,
    catalog.CAR_POSITION,
)


class Detector:
    """The detectors' state per session, fed by every input dataframe of the process; ``maps``:
    the bundled circuit maps by slug (``data/circuits``, for ``track_state``)."""

    def __init__(self, maps: Mapping[str, TrackMap] | None = None) -> None:
        self.sessions: dict[int, dict[str, Any]] = {}
        self.tracks: dict[int, dict[str, Any]] = {}
        self.maps = maps if maps is not None else load_track_maps(CIRCUITS_DIR)

    def step(
        self, spec: TopicSpec, value: dict[str, Any], key: Any, emit: bool = True
    ) -> list[dict[str, Any]]:
        """One raw record of ``spec``'s topic -> what it reveals (JSON mode), each under its topic
        name: ``{RETIREMENTS.name: record}``, ``{NEUTRALISATIONS.name: ...}`` or ``{RACE_TRACK.name: ...}``.
        ``emit`` False (seeding after a restart) only folds the record into the track state."""
        if wire.is_invalid(value):
            return []
        checked = ingest.validate(ingest.RawRecord(spec, str(key), value))
        if isinstance(checked, ingest.Rejected):
            return []
        record = checked.model_dump(mode="json")
        session = int(record["SessionKey"])
        found: list[tuple[TopicSpec, list[dict[str, Any]]]] = []
        if spec.name in track_state.KINDS:
            state, tracks = track_state.track_step(
                self.tracks.get(session), track_state.KINDS[spec.name], record, self.maps, emit
            )
            self.tracks[session] = state
            found.append((catalog.RACE_TRACK, tracks))
        if emit and spec.name in race_state.KINDS:
            kind = race_state.KINDS[spec.name]
            state, out = race_state.retire_step(self.sessions.get(session), kind, record)
            state, deployed = neutralisations.neutral_step(state, kind, record)
            self.sessions[session] = state
            found += [(catalog.RETIREMENTS, out), (catalog.NEUTRALISATIONS, deployed)]
        return [
            {target.name: target.schema.model_validate(r).model_dump(mode="json")}
            for target, records in found
            for r in records
        ]

    def seed(self, spec: TopicSpec, records: list[dict[str, Any]], done: set[int]) -> None:
        """Fold records read back from ``spec``'s topic into the track state of the sessions whose
        track is not out yet (``done``): a restart must not lose a SessionInfo or a race start."""
        for value in records:
            if value.get("SessionKey") not in done:
                self.step(spec, value, value.get("SessionKey"), emit=False)


def retirement_id(record: dict[str, Any]) -> tuple[object, ...]:
    return (record["SessionKey"], record["DriverNumber"])


def neutralisation_id(record: dict[str, Any]) -> tuple[object, ...]:
    return (record["SessionKey"], record["Kind"], record["SessionTime"])


def session_key(record: dict[str, Any]) -> str:
    return catalog.message_key(catalog.RETIREMENTS, record["SessionKey"])


def _has(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda tagged: name in tagged


def _take(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda tagged: tagged[name]


def track_id(record: dict[str, Any]) -> tuple[object, ...]:
    return (record["SessionKey"],)


OUTPUTS = (
    (catalog.RETIREMENTS, retirement_id),
    (catalog.NEUTRALISATIONS, neutralisation_id),
    (catalog.RACE_TRACK, track_id),
)


def build_app(
    settings: FeatureAppSettings, seen: dict[str, list[dict[str, Any]]] | None = None
) -> Application:
    """The app, wired: one dataframe per raw input, all feeding one :class:`Detector`; ``seen``:
    the records on each output topic and on the session-info and laps topics (the track state's
    seed), by topic name (read from the topics when None)."""
    app = wire.application(settings, f"{settings.consumer_group_prefix}-race-state", settings.state_dir)
    meter = metrics.AppMeter(APP, settings.metrics_enabled)

    def existing(name: str) -> list[dict[str, Any]]:
        if seen is not None:
            return seen.get(name, [])
        return read_topic(settings.broker_address, name, settings.kafka_auth())

    outputs = []
    tracked: set[Any] = set()  # sessions whose track is out
    for spec, ident in OUTPUTS:
        out = app.topic(spec.name, value_serializer="json")
        done = existing(out.name)
        tracked |= {r.get("SessionKey") for r in done} if spec is catalog.RACE_TRACK else set()
        outputs.append((out, Emitted(done, ident, topic=out.name, key_only=True)))
    detector = Detector()
    detector.seed(catalog.SESSION_INFO, existing(catalog.SESSION_INFO.name), tracked)
    first_laps = [lap for lap in existing(catalog.LAPS.name) if lap.get("LapNumber") == 1]
    detector.seed(catalog.LAPS, first_laps, tracked)
    for spec in INPUTS:
        topic = app.topic(spec.name, value_deserializer="bytes")

        def step(value: Any, key: Any, timestamp: int, headers: Any, spec: TopicSpec = spec) -> Any:
            return detector.step(spec, wire.parse(value), key)

        sdf = meter.consumed(app.dataframe(topic), topic.name)
        found = sdf.apply(meter.timed(step), metadata=True, expand=True)
        for out, emitted in outputs:
            records = found.filter(_has(out.name)).apply(_take(out.name)).filter(emitted)
            meter.produced(records, out.name).to_topic(out, key=session_key)
    return app


def main(settings: FeatureAppSettings | None = None, idle_timeout: float = 0.0) -> int:
    """The deployable: topics, the app, its metrics; runs until Ctrl-C / SIGTERM or ``idle_timeout``
    seconds without input. Settings from the STRATX_* environment unless given."""
    settings = settings or FeatureAppSettings()
    wire.ensure_topics(settings)
    return wire.run(build_app(settings), APP, settings, idle_timeout)


if __name__ == "__main__":
    sys.exit(main())
