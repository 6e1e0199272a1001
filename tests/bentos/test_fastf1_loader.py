"""The FastF1 path on a real FastF1 cache: ``tests/fixtures/fastf1_cache`` (2023 Las Vegas GP race).

The fixture is committed, so these tests prove, offline and without ``shared/``, that StratX reads
the real cache format (stage-2 ``.ff1pkl`` pickles plus FastF1's requests-cache database).
FastF1 writes into its cache folder, so every test loads from a copy in a temporary folder.
No test may touch the network: FastF1 runs in offline mode and any socket connect fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from stratx.bentos.lifecycle import sources
from stratx.functions import catalog, ingest, schemas
from stratx.functions.racedata import EVENT_TABLES, TABLE_COLUMNS, RaceData
from tests.fixtures import make_fastf1_fixture as fixture_builder

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "fastf1_cache"
SESSION_DIR = Path(fixture_builder.SESSION_DIR)
PICKLES = fixture_builder.PICKLES
BUNDLE = REPO / "data" / "races" / "2023_las_vegas_grand_prix_race"
STRATX = Path(sys.executable).parent / "stratx"
DEAD_BROKER = "127.0.0.1:1"
TELEMETRY = {"car_data", "pos_data"}
# sources_fastf1._from_fastf1_session imports `fastf1.api`, whose import warns (see test_load_warns_nothing)
API_WARNING = r"`fastf1\.api` will be considered private"


def _copy(dst: Path) -> Path:
    shutil.copytree(FIXTURE, dst)
    return dst


def _load(cache: Path, event: str = "Las Vegas", session: str = "R") -> RaceData:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=API_WARNING, category=UserWarning)
        return sources.load_fastf1(2023, event, session, cache, offline=True, telemetry_dir=None)


@pytest.fixture(scope="module", autouse=True)
def no_network() -> Iterator[list[Any]]:
    """Every socket connect in this module fails and is recorded; none may happen."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError(f"network access in an offline test: {address}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        yield attempts
    assert attempts == [], f"offline tests tried to connect to {attempts}"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy(tmp_path_factory.mktemp("ff1") / "cache")


@pytest.fixture(scope="module")
def race(cache: Path) -> RaceData:
    return _load(cache)


@pytest.fixture(scope="module")
def session(cache: Path, race: RaceData) -> Any:
    """The same session loaded by FastF1 itself, the reference for the converted tables."""
    import fastf1

    fastf1.Cache.configure(cache_dir=str(cache), ignore_version=True)
    fastf1.Cache.offline_mode(True)
    sess = fastf1.get_session(2023, "Las Vegas Grand Prix", "R")
    sess.load(laps=True, telemetry=False, weather=True, messages=True)
    return sess


@pytest.fixture(scope="module")
def bundled() -> RaceData:
    return sources.load_bundled(BUNDLE)


# ------------------------------------------------------------------ the fixture itself
def test_fixture_is_a_small_fastf1_cache() -> None:
    files = {p.relative_to(FIXTURE) for p in FIXTURE.rglob("*") if p.is_file()}
    assert files == {SESSION_DIR / name for name in PICKLES} | {
        Path("fastf1_http_cache.sqlite"),
        Path("MANIFEST.csv"),
    }
    assert sum((FIXTURE / f).stat().st_size for f in files) < 3_000_000
    con = sqlite3.connect(f"file:{FIXTURE / 'fastf1_http_cache.sqlite'}?mode=ro", uri=True)
    try:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"responses", "redirects"}  # requests-cache 1.x layout
        assert con.execute("SELECT count(*) FROM responses").fetchone() == (1,)  # the 2023 schedule
    finally:
        con.close()


# ------------------------------------------------------------------ loading
def test_loads_every_table_but_the_missing_ones(race: RaceData) -> None:
    for name in TABLE_COLUMNS:
        frame = race.table(name)
        assert list(frame.columns) == list(TABLE_COLUMNS[name]), name
        assert (len(frame) == 0) == (name in race.missing), name


def test_missing_lists_the_telemetry_tables(race: RaceData) -> None:
    """The cache has no car or position data; everything else loads."""
    assert race.missing == ("car_data", "pos_data")


def test_t0_is_estimated_without_telemetry(race: RaceData, bundled: RaceData) -> None:
    """FastF1 needs telemetry for t0_date; the loader estimates it (race control needs it)."""
    m = race.meta
    assert m.t0_date is not None and m.t0_source.startswith("estimate")
    assert bundled.meta.t0_date is not None  # the bundle's t0 is the OpenF1 lap-alignment estimate
    assert abs((m.t0_date - bundled.meta.t0_date).total_seconds()) < 5


