"""What every session loader shares: the session-name vocabulary (FastF1 codes such as ``R`` or
``FP2`` -> "Race", "Practice 2") and :class:`SourceError`, the failure whose message is shown to
the user as is. Re-exported by :mod:`stratx.bentos.lifecycle.sources`.
"""

from __future__ import annotations

SESSION_NAMES = {
    "R": "Race",
    "RACE": "Race",
    "S": "Sprint",
    "SPRINT": "Sprint",
    "Q": "Qualifying",
    "QUALIFYING": "Qualifying",
    "SQ": "Sprint Qualifying",
    "FP1": "Practice 1",
    "FP2": "Practice 2",
    "FP3": "Practice 3",
}


class SourceError(Exception):
    """A session cannot be found or read; the message is meant for the user as is."""


def session_name(code: str) -> str:
    return SESSION_NAMES.get(code.strip().upper(), code.strip().title())
