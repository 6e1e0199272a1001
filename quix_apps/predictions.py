"""Prediction app: lap features -> the five model services (HTTP) -> ``stratx.predictions.<model>``.

The input is ``stratx.features.lap_by_session``: the lap-features app's records keyed by session, so
one state sees every driver of the session in line-crossing order, the order the lap app emitted
them (the overtake pair needs the car ahead's record of the same lap; the anomaly field reference,
the cars that completed the lap before). Reading the per-driver topic and re-keying it here would
interleave its six partitions differently on every run, and those requests with them.
Per record, :func:`stratx.functions.prediction_requests.request_step` says what to ask each model;
:class:`~stratx.quix_apps.kit.model_client.ModelClient` asks them concurrently, with retries; each
answer becomes one Prediction record on its model's topic, keyed ``<SessionKey>:<DriverNumber>``,
carrying the model version, the feature record's event time, the time it was read
(``IngestedAt``) and produced (``ProducedAt``). A model that does not answer gives a record with
``Status`` ``unavailable`` and the reason: the record is never lost, and the stream goes on. So
does a model whose inputs this feed lacks (``prediction_requests.screen``, the rule in
``functions/models/inputs.py``): it is not asked, and its record names the missing input.
A bad record (not LapFeatures) goes to the dead letters. Duplicates (same driver-lap again) are
dropped by the state, so nothing is predicted twice downstream. The app also reads
``stratx.race.retirements`` (same key and partitions as its input: ``concat``, one state per
session): a car's retirement enters the state and no record of that car is predicted after it.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from quixstreams import Application
from quixstreams.state import State

from stratx.functions import catalog, dead_letters, schemas
from stratx.functions.models import inputs, registry
from stratx.functions.prediction_requests import new_cache, predictions, request_step, retire, screen
from stratx.functions.settings import PredictionAppSettings
from stratx.quix_apps.kit import metrics, wire
from stratx.quix_apps.kit.emitted import Emitted, read_topic
from stratx.quix_apps.kit.follower import Follower
from stratx.quix_apps.kit.model_client import ModelClient
from stratx.quix_apps.kit.wire import INVALID, RAW, parse

log = logging.getLogger(__name__)
STAGE = "predictions"
APP = "predict"  # metrics app label and exporter port offset
RETIREMENT = "_retirement"  # marks a record of stratx.race.retirements in the concatenated input
Context = Callable[[int], Mapping[str, Any]]


def make_step(client: ModelClient, context: Context, now: Callable[[], datetime] | None = None) -> Any:
    """The stateful callback: one feature record -> {model key: [Prediction records]} or a dead letter."""
    clock = now or (lambda: datetime.now(UTC))
    caches: dict[int, dict[str, Any]] = {}  # per session, in process memory (see prediction_requests)
    # the overtake pair builder (pandas and the recipe) is imported lazily by prediction_requests so
    # the alerts app stays light; import it here, not on the session's first pair (~1 s late)
    importlib.import_module("stratx.functions.models.overtake")
    inputs.needs()  # the same for the recipes the input rule reads

    def step(value: dict[str, Any], state: State) -> dict[str, Any]:
        ingested = clock()
        if RETIREMENT in value:
            state.set("session", retire(state.get("session"), value[RETIREMENT]))
            return {"retired": value[RETIREMENT]["DriverNumber"]}
        if INVALID in value:
            return _rejected({"raw": value.get(RAW)}, value[INVALID])
        try:
            row = schemas.LapFeatures.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            return _rejected(value, exc)
        cache = caches.setdefault(row["SessionKey"], new_cache())
        session, requests = request_step(state.get("session"), row, context(row["SessionKey"]), cache)
        state.set("session", session)
        if not requests:
            return {"duplicate": True}
        send, withheld = screen(requests)
        outcomes = client.predict_all(send) if send else {}
        produced = clock()
        out: dict[str, list[dict[str, Any]]] = {}
        for key, outcome in outcomes.items():
            sent = send[key]
            # pairs (overtake): one record per pair, about the car behind; the others: the last row is this record's
            pairs = registry.spec(key).request == "pairs"
            subjects = list(enumerate(sent)) if pairs else [(len(sent) - 1, row)]
            out[key] = [
                predictions(
                    subject,
                    key,
                    outcome.version,
                    outcome.predictions[i] if outcome.predictions else None,
                    outcome.reason,
                    ingested,
                    produced,
                    other=subject.get("AheadDriverNumber") if pairs else None,
                    names=context(row["SessionKey"]).get("Drivers"),
                )
                for i, subject in subjects
            ]
        for key, lacking in withheld.items():  # not asked: the inputs are missing, the reason says which
            pairs = registry.spec(key).request == "pairs"
            out.setdefault(key, []).extend(
                predictions(
                    subject if pairs else row,
                    key,
                    None,
                    None,
                    reason,
                    ingested,
                    produced,
                    other=subject.get("AheadDriverNumber") if pairs else None,
                )
                for subject, reason in lacking
            )
        return {"predictions": out}

    return step


def _rejected(value: dict[str, Any], reason: str | ValidationError) -> dict[str, Any]:
    letter = dead_letters.build(catalog.FEATURES_LAP_BY_SESSION, value, reason, stage=STAGE)
    return {"dead_letter": letter.model_dump(mode="json")}


def driver_key(record: dict[str, Any]) -> str:
    return f"{record['SessionKey']}:{record['DriverNumber']}"


def driver_names(info: Mapping[str, Any]) -> dict[str, str]:
    """Car number -> three-letter code from a SessionInfo record's driver table."""
    return {
        str(d["DriverNumber"]): str(d["Abbreviation"])
        for d in info.get("Drivers") or []
        if isinstance(d, dict) and d.get("DriverNumber") is not None and d.get("Abbreviation")
    }


