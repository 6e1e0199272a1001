"""Race-state app: raw laps, race control, track status and car positions -> ``stratx.race.retirements``
and ``stratx.race.neutralisations``.

:func:`stratx.functions.race_state.retire_step` says, event by event, which cars are out of the
race; each retirement goes out once, keyed by session (the prediction app reads the topic beside
its lap features, co-partitioned). :func:`stratx.functions.neutralisations.neutral_step` says
when a safety car or VSC is deployed, with every running car's tyres (the alerts app announces
the cheap stops from it). The four inputs have different partition counts, so the app
runs one dataframe per topic and keeps the detector's state per session in process memory
(small: a few numbers per car); Quix consumes the topics aligned by message timestamp (event time).

Failure policy: a record that is not JSON or fails its raw schema changes nothing here (the replay
and ingest stages dead-letter raw records); the app keeps going.

Restart: the state is rebuilt from the input offsets the group has not committed; a retirement
already on the topic is not sent again (:class:`~stratx.quix_apps.kit.emitted.Emitted`, key
SessionKey, DriverNumber). After a restart mid-race the parked-car and overdue rules need a lap of
each car to re-arm.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from quixstreams import Application

from stratx.functions import catalog, ingest, neutralisations, race_state
from stratx.functions.catalog import TopicSpec
from stratx.functions.settings import FeatureAppSettings
from stratx.quix_apps.kit import metrics, wire
from stratx.quix_apps.kit.emitted import Emitted, read_topic

APP = "race"  # metrics app label and exporter port offset
INPUTS: tuple[TopicSpec, ...] = (
    catalog.LAPS,
    catalog.RACE_CONTROL,
    catalog.TRACK_STATUS,
    catalog.CAR_POSITION,
)


class Detector:
    """The detector's state per session, fed by every input dataframe of the process."""

    def __init__(self) -> None:
        self.sessions: dict[int, dict[str, Any]] = {}

    def step(self, spec: TopicSpec, value: dict[str, Any], key: Any) -> list[dict[str, Any]]:
        """One raw record of ``spec``'s topic -> what it reveals (JSON mode), each under its topic
        name: ``{RETIREMENTS.name: record}`` or ``{NEUTRALISATIONS.name: record}``."""
        if wire.is_invalid(value):
            return []
        checked = ingest.validate(ingest.RawRecord(spec, str(key), value))
        if isinstance(checked, ingest.Rejected):
            return []
        record = checked.model_dump(mode="json")
        session = int(record["SessionKey"])
        kind = race_state.KINDS[spec.name]
        state, out = race_state.retire_step(self.sessions.get(session), kind, record)
        state, deployed = neutralisations.neutral_step(state, kind, record)
        self.sessions[session] = state
        return [
            {target.name: target.schema.model_validate(r).model_dump(mode="json")}
            for target, records in ((catalog.RETIREMENTS, out), (catalog.NEUTRALISATIONS, deployed))
            for r in records
        ]


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


OUTPUTS = ((catalog.RETIREMENTS, retirement_id), (catalog.NEUTRALISATIONS, neutralisation_id))


def build_app(
    settings: FeatureAppSettings, seen: dict[str, list[dict[str, Any]]] | None = None
) -> Application:
    """The app, wired: one dataframe per raw input, all feeding one :class:`Detector`;
    ``seen``: records already on each output topic, by topic name (read from the topics when None)."""
    app = wire.application(settings, f"{settings.consumer_group_prefix}-race-state", settings.state_dir)
    meter = metrics.AppMeter(APP, settings.metrics_enabled)
    outputs = []
    for spec, ident in OUTPUTS:
        out = app.topic(spec.name, value_serializer="json")
        if seen is not None:
            done = seen.get(spec.name, [])
        else:
            done = read_topic(settings.broker_address, out.name, settings.kafka_auth())
        outputs.append((out, Emitted(done, ident, topic=out.name, key_only=True)))
    detector = Detector()
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
