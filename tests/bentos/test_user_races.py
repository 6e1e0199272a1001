"""`stratx evaluate` and `stratx backtest` name races through one loader
(``evaluation.user_races``): several events of a season from one FastF1 cache, and one clear
error for an exports folder without a race."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from stratx.bentos.lifecycle import evaluation, sources
from stratx.quix_apps.cli.parser import build_parser


def test_every_event_of_the_season_is_loaded_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []

    def load(year: int, event: str, session: str, cache: Path, offline: bool, telemetry_dir: Any) -> str:
        calls.append((year, event, session, cache, offline, telemetry_dir))
        return f"{year} {event}"

    monkeypatch.setattr(sources, "load_fastf1", load)
    for command in ("backtest", "evaluate"):
        calls.clear()
        args = build_parser().parse_args(
            [command, "--fastf1-cache", str(tmp_path), "--year", "2024", "--event", "Australian",
             "--event", "Japan"]
        )  # fmt: skip
        assert evaluation.user_races(args) == ["2024 Australian", "2024 Japan"]
        assert [c[:5] for c in calls] == [
            (2024, "Australian", "R", tmp_path, True),
            (2024, "Japan", "R", tmp_path, True),
        ]


def test_the_cache_needs_a_year_and_an_event(tmp_path: Path) -> None:
    args = argparse.Namespace(fastf1_cache=str(tmp_path), year=2024, event=None)
    with pytest.raises(ValueError, match="--year and --event"):
        evaluation.user_races(args)


def test_an_exports_folder_without_a_race_is_an_error(tmp_path: Path) -> None:
    with pytest.raises((ValueError, sources.SourceError)):
        evaluation.user_races(argparse.Namespace(exports=[str(tmp_path)]))


def test_events_of_takes_one_or_many() -> None:
    assert evaluation.events_of(argparse.Namespace(event="Bahrain")) == ["Bahrain"]
    assert evaluation.events_of(argparse.Namespace(event=["A", "B"])) == ["A", "B"]
    assert evaluation.events_of(argparse.Namespace()) == []