def session_info(settings: PredictionAppSettings) -> Follower:
    """The session-info topic, followed in the background (:mod:`~stratx.quix_apps.kit.follower`:
    a lookup is a dict read; reading the topic on a session's first record cost that record ~0.4 s)."""
    return Follower(
        settings.broker_address,
        catalog.SESSION_INFO.name,
        lambda info: info.get("SessionKey"),
        auth=settings.kafka_auth(),
    )


def session_context(follower: Follower) -> Context:
    """SessionInfo fields per session (EventName, TotalLaps, driver codes); empty when the session
    has not announced itself (yet: its record is used as soon as it arrives)."""

    def lookup(session_key: int) -> Mapping[str, Any]:
        info = follower.get(session_key)
        if info is None:
            return {}
        return {
            "EventName": info.get("EventName"),
            "TotalLaps": info.get("TotalLaps"),
            "Drivers": driver_names(info),
        }

    return lookup


def build_app(settings: PredictionAppSettings, client: ModelClient, context: Context) -> Application:
    """The app, wired: feature records in, one Prediction per model out, dead letters aside;
    ``context``: the SessionInfo fields of a session (:func:`session_context`)."""
    app = wire.application(settings, f"{settings.consumer_group_prefix}-predictions", settings.state_dir)
    m = metrics.AppMeter(APP, settings.metrics_enabled)
    features = app.topic(catalog.FEATURES_LAP_BY_SESSION.name, value_deserializer="bytes")
    retirements = app.topic(catalog.RETIREMENTS.name, value_deserializer="bytes")
    dead = app.topic(catalog.DEAD_LETTER.name, value_serializer="json")
    sdf = m.consumed(app.dataframe(features), features.name).apply(parse)  # keyed by session already
    out_of_race = m.consumed(app.dataframe(retirements), retirements.name).apply(parse)
    sdf = sdf.concat(out_of_race.filter(lambda v: INVALID not in v).apply(lambda v: {RETIREMENT: v}))
    results = sdf.apply(m.timed(make_step(client, context)), stateful=True)
    for key, spec in catalog.PREDICTION_TOPICS.items():
        topic = app.topic(spec.name, value_serializer="json")
        has, take = _branch(key)
        out = results.filter(has).apply(take, expand=True).filter(already_predicted(settings, spec.name))
        m.produced(out, topic.name).to_topic(topic, key=driver_key)
    m.letters(results.filter(lambda r: "dead_letter" in r).apply(lambda r: r["dead_letter"])).to_topic(dead)
    return app


def prediction_id(record: dict[str, Any]) -> tuple[object, ...]:
    """The idempotency key of a prediction: one per driver-lap and model (and car ahead, overtake)."""
    return (
        record["SessionKey"],
        record["DriverNumber"],
        record.get("LapNumber"),
        record["Model"],
        record.get("OtherDriverNumber"),
    )


def already_predicted(settings: PredictionAppSettings, topic: str) -> Emitted:
    """After a hard kill the laps since the last checkpoint are predicted again, but with the
    in-memory history lost, so the values can differ: an ``ok`` prediction already on the topic
    wins (key only); an ``unavailable`` one may be followed by a fresh answer."""
    done = [
        r
        for r in read_topic(settings.broker_address, topic, settings.kafka_auth())
        if r.get("Status") == "ok"
    ]
    return Emitted(done, prediction_id, topic=topic, key_only=True)


def _branch(key: str) -> tuple[Callable[[dict[str, Any]], bool], Callable[[dict[str, Any]], Any]]:
    def has(r: dict[str, Any]) -> bool:
        return key in r.get("predictions", {})

    def take(r: dict[str, Any]) -> Any:
        return r["predictions"][key]

    return has, take


def main(settings: PredictionAppSettings | None = None, idle_timeout: float = 0.0) -> int:
    """The deployable: topics, the model services' client, the app, its metrics; runs until Ctrl-C / SIGTERM or ``idle_timeout``
    seconds without input. Settings from the STRATX_* environment unless given."""
    settings = settings or PredictionAppSettings()
    wire.ensure_topics(settings)
    with ModelClient(settings.urls(), policy(settings)) as client, session_info(settings) as follower:
        return wire.run(build_app(settings, client, session_context(follower)), APP, settings, idle_timeout)


def policy(settings: PredictionAppSettings) -> Any:
    from stratx.quix_apps.kit.model_client import RetryPolicy

    return RetryPolicy(
        timeout_s=settings.model_timeout_s, retries=settings.model_retries, backoff_s=settings.model_backoff_s
    )


if __name__ == "__main__":
    sys.exit(main())
