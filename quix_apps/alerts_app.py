"""Alerts app: the five prediction topics and the safety-car / VSC deployments -> debounced strategy
alerts on ``stratx.alerts`` (none about a retired car's later laps, none after the chequered flag,
read from ``stratx.raw.race_control``).

The prediction topics are co-partitioned (6 partitions, key ``<SessionKey>:<DriverNumber>``, the
default murmur2 partitioner), so the app ``concat``s them and keeps one alert state per driver;
:func:`stratx.functions.alerts.alert_step` holds the rules (hysteresis, re-arming, one
pit-window alert per window, scope gating). Records that are not Predictions go to the dead letters.

The burst limit (at most 3 alerts of one type on one lap of a session,
:func:`stratx.functions.alerts.burst_allow`) spans drivers, so its counts live in process memory
across the app's partitions, like the prediction app's row cache: one alerts process sees every
partition (compose and k8s run one replica). After a restart the counts start empty, which can
let at most 3 more alerts through on the laps being replayed. The open pit windows are shared the
same way between the per-driver rule and the deployments (``stratx.race.neutralisations``,
:func:`stratx.functions.alerts.neutralisation_alerts`), so a car gets one window either way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import reduce
from typing import Any

from pydantic import ValidationError
from quixstreams import Application
from quixstreams.state import State

from stratx.functions import catalog, dead_letters, race_state, schemas
from stratx.functions.alerts import (
    Windows,
    alert_step,
    before_finish,
    burst_allow,
    chequered,
    neutralisation_alerts,
    share_window,
)
from stratx.functions.settings import PredictionAppSettings
from stratx.quix_apps.kit import metrics, wire
from stratx.quix_apps.kit.wire import INVALID, RAW, parse

STAGE = "alerts"
APP = "alerts"  # metrics app label and exporter port offset


def make_step(
    now: Callable[[], datetime] | None = None, windows: Windows | None = None
) -> Callable[[dict[str, Any], State], list[dict[str, Any]]]:
    """The per-driver step; ``windows``: the open pit windows, shared with the deployments' alerts."""
    clock = now or (lambda: datetime.now(UTC))
    counts: dict[str, int] = {}  # the burst limit's counts, per session:lap:type (process memory)
    shared = windows if windows is not None else {}

    def step(value: dict[str, Any], state: State) -> list[dict[str, Any]]:
        if INVALID in value:
            return [_rejected({"raw": value.get(RAW)}, value[INVALID])]
        try:
            prediction = schemas.Prediction.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            return [_rejected(value, exc)]
        session = prediction["SessionKey"]
        car = (int(session), str(prediction["DriverNumber"]))
        st, alerts = alert_step(
            share_window(state.get("alerts"), shared.get(car)),
            prediction,
            clock(),
            lambda kind, lap: burst_allow(counts, session, kind, lap),
        )
        if st.get("window") is not None:
            shared[car] = st["window"]
        else:
            shared.pop(car, None)
        state.set("alerts", st)
        return [{"alert": schemas.Alert.model_validate(a).model_dump(mode="json")} for a in alerts]

    return step


def make_deploy_step(
    now: Callable[[], datetime] | None, windows: Windows
) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    """A Neutralisation record -> the pit-window alerts it opens (or a dead letter)."""
    clock = now or (lambda: datetime.now(UTC))

    def step(value: dict[str, Any]) -> list[dict[str, Any]]:
        source = catalog.NEUTRALISATIONS.name
        if INVALID in value:
            return [_rejected({"raw": value.get(RAW)}, value[INVALID], source)]
        try:
            record = schemas.Neutralisation.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            return [_rejected(value, exc, source)]
        alerts = neutralisation_alerts(record, windows, clock())
        return [{"alert": schemas.Alert.model_validate(a).model_dump(mode="json")} for a in alerts]

    return step


def _rejected(
    value: dict[str, Any], reason: str | ValidationError, source: str | None = None
) -> dict[str, Any]:
    """A dead letter; ``source`` defaults to the prediction topic the record's Model names."""
    source = source or f"stratx.predictions.{value.get('Model', '?')}"
    return {"dead_letter": dead_letters.build(source, value, reason, stage=STAGE).model_dump(mode="json")}


def driver_key(alert: dict[str, Any]) -> str:
    return f"{alert['SessionKey']}:{alert['DriverNumber']}"


def build_app(settings: PredictionAppSettings, now: Callable[[], datetime] | None = None) -> Application:
    app = wire.application(settings, f"{settings.consumer_group_prefix}-alerts", settings.state_dir)
    m = metrics.AppMeter(APP, settings.metrics_enabled)
    inputs = [
        m.consumed(app.dataframe(app.topic(spec.name, value_deserializer="bytes")), spec.name)
        for spec in catalog.PREDICTION_TOPICS.values()
    ]
    alerts = app.topic(catalog.ALERTS.name, value_serializer="json")
    dead = app.topic(catalog.DEAD_LETTER.name, value_serializer="json")
    merged = reduce(lambda a, b: a.concat(b), inputs).apply(parse)
    windows: Windows = {}  # open pit windows by car, in process memory like the burst counts
    items = merged.apply(m.timed(make_step(now, windows)), stateful=True, expand=True)
    # retired cars, in process memory (a few per race): never an alert about one of them
    retired: dict[tuple[int, str], int] = {}
    out_of_race = app.dataframe(app.topic(catalog.RETIREMENTS.name, value_deserializer="bytes")).apply(parse)
    out_of_race.filter(lambda v: INVALID not in v).update(
        lambda v: retired.__setitem__((int(v["SessionKey"]), str(v["DriverNumber"])), int(v["LapNumber"]))
    )
    # safety car / VSC deployments (race state): a cheap stop now for the eligible cars
    deployed = m.consumed(
        app.dataframe(app.topic(catalog.NEUTRALISATIONS.name, value_deserializer="bytes")),
        catalog.NEUTRALISATIONS.name,
    ).apply(parse)
    on_deploy = deployed.apply(m.timed(make_deploy_step(now, windows)), expand=True)
    # the chequered flag, per session, from race control (process memory): no alert after it
    finished: dict[int, float] = {}
    flags = app.dataframe(app.topic(catalog.RACE_CONTROL.name, value_deserializer="bytes")).apply(parse)
    flags.filter(lambda v: INVALID not in v).update(lambda v: chequered(v, finished))
    for found in (items, on_deploy):
        raised = found.filter(lambda r: "alert" in r).apply(lambda r: r["alert"])
        raised = raised.filter(lambda a: race_state.still_racing(a, retired) and before_finish(a, finished))
        m.produced(raised, alerts.name).to_topic(alerts, key=driver_key)
        m.letters(found.filter(lambda r: "dead_letter" in r).apply(lambda r: r["dead_letter"])).to_topic(dead)
    return app


def main(settings: PredictionAppSettings | None = None, idle_timeout: float = 0.0) -> int:
    """The deployable: topics, the app, its metrics; runs until Ctrl-C / SIGTERM or ``idle_timeout``
    seconds without input. Settings from the STRATX_* environment unless given."""
    settings = settings or PredictionAppSettings()
    wire.ensure_topics(settings)
    return wire.run(build_app(settings), APP, settings, idle_timeout)


if __name__ == "__main__":
    sys.exit(main())