def test_same_laps_as_fastf1(race: RaceData, session: Any) -> None:
    laps, ref = race.table("laps"), session.laps
    assert len(laps) == len(ref) == 946
    assert len(race.table("drivers")) == len(session.results) == 20
    for col in ("Time", "LapTime", "Sector1Time", "Sector2Time", "Sector3Time", "LapStartTime"):
        assert laps[col].dtype == "float64", col
        expected = ref[col].dt.total_seconds().reset_index(drop=True)
        pd.testing.assert_series_equal(laps[col], expected, check_names=False)
    for col in ("PitInTime", "PitOutTime"):
        assert laps[col].dtype == "float64", col
    assert laps.LapTime.dropna().between(90, 400).all()  # seconds, not nanoseconds or minutes


def test_driver_numbers_are_strings(race: RaceData, session: Any) -> None:
    for name in ("drivers", "laps", "timing"):
        numbers = race.table(name).DriverNumber
        assert numbers.map(type).eq(str).all(), name
        assert set(numbers) == set(session.drivers), name


def test_meta(race: RaceData, bundled: RaceData) -> None:
    m = race.meta
    assert (m.year, m.event_name, m.session_name) == (2023, "Las Vegas Grand Prix", "Race")
    assert (m.session_key, m.circuit, m.total_laps) == (9189, "Las Vegas", 50)
    assert m.slug == BUNDLE.name
    b = bundled.meta
    assert (m.session_key, m.circuit, m.total_laps) == (b.session_key, b.circuit, b.total_laps)


@pytest.mark.parametrize("table", ["drivers", "laps", "timing", "weather", "track_status"])
def test_tables_equal_the_bundled_race(race: RaceData, bundled: RaceData, table: str) -> None:
    """The bundle was written from the same cache, so the FastF1 path must reproduce it exactly."""
    assert len(race.table(table)) == len(bundled.table(table)) > 0
    pd.testing.assert_frame_equal(race.table(table), bundled.table(table))


def test_race_control_equals_the_bundled_race(race: RaceData, bundled: RaceData, session: Any) -> None:
    """Same messages; times differ only by the constant offset between the two t0 estimates."""
    rc, ref = race.table("race_control"), bundled.table("race_control")
    assert len(rc) == len(ref) == len(session.race_control_messages) == 73
    pd.testing.assert_frame_equal(rc.drop(columns="Time"), ref.drop(columns="Time"))
    assert race.meta.t0_date is not None and bundled.meta.t0_date is not None
    offset = (bundled.meta.t0_date - race.meta.t0_date).total_seconds()
    assert (rc.Time - ref.Time - offset).abs().max() < 1e-3
    utc = pd.to_datetime(session.race_control_messages.Time).dt.tz_localize("UTC").reset_index(drop=True)
    assert ((utc - race.meta.t0_date).dt.total_seconds() - rc.Time).abs().max() < 1e-3


# ------------------------------------------------------------------ event lookup
@pytest.mark.parametrize("event", ["21", "vegas", "LAS VEGAS GRAND PRIX"])
def test_event_by_round_or_name(tmp_path: Path, event: str) -> None:
    race = _load(_copy(tmp_path / "cache"), event)
    assert race.meta.event_name == "Las Vegas Grand Prix"
    assert len(race.table("laps")) == 946


def test_unknown_event_lists_the_events(cache: Path) -> None:
    with pytest.raises(sources.SourceError, match="'Atlantis' is not an event of 2023") as exc:
        _load(cache, "Atlantis")
    assert "Las Vegas Grand Prix" in str(exc.value) and "Bahrain Grand Prix" in str(exc.value)


def test_unknown_round(cache: Path) -> None:
    with pytest.raises(sources.SourceError, match="'23' is not an event of 2023"):
        _load(cache, "23")


@pytest.mark.parametrize("event", ["United States", "Grand Prix"])
def test_ambiguous_event(cache: Path, event: str) -> None:
    # "United States" is the country of Miami, Austin and Las Vegas
    with pytest.raises(sources.SourceError, match=f"'{event}' matches several events of 2023"):
        _load(cache, event)


def test_year_without_cached_schedule(cache: Path) -> None:
    with warnings.catch_warnings():
        # FastF1's last schedule backend (Ergast) warns about the offline cache miss
        warnings.filterwarnings("ignore", message="Request returned: 504", category=UserWarning)
        with pytest.raises(sources.SourceError, match="no FastF1 schedule for 2019"):
            sources.load_fastf1(2019, "Bahrain", "R", cache, offline=True)


