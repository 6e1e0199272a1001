"""The recorded session the local OpenF1 server replays: every endpoint's fixture file loaded and
indexed by the time each record arrives (its date, or its lap's end for laps and stints), plus
lights-out and per-driver lap lookups. Re-exported by :mod:`stratx.quix_apps.kit.openf1_server`.
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from stratx.functions.settings import REPO_ROOT
from stratx.quix_apps.kit.openf1_server_clock import parse_date, to_ts

# the recorded real session the tests use (a recording made with `stratx record` has the same layout)
DEFAULT_DATA_DIR = REPO_ROOT / "tests" / "fixtures" / "openf1_session"
#: Every endpoint served. Endpoints without a fixture file answer ``[]``.
ENDPOINTS = (
    "sessions",
    "meetings",
    "drivers",
    "laps",
    "stints",
    "weather",
    "car_data",
    "location",
    "intervals",
    "position",
    "race_control",
    "pit",
    "overtakes",
    "team_radio",
    "session_result",
    "starting_grid",
)
_NEG_INF = -math.inf


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Rec:
    arrival: float
    data: dict[str, Any]
    dates: dict[str, float]
    idx: int = 0


@dataclass
class _Slice:
    """Records of one endpoint (or one driver of it) in file order, with their arrivals.
    ``arrival_sorted``: arrivals never decrease, so the clock cut is a bisect;
    ``by_date``: arrival is the ``date`` field, so ``date>``/``date>=`` cuts are bisects too."""

    recs: list[_Rec]
    arrivals: list[float]
    arrival_sorted: bool
    by_date: bool

    @classmethod
    def of(cls, recs: list[_Rec]) -> _Slice:
        arr = [r.arrival for r in recs]
        by_date = bool(recs) and all(r.dates.get("date") == r.arrival for r in recs)
        return cls(recs, arr, all(a <= b for a, b in itertools.pairwise(arr)), by_date)

    def candidates(self, now: float, lower: tuple[str, float] | None) -> list[_Rec]:
        if not self.arrival_sorted:
            return [r for r in self.recs if r.arrival <= now]
        lo, hi = 0, bisect.bisect_right(self.arrivals, now)
        if lower is not None and self.by_date:
            op, bound = lower
            lo = (bisect.bisect_right if op == ">" else bisect.bisect_left)(self.arrivals, bound)
        return self.recs[lo:hi]


class SessionData:
    """The recorded records of every endpoint, each with its arrival time."""

    def __init__(self, data_dir: str | Path = DEFAULT_DATA_DIR) -> None:
        self.data_dir = Path(data_dir)
        raw: dict[str, list[dict[str, Any]]] = {}
        for ep in ENDPOINTS:
            path = self.data_dir / f"{ep}.jsonl.gz"
            if path.exists():
                with gzip.open(path, "rt", encoding="utf-8") as fh:
                    raw[ep] = [json.loads(line) for line in fh if line.strip()]
            else:
                raw[ep] = []
        manifest = self.data_dir / "MANIFEST.json"
        self.manifest: dict[str, Any] = json.loads(manifest.read_text()) if manifest.exists() else {}

        # per driver: sorted lap start times and lap numbers (for stint arrival and lap_end)
        self._lap_starts: dict[int, tuple[list[float], list[int]]] = {}
        for lap in sorted(raw["laps"], key=lambda r: (r["driver_number"], r["lap_number"])):
            if lap.get("date_start"):
                ts, nums = self._lap_starts.setdefault(lap["driver_number"], ([], []))
                ts.append(to_ts(lap["date_start"]))
                nums.append(lap["lap_number"])

        self.records: dict[str, list[_Rec]] = {}
        for ep, recs in raw.items():
            out = []
            for r in recs:
                dates = {k: to_ts(v) for k, v in r.items() if k.startswith("date") and isinstance(v, str)}
                out.append(_Rec(self._arrival(ep, r, dates), r, dates))
            for i, rec in enumerate(out):
                rec.idx = i
            self.records[ep] = out
        # a driver's laps arrive in lap order (a lap without lap_duration arrives at its
        # date_start, which must not overtake the previous lap's arrival)
        last: dict[int, float] = {}
        for rec in sorted(
            self.records["laps"], key=lambda r: (r.data["driver_number"], r.data["lap_number"])
        ):
            rec.arrival = max(rec.arrival, last.get(rec.data["driver_number"], _NEG_INF))
            last[rec.data["driver_number"]] = rec.arrival
        self._index()
        sessions = sorted(self.records["sessions"], key=lambda r: r.dates.get("date_start", _NEG_INF))
        self.latest_session_key = sessions[-1].data["session_key"] if sessions else None
        self.latest_meeting_key = sessions[-1].data["meeting_key"] if sessions else None

    def _index(self) -> None:
        self.slices: dict[str, _Slice] = {}
        self.driver_slices: dict[str, dict[int, _Slice]] = {}
        for ep, recs in self.records.items():
            self.slices[ep] = _Slice.of(recs)
            per: dict[int, list[_Rec]] = {}
            for r in recs:
                d = r.data.get("driver_number")
                if isinstance(d, int):
                    per.setdefault(d, []).append(r)
            self.driver_slices[ep] = {d: _Slice.of(v) for d, v in per.items()}

    def _arrival(self, ep: str, r: dict[str, Any], dates: dict[str, float]) -> float:
        if "date" in dates:
            return dates["date"]
        if ep == "laps":
            start = dates.get("date_start")
            if start is None:
                return _NEG_INF
            return start + (r.get("lap_duration") or 0.0)
        if ep == "stints":
            return self.lap_start_ts(r["driver_number"], r.get("lap_start")) or _NEG_INF
        return _NEG_INF  # sessions, meetings, drivers, ...: known before the session

    def lap_start_ts(self, driver: int, lap_number: int | None) -> float | None:
        ts, nums = self._lap_starts.get(driver, ([], []))
        if lap_number in nums:
            return ts[nums.index(lap_number)]
        return None

    def current_lap(self, driver: int, now: float) -> int | None:
        ts, nums = self._lap_starts.get(driver, ([], []))
        i = bisect.bisect_right(ts, now)
        return nums[i - 1] if i else None

    @property
    def lights_out(self) -> datetime | None:
        v = self.manifest.get("lights_out")
        return parse_date(v) if v else None
