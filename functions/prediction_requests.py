"""What the prediction app asks each model for one lap-feature record, and how answers become
Prediction records. Pure: dicts in, dicts out.

One session's lap-feature records arrive in line-crossing order (the lap-features app emits them
so). :func:`request_step` folds a record into the session state and returns, per model key, the
rows to send; each model's registry entry (``functions/models/registry.py``) names its kind:

* ``lap`` (lap_time, tyre_deg): the LapFeatures row itself.
* ``race`` (pit_window): the row plus ``EventName`` and ``RaceLaps`` (the scheduled distance,
  from SessionInfo ``TotalLaps``) when known, after the same for the car that crossed the line
  just before it on this lap when its record is in (line-crossing order: it is, but for the
  first car): the undercut score compares the two, as the offline evaluation does with the
  whole lap. Without it the stream's ``UndercutScore`` was always null.
* ``pairs`` (overtake): the pair rows (car behind, the car that crossed the line just before it
  on the same lap), built by the overtake recipe's ``pair_rows``, for every pair this record
  completes (:func:`overtake_pairs`: records of different drivers can arrive in any order); each
  pair once. No pair completed: no request.
* ``history`` (anomaly): the rows the anomaly recipe's causal references need, the scored row
  last: the cars that completed this lap earlier (field reference), the driver's previous
  ``ANOMALY_HISTORY`` laps (own reference), then this row.

:func:`screen` then holds back what a model cannot answer (its inputs missing in this feed, e.g.
no tyre life before a live session's stint data: ``functions/models/inputs.py``): the app emits
those as ``unavailable`` with the reason, never a number made from defaults.

A record whose (driver, lap) was already folded is a duplicate (at-least-once delivery): no
requests, so nothing is predicted twice downstream. A record of a car the state knows is out of
the race (:func:`retire`, from ``stratx.race.retirements``) gets no requests either when it is about
a lap after the car's last completed one (e.g. its unfinished last lap, closed by timing after it
stopped); its earlier laps are still predicted when they arrive after the retirement (an app that
lags, or a replay at full speed, reads the retirement before them: they are valid laps).

Two kinds of state: ``state`` (which laps of which driver were already asked for: small, kept in
the app's changelogged Quix state, so a restart never predicts a lap twice) and ``cache`` (the
recent rows the overtake pair and the anomaly references are built from: ~200 full rows, kept in
process memory because serializing them into the state store on every record cost ~250 ms per
record; after a restart the cache warms up again within a lap, meanwhile those requests carry
less context).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stratx.functions.models import inputs
from stratx.functions.models.registry import BY_KEY, MODEL_KEYS, MODELS

LAP_MODELS = MODEL_KEYS  # every model is asked about lap-feature records
# Laps of rows kept per session. The pair builder needs one lap, but records of different drivers
# come through different partitions and, when the app catches up on a backlog, can arrive many laps
# apart; a race has at most ~80 laps, so this keeps the session (~1,600 rows) and never loses a pair.
KEEP_LAPS = 80
ANOMALY_HISTORY = 8  # previous laps per driver sent with an anomaly request (rolling references)


def new_state() -> dict[str, Any]:
    return {"last_lap": {}}


def retire(state: dict[str, Any] | None, retirement: Mapping[str, Any]) -> dict[str, Any]:
    """Fold a Retirement record into the session state: no requests for that car's later laps."""
    st = state if state is not None else new_state()
    st.setdefault("retired", {})[str(retirement["DriverNumber"])] = int(retirement["LapNumber"])
    return st


def new_cache() -> dict[str, Any]:
    return {"rows": {}, "history": {}, "paired": {}}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pair_row(ahead: Mapping[str, Any], behind: Mapping[str, Any]) -> dict[str, Any]:
    """The overtake pair row for ``behind`` chasing ``ahead`` on the same lap (the recipe's
    ``pair_rows`` on two rows; imported lazily so this module stays light for the alerts app)."""
    import pandas as pd

    from stratx.functions.models import overtake

    event = behind.get("EventName") or ahead.get("EventName")
    rows = [
        {k: v for k, v in r.items() if k != "EventName"} for r in (ahead, behind)
    ]  # may differ in presence
    pairs = overtake.pair_rows(pd.DataFrame(rows))
    if pairs.empty:
        return {}
    pair = {str(k): _clean(v) for k, v in pairs.iloc[0].to_dict().items()}
    return {**pair, "EventName": event} if event else pair


def overtake_pairs(cache: dict[str, Any], lap: int, this: dict[str, Any]) -> list[dict[str, Any]]:
    """The pair rows this record completes: (this, the car ahead) if the car ahead's record is in,
    and (the car behind, this) if the car behind's record came first (records of different
    drivers may arrive in any order across partitions). Each pair is asked for once."""
    rows = cache["rows"][str(lap)]
    paired = cache.setdefault("paired", {}).setdefault(str(lap), [])
    position = int(this.get("PositionOnLap") or 0)
    by_position = {int(r.get("PositionOnLap") or 0): r for r in rows.values()}
    out = []
    for behind, ahead in ((this, by_position.get(position - 1)), (by_position.get(position + 1), this)):
        if behind is None or ahead is None or str(behind["DriverNumber"]) in paired:
            continue
        pair = pair_row(ahead, behind)
        if pair:
            paired.append(str(behind["DriverNumber"]))
            out.append(pair)
    return out


