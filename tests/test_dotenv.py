"""A .env file beside the command is read, as the flask CLI and dbmate read it; a
variable already set in the environment wins over the file."""

from __future__ import annotations

from pathlib import Path

from helpers import ROOT, run

CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"
# Port 1: nothing listens, so `db status` names the URL and fails at once.
FROM_FILE = "postgresql://dotenv@127.0.0.1:1/from_the_file"
FROM_ENV = "postgresql://dotenv@127.0.0.1:1/from_the_environment"


def test_dotenv_sets_what_the_environment_does_not(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"# settings\nCONNECTION_URL={FROM_FILE}\n")
    below = tmp_path / "src"  # found from a folder below too, as flask finds it
    below.mkdir()
    read = run(CRUDDUR, "db", "status", cwd=below)
    assert f"database  {FROM_FILE}" in read.stdout, read.stderr
    assert read.returncode == 1  # unreachable, as it should be

    kept = run(CRUDDUR, "db", "status", cwd=below, env={"CONNECTION_URL": FROM_ENV})
    assert f"database  {FROM_ENV}" in kept.stdout, kept.stderr
    assert "from_the_file" not in kept.stdout + kept.stderr
