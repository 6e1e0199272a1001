"""`stratx replay` needs a FastF1 session or a recording; a wrong folder is one clear error line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

STRATX = str(Path(sys.executable).parent / "stratx")


pytestmark = pytest.mark.slow  # a `stratx` subprocess per test


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "replay needs --year and --event"),
        (["--year", "2023"], "replay needs --year and --event"),
        (["--recording", "/nonexistent/rec"], "is not a recording (no MANIFEST.json)"),
    ],
)
def test_replay_argument_errors(args: list[str], message: str) -> None:
    done = subprocess.run(
        [STRATX, "replay", *args, "--broker", "127.0.0.1:1"], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("stratx: error:")]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