def _car_ahead(lap_rows: Mapping[str, dict[str, Any]], this: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The row of the car that crossed the line just before ``this`` on the same lap, if it is in."""
    position = int(this.get("PositionOnLap") or 0)
    return [
        r for r in lap_rows.values() if position > 1 and int(r.get("PositionOnLap") or 0) == position - 1
    ][:1]


def _race_row(row: Mapping[str, Any], ctx: Mapping[str, Any]) -> dict[str, Any]:
    race = dict(row)
    if ctx.get("TotalLaps"):
        race["RaceLaps"] = int(ctx["TotalLaps"])
    return race


def request_step(
    state: dict[str, Any] | None,
    row: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    cache: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Fold one LapFeatures record (JSON mode) into the session state; the requests per model.

    ``context``: SessionInfo fields of the session (``EventName``, ``TotalLaps``), if known;
    ``cache``: the session's row cache (:func:`new_cache`; updated in place; None: a fresh one)."""
    st = state if state is not None else new_state()
    cache = cache if cache is not None else new_cache()
    driver, lap = str(row["DriverNumber"]), int(row["LapNumber"])
    last_completed = st.get("retired", {}).get(driver)
    if st["last_lap"].get(driver, 0) >= lap or (last_completed is not None and lap > last_completed):
        return st, {}
    st["last_lap"][driver] = lap
    ctx = dict(context or {})
    this = dict(row)
    if ctx.get("EventName"):
        this["EventName"] = ctx["EventName"]
    lap_rows = cache["rows"].setdefault(str(lap), {})
    lap_rows[driver] = this
    for old in [n for n in cache["rows"] if int(n) <= lap - KEEP_LAPS]:
        del cache["rows"][old]
        cache.get("paired", {}).pop(old, None)

    kinds = {m.request for m in MODELS}
    rows: dict[str, list[dict[str, Any]]] = {"lap": [dict(row)]}
    if "race" in kinds:  # the car ahead first (its undercut reference), this record's row last
        rows["race"] = [_race_row(r, ctx) for r in (*_car_ahead(lap_rows, this), this)]
    if "pairs" in kinds:
        rows["pairs"] = overtake_pairs(cache, lap, this)
    history = cache["history"].setdefault(driver, [])
    earlier = [r for d, r in lap_rows.items() if d != driver]  # the field reference of this lap
    rows["history"] = [*earlier, *history, this]
    history.append(this)
    del history[:-ANOMALY_HISTORY]
    # each model its own copies (the client may adapt them); no rows (no pair completed): no request
    requests = {m.key: [dict(r) for r in rows[m.request]] for m in MODELS if rows[m.request]}
    return st, requests


Withheld = dict[str, list[tuple[dict[str, Any], str]]]


def screen(requests: Mapping[str, list[dict[str, Any]]]) -> tuple[dict[str, list[dict[str, Any]]], Withheld]:
    """Split one record's requests (:func:`request_step`) into the rows to send and, per model, the
    subjects whose inputs are missing (:func:`stratx.functions.models.inputs.missing`) with the
    reason. The subject is the row a model scores: the last row of a request, each row of a
    ``pairs`` request. A request whose subject lacks an input is not sent (its other rows are only
    context); a pair that lacks one leaves the other pairs of the request."""
    send: dict[str, list[dict[str, Any]]] = {}
    withheld: Withheld = {}
    for key, rows in requests.items():
        subjects = range(len(rows)) if BY_KEY[key].request == "pairs" else [len(rows) - 1]
        lacking = {i: reason for i in subjects if (reason := inputs.missing(key, rows[i])) is not None}
        if lacking:
            withheld[key] = [(rows[i], reason) for i, reason in lacking.items()]
        kept = [r for i, r in enumerate(rows) if i not in lacking]
        if kept and len(lacking) < len(subjects):
            send[key] = kept
    return send, withheld


def predictions(
    row: Mapping[str, Any],
    key: str,
    version: str | None,
    values: Mapping[str, Any] | None,
    reason: str | None,
    ingested: datetime,
    produced: datetime,
    other: str | None = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Prediction record (JSON mode) for ``row`` from model ``key``: ``ok`` with the values, or
    ``unavailable`` with the reason when ``values`` is None. ``names``: the session's driver table
    (car number -> three-letter code, SessionInfo ``Drivers``), for the other car of a pair."""
    return {
        "SessionKey": row["SessionKey"],
        "DriverNumber": str(row["DriverNumber"]),
        "LapNumber": row.get("LapNumber"),
        "Model": key,
        "ModelVersion": version,
        "Status": "ok" if values is not None else "unavailable",
        "Reason": None if values is not None else reason,
        "Values": {k: _clean(v) for k, v in (values or {}).items()} | _who(row, values, other, names),
        "OtherDriverNumber": other,
        "EventSessionTime": row["SessionTime"],
        "EventDate": row.get("Date"),
        "IngestedAt": ingested.isoformat(),
        "ProducedAt": produced.isoformat(),
    }


# the lap's own context the alert rules read (functions/alerts.py): who, the lap's causal scope, and
# whether the lap and its stint can show a tyre cliff (a clean lap; the stint's clean laps so far)
CONTEXT_FIELDS = ("Driver", "Stint", "GreenClean", "Neutralised", "IsClean", "StintCleanLaps")


def _who(
    row: Mapping[str, Any],
    values: Mapping[str, Any] | None,
    other: str | None = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    if values is None:
        return {}
    out = {k: row[k] for k in CONTEXT_FIELDS if row.get(k) is not None}
    if other is not None and (names or {}).get(str(other)):
        out["OtherDriver"] = (names or {})[str(other)]
    return out
