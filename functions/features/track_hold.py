"""Holding a session's track-gap inputs until its track is known (live sessions), then releasing them.

A replay's track is static (the bundled race). A live session's track comes from the stream
(``stratx.race.track``, ``functions/track_state.py``) once the first car has completed lap 1, a
minute or two after the start: the cars' positions from the start on have gone by by then. So the
progress app holds each car's position samples in its state (:func:`hold_sample`, the last
:data:`HOLD_S` of them) and folds them through :func:`~.track_progress.progress_step` when the
track is there (:func:`release_samples`); the gap app does the same with progress points that
reach it before the track record (:func:`hold_point`, :func:`release_points`). The outputs equal
those of a session whose track was known from the start, for a start within ``HOLD_S`` of the
newest held input. Pure; the states are JSON (Quix state).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeGuard

from stratx.functions.features.track_gaps import STALE_S, gap_step
from stratx.functions.features.track_progress import SessionTrack, _reject, progress_step

HOLD_S = 900.0  # s of event time held per car (the start is known ~2 min after it, a built map ~6)
HELD = "held"
_FIELDS = ("Seq", "SessionTime", "X", "Y", "Date")  # what progress_step reads of a sample


def _date(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (None if value is None else str(value))


def holding(state: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """Whether ``state`` holds inputs (rather than being a progress or gap state, or None)."""
    return state is not None and bool(state.get(HELD))


def hold_sample(
    state: dict[str, Any] | None, sample: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Keep one CarPosition sample until the session's track is known; (state, [] or one rejected
    item for a duplicate / out-of-order sample, as :func:`progress_step` rejects them)."""
    st = dict(state) if state is not None else {}
    held = list(st.get(HELD) or [])
    seq, t = int(sample["Seq"]), float(sample["SessionTime"])
    if held and seq == held[-1][0]:
        return st, [_reject(f"duplicate: Seq {seq} was already processed", sample)]
    if held and (seq < held[-1][0] or t < held[-1][1]):
        last_seq, last_t = held[-1][0], held[-1][1]
        reason = f"out of order: Seq {seq} at {t:.3f} s after Seq {last_seq} at {last_t:.3f} s"
        return st, [_reject(reason, sample)]
    held.append([seq, t, float(sample["X"]), float(sample["Y"]), _date(sample.get("Date"))])
    st[HELD] = [h for h in held if h[1] >= t - HOLD_S]
    st["key"] = [int(sample["SessionKey"]), str(sample["DriverNumber"])]
    return st, []


def release_samples(
    state: dict[str, Any], session: SessionTrack
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Fold the held samples through :func:`progress_step`; (the progress state, its items)."""
    key, drv = state["key"]
    out: dict[str, Any] | None = None
    items: list[dict[str, Any]] = []
    for h in state[HELD]:
        sample = {"SessionKey": key, "DriverNumber": drv, **dict(zip(_FIELDS, h, strict=True))}
        out, new = progress_step(out, sample, session)
        items.extend(new)
    return out, items


def hold_point(state: dict[str, Any] | None, point: Mapping[str, Any]) -> dict[str, Any]:
    """Keep one progress point until the session's track is known (the gap app's session state);
    :func:`~.track_gaps.gap_step` rejects repeats when they are released."""
    st = dict(state) if state is not None else {}
    held = [*(st.get(HELD) or []), dict(point)]
    newest = max(float(p["SessionTime"]) for p in held)
    st[HELD] = [p for p in held if float(p["SessionTime"]) >= newest - HOLD_S]
    return st


def release_points(
    state: dict[str, Any], session: SessionTrack, stale_s: float | None = STALE_S
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Fold the held points through :func:`gap_step` in event-time order; (gap state, items)."""
    out: dict[str, Any] | None = None
    items: list[dict[str, Any]] = []
    for point in sorted(state[HELD], key=lambda p: (p["SessionTime"], p["DriverNumber"])):
        out, new = gap_step(out, point, session, stale_s)
        items.extend(new)
    return out, items
