"""Lap aggression: per-lap driver-aggression features from the 5 s telemetry windows.

One pure state machine, :func:`aggression_step`, runs per ``<SessionKey>:<DriverNumber>`` key on
the stream (Quix state, both input topics concatenated) and offline
(:func:`offline_lap_aggression`). Its items are :class:`schemas.TelemetryWindow` records (they
have ``WindowStart``) and :class:`schemas.LapFeatures` records (they have ``LapNumber``) of one
driver, each stream in its own order; how the two streams interleave does not change the output.

Lap interval: ``[LapStartTime, SessionTime)`` where SessionTime is the lap end of the LapFeatures
record and LapStartTime is the end of the driver's previous lap; for the driver's first lap it is
``SessionTime - LapTime``, and a first lap without LapTime (the standing-start lap 1) gives no
record, its end only starts the next lap.

A lap is finalized (emitted) only once the telemetry has passed its end: a window with
``WindowStart >= SessionTime`` has arrived, whichever of lap and window came first. Windows
arrive in WindowStart order, so every window whose midpoint ``(WindowStart + WindowEnd) / 2``
lies in the lap interval has arrived by then; those windows are the lap's windows. Windows are
buffered until no pending or future lap can use them: about one lap of windows when the two
streams are roughly aligned in time (Quix aligns concatenated topics by message timestamp), at
most a race's windows (~1,300) if the laps lag far behind. The driver's last lap stays pending
until a later window arrives (the telemetry app keeps each driver's final window open).

Metrics of a lap record (over the lap's windows, in WindowStart order):

=========================  ======  ==============================================================
field                      unit    definition
=========================  ======  ==============================================================
LapStartTime, SessionTime  s       lap interval (see above)
Date                       UTC     lap end, from the LapFeatures record
Windows                    1       number of the lap's windows (0 when telemetry has a gap)
Samples                    1       sum of the windows' Samples
ThrottleMean               %       Samples-weighted mean of the windows' ThrottleMean
FullThrottleShare          0-1     Samples-weighted mean of the windows' FullThrottleShare
BrakeShare                 0-1     Samples-weighted mean of the windows' BrakeShare
ThrottleBrakeOverlapShare  0-1     Samples-weighted mean of the windows' ThrottleBrakeOverlapShare
DRSOpenShare               0-1     Samples-weighted mean of the windows' DRSOpenShare
BrakeEvents                1       sum of the windows' BrakeEvents (brake applications)
GearChanges                1       sum of the windows' GearChanges
DecelMean                  km/h/s  Samples-weighted mean of the windows' DecelMean
UpshiftRPMMean             1/min   Samples-weighted mean of the windows' UpshiftRPMMean
SpeedMax                   km/h    highest SpeedMax of the windows
=========================  ======  ==============================================================

Weighting: a Samples-weighted mean is ``sum(value_w * Samples_w) / sum(Samples_w)`` over the
lap's windows whose value is not None; None when there is no such window. The windows do not carry
per-metric valid-sample counts (valid Throttle / Brake samples, braking pairs, upshifts), so every
metric is weighted by the window's total Samples: exact for the shares and ThrottleMean when every
sample of the window has a valid Throttle and Brake (the usual case), an approximation otherwise;
DecelMean and UpshiftRPMMean are weighted by time spent (samples), not by event count. Windows are
assigned whole to the lap holding their midpoint, so a lap's edges are accurate to 2.5 s.

Per-lap aggregates (fallback, :func:`aggression_from_aggregates`): races without car samples (the
training corpus) get LapAggression records from the OpenF1 gold per-lap aggregates bundled in
``data/corpus/openf1_lap_aggregates.parquet`` (``cwgbittencourt/F1.OpenF1.DatasetBuilder``, computed
by that source from OpenF1 car_data over each OpenF1 lap; see ``data/README.md``). The offline table
marks every row with ``AggressionSource`` = ``"samples"`` or ``"openf1-aggregates"`` (a parquet column
only, not a LapAggression field). Field by field, for those rows:

=========================  ==================================================================
field                      from the aggregates row
=========================  ==================================================================
SessionKey .. Date         the matching LapFeatures record (same race, DriverNumber, LapNumber);
                           LapStartTime as above (previous lap end, else SessionTime - LapTime)
Windows                    0 (no telemetry windows)
Samples                    telemetry_points (car-data samples in the source's lap)
ThrottleMean               avg_throttle (%, 0-100 on the source's rows)
FullThrottleShare          full_throttle_pct (already a 0-1 fraction in the source, not %)
BrakeShare                 brake_pct (already 0-1)
DRSOpenShare               None: the source's drs_pct is the share of samples with DRS code > 0
                           (it counts the closed codes 1-3 and 8 too; on 2023 Bahrain it matches
                           ``DRS > 0`` of the bundled samples to 1e-4), not codes 10/12/14
BrakeEvents                brake_events
GearChanges                gear_changes
SpeedMax                   max_speed (km/h)
ThrottleBrakeOverlapShare  None: not in the aggregates
DecelMean, UpshiftRPMMean  None: not in the aggregates
=========================  ==================================================================

The source's lap is OpenF1's (``date_start`` + ``lap_duration``), not the FastF1 interval above, so
edges differ by up to a sample or two. Skipped (returned as rejected items): rows with
``has_telemetry`` false, rows without a LapFeatures record with a lap start, and rows whose values
break the schema (e.g. ``avg_throttle`` 104, the feed's invalid-value code).

Rejected items (``{"Rejected": reason, "Item": item}``, see :func:`is_rejected`) leave the state
unchanged: a window whose WindowStart is not after the last accepted one (duplicate or out of
order), a lap whose LapNumber is not above the last accepted one or that does not end after it,
and an item that is neither kind.

The sample-based state machine lives in :mod:`~stratx.functions.features.aggression_state` and the
aggregates fallback in :mod:`~stratx.functions.features.aggression_aggregates`; both are re-exported
here (the public import path).
"""

from stratx.functions.features.aggression_aggregates import (
    AGGREGATE_FIELDS,
    INTS,
    aggression_from_aggregates,
    lap_intervals,
    offline_aggregates_aggression,
)
from stratx.functions.features.aggression_state import (
    BUFFERED,
    FIELDS,
    REJECTED,
    STATE_VERSION,
    SUMMED,
    WEIGHTED,
    aggression_frame,
    aggression_step,
    is_lap,
    is_rejected,
    is_window,
    new_state,
    offline_lap_aggression,
    pending_laps,
)
from stratx.functions.schemas import LapAggression

__all__ = [
    "AGGREGATE_FIELDS",
    "BUFFERED",
    "FIELDS",
    "INTS",
    "REJECTED",
    "STATE_VERSION",
    "SUMMED",
    "WEIGHTED",
    "LapAggression",
    "aggression_frame",
    "aggression_from_aggregates",
    "aggression_step",
    "is_lap",
    "is_rejected",
    "is_window",
    "lap_intervals",
    "new_state",
    "offline_aggregates_aggression",
    "offline_lap_aggression",
    "pending_laps",
]
