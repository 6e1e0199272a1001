"""Load a session into :class:`RaceData`: from the bundled parquet races or any FastF1 cache.

Bundled races live in ``<data_dir>/races/<slug>/`` as one zstd parquet per table plus
``meta.json``; :func:`write_bundle` writes that format, :func:`load_bundled` reads it. Any race a
user downloads with FastF1 loads through :func:`load_fastf1`, so it replays the same way.

The FastF1 loader lives in :mod:`~stratx.bentos.lifecycle.sources_fastf1`, the flat-export loader in
:mod:`~stratx.bentos.lifecycle.sources_exports` and the shared session names and :class:`SourceError`
in :mod:`~stratx.bentos.lifecycle.sources_common`; all are re-exported here (the public import path).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratx.bentos.lifecycle.sources_common import SESSION_NAMES, SourceError, session_name
from stratx.functions.racedata import TABLE_COLUMNS, RaceData, SessionMeta

if TYPE_CHECKING:
    from stratx.bentos.lifecycle.sources_exports import derived_session_key, load_exports
    from stratx.bentos.lifecycle.sources_fastf1 import load_fastf1

# Loaded on first use (module __getattr__): listing or finding the bundled races, which is what
# `stratx races` and an argument check need, imports neither FastF1 nor pandas.
_LAZY = {
    "load_fastf1": "stratx.bentos.lifecycle.sources_fastf1",
    "load_exports": "stratx.bentos.lifecycle.sources_exports",
    "derived_session_key": "stratx.bentos.lifecycle.sources_exports",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SESSION_NAMES",
    "BundledRace",
    "RaceData",
    "SessionMeta",
    "SourceError",
    "derived_session_key",
    "find_bundled",
    "list_bundled",
    "load_bundled",
    "load_exports",
    "load_fastf1",
    "read_meta",
    "session_name",
    "write_bundle",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- bundled races
@dataclass(frozen=True)
class BundledRace:
    path: Path
    meta: SessionMeta

    def matches(self, year: int, event: str, session: str) -> bool:
        needle = event.strip().lower()
        names = [self.meta.event_name.lower(), (self.meta.circuit or "").lower(), self.path.name]
        return (
            self.meta.year == year
            and session_name(session) == self.meta.session_name
            and any(needle in n for n in names if n)
        )


def read_meta(path: Path) -> tuple[SessionMeta, dict[str, Any]]:
    """Parse ``<path>/meta.json``; any defect becomes a SourceError naming the folder."""
    try:
        raw = json.loads((path / "meta.json").read_text())
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        t0 = raw.get("t0_date")
        meta = SessionMeta(
            year=int(raw["year"]),
            event_name=str(raw["event_name"]),
            session_name=str(raw["session_name"]),
            session_key=int(raw["session_key"]),
            circuit=raw.get("circuit"),
            total_laps=int(raw["total_laps"]) if raw.get("total_laps") is not None else None,
            t0_date=_timestamp(t0),
            t0_source=str(raw.get("t0_source", "none")),
        )
        missing = raw.get("missing", [])
        if not isinstance(missing, list):
            raise ValueError("'missing' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(
            f"bundled race {path}: meta.json is unreadable ({type(exc).__name__}: {exc})"
        ) from exc
    return meta, raw


def list_bundled(data_dir: Path) -> list[BundledRace]:
    """Every readable bundled race; a broken folder is logged and skipped, not fatal."""
    races = []
    for meta_file in sorted((data_dir / "races").glob("*/meta.json")):
        try:
            meta, _ = read_meta(meta_file.parent)
        except SourceError as exc:
            log.warning("skipping %s", exc)
            continue
        races.append(BundledRace(meta_file.parent, meta))
    return races


def find_bundled(data_dir: Path, year: int, event: str, session: str) -> BundledRace | None:
    hits = [r for r in list_bundled(data_dir) if r.matches(year, event, session)]
    if len(hits) > 1:
        names = ", ".join(r.path.name for r in hits)
        raise SourceError(f"'{event}' matches several bundled races ({names}); be more specific")
    return hits[0] if hits else None


def load_bundled(path: Path | str) -> RaceData:
    path = Path(path)
    meta, raw = read_meta(path)
    try:
        tables = {}
        for name in TABLE_COLUMNS:
            file = path / f"{name}.parquet"
            if file.exists():
                tables[name] = _read_parquet(file)
    except (OSError, ValueError, KeyError) as exc:
        raise SourceError(f"bundled race {path} is unreadable: {exc}") from exc
    return RaceData(meta, tables, tuple(raw.get("missing", ())))


def write_bundle(race: RaceData, out_dir: Path, provenance: dict[str, str]) -> Path:
    """Write ``race`` in the bundled format (zstd parquet + meta.json); returns the folder."""
    path = out_dir / race.meta.slug
    path.mkdir(parents=True, exist_ok=True)
    for name in TABLE_COLUMNS:
        frame = race.table(name)
        if len(frame):
            frame.reset_index(drop=True).to_parquet(path / f"{name}.parquet", compression="zstd", index=False)
    m = race.meta
    meta = {
        "year": m.year,
        "event_name": m.event_name,
        "session_name": m.session_name,
        "session_key": m.session_key,
        "circuit": m.circuit,
        "total_laps": m.total_laps,
        "t0_date": m.t0_date.isoformat() if m.t0_date is not None else None,
        "t0_source": m.t0_source,
        "missing": list(race.missing),
        "rows": race.row_counts(),
        "provenance": provenance,
    }
    (path / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def _timestamp(value: object) -> Any:
    import pandas as pd

    return pd.Timestamp(str(value)) if value else None


def _read_parquet(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)
