"""What a session lacks and which models cannot answer because of it, in plain words (pure, no Panel).

Two sources, both records the dashboard already reads: the session info (``Sources``: rows per
source table, ``Missing``: tables the source did not have) and the latest prediction of each
model per car (``Status`` ``unavailable`` with the ``Reason`` the prediction app gave: the input
rule of ``functions/models/inputs.py``, or a service that did not answer). Re-exported by
:mod:`stratx.panel_app.views`.
"""

from __future__ import annotations

from dataclasses import dataclass

from stratx.functions.models import registry
from stratx.panel_app.state import RaceSnapshot

# source table -> (what it is, what the dashboard shows without it)
SOURCE_WORDS: dict[str, tuple[str, str]] = {
    "car_data": ("car telemetry", "no gauges, no driving-style features"),
    "pos_data": ("car positions", "no cars on the track map, no continuous gaps"),
    "timing": ("timing stream", "the tower runs on lap crossings only"),
    "race_control": ("race control messages", "no flags or incident messages"),
    "weather": ("weather", "no track or air temperature"),
}


@dataclass(frozen=True)
class Lack:
    source: str
    what: str
    effect: str


@dataclass(frozen=True)
class Unavailable:
    """One model's latest predictions that are unavailable for one reason, and for which cars."""

    model: str
    label: str
    reason: str
    drivers: tuple[str, ...]


def _seen(snap: RaceSnapshot, source: str) -> bool:
    """Records of ``source`` reached the dashboard (it follows telemetry, positions and timing)."""
    held = {"car_data": snap.telemetry, "pos_data": snap.positions, "timing": snap.timing}
    return bool(held.get(source))


def session_lacks(snap: RaceSnapshot) -> list[Lack]:
    """The source tables this session lacks: listed ``Missing``, or no rows in ``Sources`` while
    the session info counts its tables (a live session counts none: only what is missing by
    name, and telemetry / positions until their first sample, as the gauges say). Unknown
    before the session info arrives: nothing."""
    if snap.info is None:
        return []
    missing = set(snap.info.get("Missing") or [])
    sources = snap.info.get("Sources") or {}
    out = []
    for source, (what, effect) in SOURCE_WORDS.items():
        # a live session counts nothing: judge telemetry and positions as views.has_telemetry does
        judged = bool(sources) or source in ("car_data", "pos_data")
        if not _seen(snap, source) and (source in missing or (judged and int(sources.get(source, 0)) == 0)):
            out.append(Lack(source, what, effect))
    return out


def unavailable_models(snap: RaceSnapshot) -> list[Unavailable]:
    """Per model (registry order) and reason, the cars whose latest prediction is unavailable."""
    out = []
    for spec in registry.MODELS:
        by_reason: dict[str, list[str]] = {}
        for drv, rec in sorted(snap.predictions.get(spec.key, {}).items(), key=lambda kv: _car(kv[0])):
            if rec.get("Status") != "ok":
                by_reason.setdefault(str(rec.get("Reason") or "no reason given"), []).append(drv)
        out += [Unavailable(spec.key, spec.label, r, tuple(d)) for r, d in by_reason.items()]
    return out


def _car(number: str) -> tuple[int, str]:
    return (int(number), number) if number.isdigit() else (10**6, number)
