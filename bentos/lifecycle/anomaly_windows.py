"""Build ``data/corpus/telemetry_windows.parquet``: TelemetryWindow rows of a few *training* races
from the real OpenF1 car data in ``shared/data/telemetry`` (not in the repo), for the anomaly model.

The windows come from our own feature function
(:func:`stratx.functions.features.telemetry.offline_windows`) on CarTelemetry-shaped samples put on
the FastF1 session clock with ``t0_estimates.csv``, exactly as ``sources`` loads bundled car data.
Only races outside base.TEST_RACES and base.VALIDATION_RACES are written. Refresh with::

    .venv/bin/python -m stratx.bentos.lifecycle.anomaly_windows --telemetry-dir ../shared/data/telemetry
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from stratx.functions.features.telemetry import offline_windows
from stratx.functions.models import anomaly, base
from stratx.functions.racedata import RaceData, SessionMeta
from stratx.functions.settings import REPO_ROOT

OUT = REPO_ROOT / "data" / "corpus" / anomaly.WINDOWS_FILE


def race_windows(telemetry_dir: Path, folder: str) -> pd.DataFrame:
    """TelemetryWindow rows (+ Year, EventName) of one race folder of the shared telemetry."""
    index = pd.read_csv(telemetry_dir / "t0_estimates.csv")
    row = index[index.folder == folder].iloc[0]
    year, event = int(row.season), str(row.event)
    if (year, event) in set(base.TEST_RACES) | set(base.VALIDATION_RACES):
        raise ValueError(f"{year} {event} is a test or validation race; bundle training races only")
    t0 = pd.Timestamp(row.t0_date_estimate)
    raw = pd.read_parquet(telemetry_dir / folder / "car_data.parquet")
    car = pd.DataFrame(
        {
            "SessionTime": (raw.date - t0).dt.total_seconds(),
            "DriverNumber": raw.driver_number.astype(str),
            "Speed": raw.speed,
            "RPM": raw.rpm,
            "nGear": raw.n_gear,
            "Throttle": raw.throttle,
            "Brake": raw.brake,
            "DRS": raw.drs,
        }
    )
    meta = SessionMeta(year, event, "Race", int(row.session_key), t0_date=t0, t0_source="estimate")
    frame = offline_windows(RaceData(meta, {"car_data": car})).copy()
    frame.insert(0, "EventName", event)
    frame.insert(0, "Year", year)
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--telemetry-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--races", nargs="*", default=list(anomaly.WINDOW_RACE_FOLDERS))
    args = parser.parse_args(argv)
    frames = []
    for folder in args.races:
        started = time.perf_counter()
        frames.append(race_windows(args.telemetry_dir, folder))
        print(f"{folder}: {len(frames[-1])} windows in {time.perf_counter() - started:.0f} s")
    table = pd.concat(frames, ignore_index=True).drop(columns=["Date"])  # unused; keeps the file small
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, compression="zstd", index=False)
    print(f"wrote {len(table)} windows to {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
