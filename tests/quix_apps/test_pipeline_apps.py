"""The quickstart's app supervision: an app that stops on its own is reported with its log's end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stratx.quix_apps.kit import pipeline


def _exited(code: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    proc.wait(30)
    return proc


def test_a_stopped_app_is_reported_with_the_end_of_its_log(tmp_path: Path) -> None:
    lines = [f"line {i}" for i in range(40)] + ["sqlite3.IntegrityError: UNIQUE constraint failed"]
    (tmp_path / "aggression.log").write_text("\n".join(lines) + "\n")
    with pytest.raises(pipeline.AppExited) as err:
        pipeline.check_alive({"aggression": _exited(1)}, tmp_path)
    message = str(err.value)
    assert "the aggression app exited early (code 1)" in message
    assert str(tmp_path / "aggression.log") in message
    assert "UNIQUE constraint failed" in message  # the cause is in the message, not only in the log
    assert "line 39" in message and "line 5\n" not in message  # only the last 25 lines


def test_running_apps_pass_and_a_missing_log_still_names_the_app(tmp_path: Path) -> None:
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pipeline.check_alive({"lap": running}, tmp_path)  # alive: no error
    finally:
        running.kill()
        running.wait()
    with pytest.raises(pipeline.AppExited, match=r"the telemetry app exited early \(code 3\); see its log$"):
        pipeline.check_alive({"telemetry": _exited(3)})
    assert pipeline.log_tail(tmp_path, "nothing") == ""
