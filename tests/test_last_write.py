"""The file the workers of one `cruddur serve` share (services/last_write.py)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from cruddur.services import last_write


def test_a_killed_servers_folder_goes_at_the_next_start_and_a_live_ones_stays(
    tmp_path, monkeypatch
) -> None:
    # A server killed outright (SIGKILL) left its folder in /tmp: six more after each run
    # of the suite. The next start removes those whose process is gone.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp_path / f"{last_write.PREFIX}{gone.pid}-abc"
    stale.mkdir()
    (stale / last_write.FILE_NAME).write_bytes(bytes(8))
    other = tmp_path / f"{last_write.PREFIX}{gone.pid}-keep"  # holds more than make makes
    other.mkdir()
    (other / "something else").write_text("kept")
    live = last_write.make()
    assert not stale.exists()
    assert other.exists()
    assert Path(live).is_file() and f"{last_write.PREFIX}{os.getpid()}-" in live
    assert Path(last_write.make()).is_file()
    assert Path(live).is_file()  # this process lives: its folder stays
