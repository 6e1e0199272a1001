"""The lap-feature families, declared once: which ``LapFeatures`` / ``LapAggression`` fields form
each Feast feature view, and so each model's versioned feature service.

``feature_repo/lap_features.py`` builds its views from these tuples (types from the schemas), and
each model recipe's ``SERVICE_FEATURES`` is a concatenation of them in its service's order. A
feature added to a family reaches the view, the service and the recipe from here; a test checks
that every lap feature belongs to exactly one family.
"""

from __future__ import annotations

# Pace: rolling clean-lap windows, personal/session bests and deltas.
PACE: tuple[str, ...] = (
    "LapTime",
    "IsClean",
    "Last3Mean",
    "Last3Median",
    "Last3Std",
    "Last3Min",
    "Last5Mean",
    "Last5Median",
    "Last5Std",
    "Last5Min",
    "PersonalBest",
    "LapsSincePB",
    "DeltaToPB",
    "DeltaToSessionBest",
    "DeltaToTeammate",
    "DeltaToCarAhead",
    "DeltaToCarBehind",
    "DeltaToFieldMedian",
)
# Stint: tyre state, fuel model and in-stint degradation slopes.
STINT: tuple[str, ...] = (
    "Stint",
    "Compound",
    "TyreLife",
    "FreshTyre",
    "LapsInStint",
    "StintCleanLaps",
    "FuelKg",
    "FuelCorrectedLapTime",
    "StintTrendSlope",
    "StintDegSlope",
    "StintDegSlopeStderr",
)
# Gaps: running order and time gaps at the timing line (traffic, DRS, lapped cars).
GAPS: tuple[str, ...] = (
    "LapNumber",
    "PositionOnLap",
    "PositionChange",
    "GapToLeader",
    "IntervalAhead",
    "IntervalBehind",
    "InDRSRange",
    "LapsDown",
)
# The part of GAPS that slows a lap (the lap-time model's traffic inputs).
TRAFFIC: tuple[str, ...] = ("LapNumber", "PositionOnLap", "GapToLeader", "IntervalAhead", "InDRSRange")
# Lap context: the lap's own timing values (track status, speed traps) and its causal scope
# (functions/scope.py: neutralised; green and clean).
CONTEXT: tuple[str, ...] = (
    "TrackStatus",
    "Neutralised",
    "GreenClean",
    "SpeedI1",
    "SpeedI2",
    "SpeedFL",
    "SpeedST",
)
# Aggression (LapAggression): pedal, DRS, braking and gear-shift use over the lap's telemetry windows.
AGGRESSION: tuple[str, ...] = (
    "ThrottleMean",
    "FullThrottleShare",
    "BrakeShare",
    "ThrottleBrakeOverlapShare",
    "DRSOpenShare",
    "BrakeEvents",
    "GearChanges",
    "DecelMean",
    "UpshiftRPMMean",
    "SpeedMax",
    "Windows",
    "Samples",
)
# Absolute lap times (s) among them: a model takes them minus the race's anchor lap time (a 1:32
# lap means nothing across circuits).
ABSOLUTE_TIMES: tuple[str, ...] = (
    "LapTime",
    "Last3Mean",
    "Last3Median",
    "Last3Min",
    "Last5Mean",
    "Last5Median",
    "Last5Min",
    "PersonalBest",
    "FuelCorrectedLapTime",
)
# The LapFeatures families (AGGRESSION lives on LapAggression).
LAP_FAMILIES: dict[str, tuple[str, ...]] = {"pace": PACE, "stint": STINT, "gaps": GAPS, "context": CONTEXT}
