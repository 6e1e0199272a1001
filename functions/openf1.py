"""OpenF1 records -> StratX raw events (the same payloads as the FastF1 replay), pure.

No I/O: the HTTP client lives in ``quix_apps/kit/openf1_client.py``. This module holds

* :data:`ENDPOINTS`: the OpenF1 endpoints StratX polls, whether they are polled per driver, the
  field the incremental cursor follows, and the topic they feed;
* ``normalise_*``: one OpenF1 record -> :class:`~stratx.functions.ingest.RawRecord` (or a
  :class:`~stratx.functions.ingest.Rejected` reason for the dead letters);
* :func:`event_id`, :func:`query_params`, :func:`dedup` and :class:`PollState`: incremental
  polling, where OpenF1 repeats records across polls and records can arrive late.

Clock. OpenF1 has no FastF1 ``t0``. ``SessionTime`` here is seconds since the session's
``date_start`` from ``/sessions`` (``SessionInfo.T0Source = "openf1-session-start"``), so its
origin differs from a FastF1 replay of the same session (FastF1's t0 lies before the scheduled
start; ``data/telemetry/t0_estimates.csv`` gives the offset for past races). ``Date`` is exact UTC.

Seq. A poller cannot know a session-wide event-time order, so ``Seq`` is a per-session counter the
caller supplies (the order of publication); :func:`event_id` is the stable record identity used
for de-duplication.

What OpenF1 cannot give (fields left ``None``): Lap ``Position``, ``TrackStatus``,
``IsPersonalBest``, ``Deleted``, ``IsAccurate``, ``SpeedFL``; SessionInfo ``TotalLaps``;
RaceControl ``Status``. ``PitInTime`` assumes ``/pit`` ``date`` is the pit-lane entry (the docs
call it the start of the stop); ``PitOutTime`` = entry + ``lane_duration`` (falling back to
``pit_duration``), set only when that duration is known.

The code lives in three sibling modules, re-exported here (the public import path):
:mod:`~stratx.functions.openf1_records` (endpoints, field checks), :mod:`~stratx.functions.openf1_polling`
(identity, cursors, de-duplication) and :mod:`~stratx.functions.openf1_normalise` (normalisation).
"""

from stratx.functions.openf1_normalise import (
    NORMALISERS,
    driver_info,
    normalise_car_data,
    normalise_interval,
    normalise_lap,
    normalise_laps,
    normalise_location,
    normalise_position,
    normalise_race_control,
    normalise_weather,
    pit_times,
    session_context,
    session_info,
    stint_for_lap,
)
from stratx.functions.openf1_polling import (
    Accepted,
    PollState,
    dedup,
    event_id,
    query_params,
    record_date,
    split_pending_laps,
)
from stratx.functions.openf1_records import (
    ENDPOINTS,
    T0_SOURCE,
    Endpoint,
    Record,
    SessionContext,
    malformed,
    parse_date,
)

__all__ = [
    "ENDPOINTS",
    "NORMALISERS",
    "T0_SOURCE",
    "Accepted",
    "Endpoint",
    "PollState",
    "Record",
    "SessionContext",
    "dedup",
    "driver_info",
    "event_id",
    "malformed",
    "normalise_car_data",
    "normalise_interval",
    "normalise_lap",
    "normalise_laps",
    "normalise_location",
    "normalise_position",
    "normalise_race_control",
    "normalise_weather",
    "parse_date",
    "pit_times",
    "query_params",
    "record_date",
    "session_context",
    "session_info",
    "split_pending_laps",
    "stint_for_lap",
]
