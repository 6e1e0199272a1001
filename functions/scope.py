"""Which driver-laps are green and clean, decided as the stream sees them when the car crosses the line.

One causal notion of *scope*, shared by the lap features (``LapFeatures.Neutralised`` and
``GreenClean``), the anomaly model's rows and calibration, and the alert rules. It reads only what
exists at the line crossing: the lap's own record (``LapNumber``, ``PitInTime``, ``PitOutTime``,
the track status codes the timing feed saw during the lap) and the track status / race control
messages received before it. Nothing about the rest of the field's lap (a field median, how many
cars are slow) enters it.

Rules, first match wins (:func:`scope_reason`):

============  =================================================================================
reason        when
============  =================================================================================
lap_1         ``LapNumber`` <= 1 (standing start, the field bunched)
pit_in        the lap has a ``PitInTime`` (in-lap)
pit_out       the lap has a ``PitOutTime`` (out-lap)
neutralised   the lap's ``TrackStatus`` holds '4' safety car, '5' red flag, '6' virtual safety car
              or '7' VSC ending; when the lap carries no TrackStatus (OpenF1 laps), a
              neutralisation period (:func:`status_step`) received before the line crossing
              overlaps the lap
============  =================================================================================

A lap with none of them is ``GreenClean``. A yellow flag ('2') is local and does not neutralise
the race (the lap features' ``IsClean`` leaves yellow laps out of the rolling windows on its own).

Why the lap's own codes win over the periods when both exist: FastF1 / F1 timing give each lap the
codes seen between its start and its line crossing, which is exactly the causal record; using it
keeps the stream equal to the offline build whatever order the lap and track-status topics are
read in. The periods are the fallback for sources whose laps have no codes.
"""

from __future__ import annotations

from typing import Any

NEUTRAL_CODES = frozenset("4567")  # SC, red flag, VSC, VSC ending (FastF1 track status codes)
GREEN_CODES = frozenset("1")  # a status that ends a neutralisation ('2' yellow / '3' keep it)
SCOPE_REASONS = ("lap_1", "pit_in", "pit_out", "neutralised")
# Clean laps of a stint a tyre-cliff reference needs (the median of the stint's last 3 clean laps):
# the cliff label (tyre_deg_labels) and the tyre_cliff alert's scope (alerts.in_scope) both read it.
CLIFF_REFERENCE_LAPS = 3


def new_state() -> dict[str, Any]:
    """Neutralisation periods received so far: ``[[start, end or None], ...]`` in session seconds."""
    return {"periods": []}


def _open(st: dict[str, Any], t: float) -> None:
    periods = st["periods"]
    if not periods or periods[-1][1] is not None:
        periods.append([t, None])


def _close(st: dict[str, Any], t: float) -> None:
    periods = st["periods"]
    if periods and periods[-1][1] is None:
        periods[-1][1] = t


def status_step(state: dict[str, Any] | None, event: dict[str, Any]) -> dict[str, Any]:
    """Fold one TrackStatus (``Status``) or RaceControl (``Category``, ``Flag``, ``Status``,
    ``Scope``) event, as it arrives, into the neutralisation periods.

    Track status: '4', '5', '6', '7' open a period, '1' closes it. Race control (OpenF1 has no
    track-status feed): a ``SafetyCar`` message with ``Status`` DEPLOYED or a ``RED`` flag opens
    one; a track-wide ``CLEAR`` or ``GREEN`` flag closes it."""
    st = state if state is not None else new_state()
    t = float(event["SessionTime"])
    if "Category" in event:
        category = str(event.get("Category") or "")
        flag = str(event.get("Flag") or "").upper()
        status = str(event.get("Status") or "").upper()
        if (category == "SafetyCar" and status == "DEPLOYED") or flag == "RED":
            _open(st, t)
        elif flag in ("CLEAR", "GREEN") and str(event.get("Scope") or "Track") == "Track":
            _close(st, t)
        return st
    code = str(event.get("Status") or "")
    if code in NEUTRAL_CODES:
        _open(st, t)
    elif code in GREEN_CODES:
        _close(st, t)
    return st


def lap_window(lap: dict[str, Any]) -> tuple[float, float] | None:
    """The lap's (start, line crossing) in session seconds, when known."""
    end = lap.get("SessionTime", lap.get("Time"))
    if end is None:
        return None
    start = lap.get("LapStartTime")
    if start is None and lap.get("LapTime") is not None:
        start = float(end) - float(lap["LapTime"])
    return (float(start) if start is not None else float(end), float(end))


def neutralised(lap: dict[str, Any], state: dict[str, Any] | None = None) -> bool:
    """SC / VSC / red flag on this lap, from its own codes, else from the periods received so far."""
    status = lap.get("TrackStatus")
    if status is not None and status == status:  # NaN (pandas' missing) counts as no codes
        return any(code in NEUTRAL_CODES for code in str(status))
    window = lap_window(lap)
    if state is None or window is None:
        return False
    start, end = window
    return any(a <= end and (b is None or b >= start) for a, b in state["periods"])


def _present(value: Any) -> bool:
    return value is not None and value == value  # None and NaN are absent


def scope_reason(lap: dict[str, Any], state: dict[str, Any] | None = None) -> str | None:
    """Why the driver-lap is out of scope for strategy alerts and anomaly checks (None: green and
    clean). ``state``: the neutralisation periods received before the line crossing."""
    if int(lap["LapNumber"]) <= 1:
        return "lap_1"
    if _present(lap.get("PitInTime")):
        return "pit_in"
    if _present(lap.get("PitOutTime")):
        return "pit_out"
    if neutralised(lap, state):
        return "neutralised"
    return None
