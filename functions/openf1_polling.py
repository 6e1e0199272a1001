"""Incremental polling of OpenF1: record identity, per-driver cursors and de-duplication.

OpenF1 repeats records across polls and records can arrive late. :func:`event_id` is the stable
identity of a record, :func:`query_params` the inclusive ``>=`` cursor filter of one poll,
:func:`dedup` drops repeats, and :class:`PollState` keeps the cursors and seen ids between polls
and sorts a batch into new, late, malformed and still-running laps. Pure (no HTTP); re-exported by
:mod:`stratx.functions.openf1`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from stratx.functions.openf1_records import ENDPOINTS, Record, malformed, parse_date


def record_date(endpoint: str, record: Record) -> datetime | None:
    name = ENDPOINTS[endpoint].date_field
    value = record.get(name) if name else None
    return parse_date(value) if value is not None else None


def event_id(endpoint: str, record: Record) -> str:
    """Stable identity of an OpenF1 record: sha1 of endpoint, session_key, driver_number, the
    cursor date (normalised to UTC ISO, so '2024-06-09 18:00:00+00:00' and '...T18:00:00Z' agree)
    and the endpoint's ``id_fields`` (lap_number for laps and pit, message for race_control, the
    two car numbers for overtakes, stint_number for stints); 16 hex digits."""
    spec = ENDPOINTS[endpoint]
    date = record_date(endpoint, record)
    parts = [endpoint, str(record.get("session_key")), str(record.get("driver_number"))]
    parts.append(date.isoformat() if date is not None else "")
    parts.extend(str(record.get(name)) for name in spec.id_fields)
    return hashlib.sha1("|".join(parts).encode(), usedforsecurity=False).hexdigest()[:16]


def query_params(
    endpoint: str, session_key: int, driver: str | None = None, cursor: datetime | None = None
) -> dict[str, str]:
    """Query parameters for one poll: ``session_key``, ``driver_number`` and ``<date field>>=``.

    The filter is inclusive (``>=`` the cursor): records sharing the cursor's timestamp that arrive
    after a poll are not lost; the repeats this causes are dropped by :func:`dedup`.
    """
    spec = ENDPOINTS[endpoint]
    params = {"session_key": str(session_key)}
    if driver is not None:
        params["driver_number"] = str(driver)
    if cursor is not None and spec.date_field is not None:
        params[f"{spec.date_field}>="] = cursor.astimezone(UTC).isoformat()
    return params


def dedup(endpoint: str, records: Iterable[Record], seen_ids: set[str]) -> tuple[list[Record], set[str]]:
    """The records whose :func:`event_id` is not in ``seen_ids`` (nor repeated within the batch),
    and their ids. ``seen_ids`` is not modified."""
    fresh: list[Record] = []
    ids: set[str] = set()
    for record in records:
        rid = event_id(endpoint, record)
        if rid in seen_ids or rid in ids:
            continue
        ids.add(rid)
        fresh.append(record)
    return fresh, ids


class Accepted(NamedTuple):
    new: list[Record]  # to normalise and publish, in cursor-date order
    late: list[tuple[Record, str]]  # older than their cursor: dead letters, with the reason
    malformed: list[tuple[Record, str]]  # dead letters, with the reason
    pending: list[Record]  # laps still running (no lap_duration yet): not emitted, polled again


@dataclass
class PollState:
    """Cursors (per endpoint and driver: last emitted date) and the ids seen at or after them.

    Usage per poll: ``params = state.params(ep, key)`` -> fetch -> ``state.accept(ep, rows)``.
    Every endpoint is polled for the whole session; it keeps a cursor per driver found in the
    records (``None`` for records without a driver) and queries from the oldest of them, so a late
    record of one car is not filtered out by another car's newer one; a car silent for longer than
    the endpoint's ``stale_s`` no longer holds the query back.
    """

    cursors: dict[tuple[str, str | None], datetime] = field(default_factory=dict)
    seen: dict[str, dict[str, datetime]] = field(default_factory=dict)  # endpoint -> id -> date
    # endpoint -> the cursor of a poll in flight (``pin``): ids from it on are kept until its answer
    # is accepted, though records accepted meanwhile (the push feed) move the cursors past them
    floors: dict[str, datetime] = field(default_factory=dict)
    # endpoint -> the oldest date of records the push feed holds back: a held copy of a record the
    # poll publishes first must still find its id when it is released (a repeat, not "late")
    holds: dict[str, datetime] = field(default_factory=dict)

    def pin(self, endpoint: str) -> None:
        self.floors[endpoint] = self.cursor(endpoint) or datetime.min.replace(tzinfo=UTC)

    def unpin(self, endpoint: str) -> None:
        self.floors.pop(endpoint, None)

    def cursor(self, endpoint: str, driver: str | None = None) -> datetime | None:
        """The driver's cursor; without a driver, the session-wide one: the oldest cursor of the
        cars heard from within ``stale_s`` of the newest (``functions/openf1_records.py``)."""
        if driver is not None:
            return self.cursors.get((endpoint, driver))
        dates = [d for (ep, _), d in self.cursors.items() if ep == endpoint]
        if not dates:
            return None
        newest = max(dates)
        return min(d for d in dates if (newest - d).total_seconds() <= ENDPOINTS[endpoint].stale_s)

    def params(self, endpoint: str, session_key: int, driver: str | None = None) -> dict[str, str]:
        return query_params(endpoint, session_key, driver, self.cursor(endpoint, driver))

    def accept(self, endpoint: str, records: Iterable[Any]) -> Accepted:
        spec = ENDPOINTS[endpoint]
        good: list[Record] = []
        bad: list[tuple[Record, str]] = []
        for record in records:
            reason = malformed(endpoint, record)
            if reason is None and spec.date_field is not None and record.get(spec.date_field) is None:
                reason = f"openf1 {endpoint}: missing {spec.date_field}"
            (good.append(record) if reason is None else bad.append((record, reason)))
        if spec.date_field is None:  # reference data (stints grow as laps run): the whole set, always
            return Accepted(good, [], bad, [])
        seen = self.seen.setdefault(endpoint, {})
        fresh, _ = dedup(endpoint, good, set(seen))
        pending: list[Record] = []
        if endpoint == "laps":
            fresh, pending = split_pending_laps(fresh)
        new: list[Record] = []
        late: list[tuple[Record, str]] = []
        for record in sorted(fresh, key=lambda r: record_date(endpoint, r) or datetime.min):
            date = record_date(endpoint, record)
            assert date is not None
            driver = _driver(record)
            key = (endpoint, driver)
            current = self.cursors.get(key)
            if current is not None and date < current:
                seen[event_id(endpoint, record)] = date  # dead-lettered once, not again on the next poll
                late.append(
                    (
                        record,
                        f"openf1 {endpoint}: out of order ({date.isoformat()} < cursor {current.isoformat()})",
                    )
                )
                continue
            self.cursors[key] = date
            seen[event_id(endpoint, record)] = date
            new.append(record)
        self._prune(endpoint)
        return Accepted(new, late, bad, pending)

    def _prune(self, endpoint: str) -> None:
        """Forget ids older than the endpoint's query cursor (no query returns them again)."""
        oldest = self.cursor(endpoint)
        for floor in (self.floors.get(endpoint), self.holds.get(endpoint)):
            if oldest is not None and floor is not None:
                oldest = min(oldest, floor)
        if oldest is not None:
            seen = self.seen[endpoint]
            for rid in [rid for rid, d in seen.items() if d < oldest]:
                del seen[rid]


def _driver(record: Record) -> str | None:
    number = record.get("driver_number")
    return str(number) if number is not None else None


def split_pending_laps(records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
    """(complete, pending): OpenF1 creates a lap at its start and fills it in as it runs. A lap is
    complete when it has a ``lap_duration`` or the same driver has a later lap in the batch."""
    last: dict[str | None, int] = {}
    for r in records:
        d = _driver(r)
        last[d] = max(last.get(d, 0), int(r["lap_number"]))
    done: list[Record] = []
    pending: list[Record] = []
    for r in records:
        complete = r.get("lap_duration") is not None or int(r["lap_number"]) < last[_driver(r)]
        (done if complete else pending).append(r)
    return done, pending
