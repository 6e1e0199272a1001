"""Recordings of OpenF1 sessions: what `stratx record` saves and `stratx replay --recording` plays.

A recording is a folder with one ``<endpoint>.jsonl.gz`` per endpoint (the distinct raw OpenF1
records, by stable event id) and ``MANIFEST.json`` — the layout the OpenF1-compatible server
(``quix_apps/kit/openf1_server.py``) serves. Replaying a recording runs that server on loopback with a
simulated clock and follows it with the same live poller, so a replayed recording goes through
exactly the code path of a live session.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stratx.functions import openf1

SNAPSHOT_ENDPOINTS = ("sessions", "meetings", "drivers", "stints")  # saved as their latest answer


class Recorder:
    """Collects every distinct record fetched; ``save()`` writes the recording folder."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.records: dict[str, dict[str, Mapping[str, Any]]] = {}

    def add(self, endpoint: str, records: Iterable[Mapping[str, Any]]) -> None:
        bucket = self.records.setdefault(endpoint, {})
        if endpoint in SNAPSHOT_ENDPOINTS:
            bucket.clear()
            bucket.update({str(i): r for i, r in enumerate(records)})
            return
        for record in records:
            try:
                bucket[openf1.event_id(endpoint, record)] = record
            except (KeyError, TypeError, ValueError):
                continue  # malformed: dead-lettered by the poller, not recorded

    def save(self, session_key: int) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        counts = {}
        for endpoint, bucket in self.records.items():
            rows = sorted(bucket.values(), key=lambda r: str(r.get("date") or r.get("date_start") or ""))
            with gzip.open(self.out_dir / f"{endpoint}.jsonl.gz", "wt", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, sort_keys=True) + "\n")
            counts[endpoint] = len(rows)
        starts = [
            r.get("date_start") for r in self.records.get("sessions", {}).values() if r.get("date_start")
        ]
        manifest = {
            "session_key": session_key,
            "recorded_at": datetime.now(UTC).isoformat(),
            "files": counts,
            "lights_out": _lights_out(self.records.get("laps", {}).values())
            or (starts[0] if starts else None),
            "source": "stratx record (OpenF1 API responses, distinct records by event id)",
        }
        (self.out_dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return self.out_dir


def _lights_out(laps: Iterable[Mapping[str, Any]]) -> str | None:
    starts = [str(r["date_start"]) for r in laps if r.get("lap_number") == 1 and r.get("date_start")]
    return min(starts) if starts else None