@pytest.mark.parametrize(
    ("session", "reason"), [("Q", "Qualifying: no lap data"), ("S", "Sprint: no lap data")]
)
def test_session_not_in_the_cache(cache: Path, session: str, reason: str) -> None:
    with pytest.raises(sources.SourceError, match=f"2023 Las Vegas Grand Prix {reason}"):
        _load(cache, session=session)


# ------------------------------------------------------------------ corrupt cache
@pytest.mark.parametrize("name", PICKLES)
def test_corrupt_pickle_loads_or_is_a_source_error(tmp_path: Path, name: str) -> None:
    cache = _copy(tmp_path / "cache")
    (cache / SESSION_DIR / name).write_bytes(b"not a pickle\n" * 64)
    try:
        race = _load(cache)
    except sources.SourceError as exc:
        assert "2023 Las Vegas Grand Prix Race" in str(exc)
    else:
        assert len(race.table("laps")) > 0


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_timing_pickle_is_a_source_error(tmp_path: Path, damage: str) -> None:
    cache = _copy(tmp_path / "cache")
    pickle = cache / SESSION_DIR / "_extended_timing_data.ff1pkl"
    data = pickle.read_bytes()
    pickle.write_bytes(b"\x00garbage" * 100 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(sources.SourceError, match="2023 Las Vegas Grand Prix Race: no lap data"):
        _load(cache)


def test_corrupt_http_cache_is_a_source_error(tmp_path: Path) -> None:
    cache = _copy(tmp_path / "cache")
    (cache / "fastf1_http_cache.sqlite").write_bytes(b"not a database\n" * 64)
    with pytest.raises(sources.SourceError):
        _load(cache)


# ------------------------------------------------------------------ warnings
def test_load_warns_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With warnings as errors (pytest's setting), a load keeps every table it can read."""
    import fastf1

    # forget an earlier import, so that the module-level warning would fire again
    monkeypatch.delitem(sys.modules, "fastf1.api", raising=False)
    monkeypatch.delattr(fastf1, "api", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        race = sources.load_fastf1(2023, "Las Vegas", "R", _copy(tmp_path / "c"), offline=True)
    assert "timing" not in race.missing


# ------------------------------------------------------------------ ingestion
def test_ingest_without_telemetry(race: RaceData) -> None:
    records = list(ingest.iter_records(race))
    info = ingest.validate(records[0])
    assert isinstance(info, schemas.SessionInfo)
    assert set(info.Missing) >= TELEMETRY and info.Missing == list(race.missing)
    assert info.Sources == race.row_counts()
    assert info.T0Date == race.meta.t0_date
    assert [d.DriverNumber for d in info.Drivers] == list(race.table("drivers").DriverNumber)
    counts = Counter(r.topic.name for r in records[1:])
    expected = {
        spec.name: len(race.table(name))
        for name, (spec, _) in ingest.TABLE_TOPICS.items()
        if len(race.table(name))
    }
    assert counts == expected
    assert len(records) == 1 + sum(len(race.table(t)) for t in EVENT_TABLES)
    assert catalog.CAR_TELEMETRY.name not in counts and catalog.CAR_POSITION.name not in counts
    assert [r.payload["Seq"] for r in records] == list(range(len(records)))
    assert all(r.payload["Date"] is not None for r in records)  # the estimated t0 dates every event
    assert not [r for r in records if isinstance(ingest.validate(r), ingest.Rejected)]


# ------------------------------------------------------------------ CLI
@pytest.mark.slow  # a `stratx replay` subprocess
def test_cli_replay_loads_the_cache_before_the_broker(tmp_path: Path) -> None:
    """`stratx replay --source fastf1` reads the cache, then fails on the dead broker: one line."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STRATX_")}
    proxy = "http://127.0.0.1:9"  # any HTTP request would fail at once instead of going out
    env.update(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, https_proxy=proxy, NO_PROXY="")
    env["STRATX_CONNECT_TIMEOUT_S"] = "1"
    cache = _copy(tmp_path / "cache")
    args = ["replay", "--year", "2023", "--event", "Las Vegas", "--source", "fastf1"]
    args += ["--cache", str(cache), "--offline", "--broker", DEAD_BROKER, "--no-progress"]
    proc = subprocess.run(
        [str(STRATX), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("stratx: error:")]
    assert len(errors) == 1, proc.stderr
    assert DEAD_BROKER in errors[0] and "broker" in errors[0]
    # the FastF1 path ran first: it reported the tables the cache lacks
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note: source tables")]
    assert len(notes) == 1 and "car_data, pos_data" in notes[0], proc.stderr
