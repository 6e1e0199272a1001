"""The drift reference: a fixed seeded sample of the training races' LapFeatures rows, built once
with the offline feature functions and saved as parquet whose metadata carries the data snapshot
hash and the races it was sampled from (:func:`build_reference`, :func:`load_reference`).
Re-exported by :mod:`stratx.quix_apps.drift`, whose docstring describes a whole run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stratx.functions.models import base
from stratx.functions.settings import DriftSettings

log = logging.getLogger(__name__)
REFERENCE_SEED = 0
META_KEY = b"stratx.drift_reference"


@dataclass(frozen=True)
class Reference:
    rows: pd.DataFrame
    path: Path
    snapshot_hash: str
    races: list[str]


# ------------------------------------------------------------------ reference
def reference_path(settings: DriftSettings) -> Path:
    years = "-".join(str(y) for y in settings.reference_years()) or "all"
    return settings.drift_reports_dir / f"reference_{years}_{settings.drift_reference_size}.parquet"


def build_reference(settings: DriftSettings, progress: bool = False) -> Reference:
    """Sample the training races' lap features (module doc) and save them with their tags."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stratx.bentos.lifecycle import feature_build, training

    years = set(settings.reference_years())
    keep = []
    for race in training.corpus_races(settings.data_dir):
        ident = pd.DataFrame({"Year": [race.meta.year], "EventName": [race.meta.event_name]})
        if base.race_split(ident).iloc[0] == "train" and (not years or race.meta.year in years):
            keep.append(race)
    if not keep:
        raise ValueError(f"no training races for the drift reference in {settings.data_dir} (years {years})")
    table, _ = feature_build.build_lap_table(keep, progress=progress)
    digest = training.snapshot_hash(table)
    sample = table.sample(n=min(settings.drift_reference_size, len(table)), random_state=REFERENCE_SEED)
    sample = sample.sort_index().reset_index(drop=True)
    races = base.race_names(table)
    path = reference_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(sample, preserve_index=False)
    tags = {"snapshot_hash": digest, "races": races, "rows_sampled_from": len(table), "seed": REFERENCE_SEED}
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}), META_KEY: json.dumps(tags).encode()}
    )
    pq.write_table(arrow, path, compression="zstd")
    log.info(
        "drift reference: %d of %d driver-laps of %d races -> %s", len(sample), len(table), len(races), path
    )
    return Reference(sample, path, digest, races)


def load_reference(settings: DriftSettings, rebuild: bool = False) -> Reference:
    """The saved reference of these settings, built first when missing (or ``rebuild``)."""
    import pyarrow.parquet as pq

    path = reference_path(settings)
    if rebuild or not path.is_file():
        return build_reference(settings)
    arrow = pq.read_table(path)
    tags = json.loads((arrow.schema.metadata or {}).get(META_KEY, b"{}"))
    return Reference(arrow.to_pandas(), path, str(tags.get("snapshot_hash", "")), list(tags.get("races", [])))
