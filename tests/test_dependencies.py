"""Dependencies: no lower bound admits a release with a published vulnerability, and every
install comes from a lock file made from pyproject.toml, with a hash for every file."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
from helpers import ROOT
from packaging.requirements import Requirement

REQUIREMENTS = {
    Requirement(line).name: Requirement(line)
    for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
}


@pytest.mark.parametrize(
    ("name", "vulnerable"),
    [
        ("gunicorn", "22.0.0"),  # CVE-2024-6827, request smuggling
        ("pyjwt", "2.10.0"),  # CVE-2024-53861, issuer check by substring
        ("flask", "3.0.0"),  # CVE-2025-47278, 3.1.0's fallback signing keys
        ("flask", "3.1.0"),
        ("werkzeug", "3.0.1"),  # CVE-2024-34069, the debugger
        ("werkzeug", "3.0.5"),  # CVE-2024-49766/49767
        ("werkzeug", "3.1.5"),  # CVE-2026-27199
        ("cryptography", "44.0.0"),  # CVE-2024-12797
    ],
)
def test_no_bound_admits_a_vulnerable_release(name: str, vulnerable: str) -> None:
    assert name in REQUIREMENTS, f"{name} is not bounded in pyproject.toml"
    assert not REQUIREMENTS[name].specifier.contains(vulnerable)


# -- the lock files ------------------------------------------------------------------------

LOCKS = ("run", "embedded", "test")


def _digest(pyproject) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin/lib/deps-digest"), str(pyproject)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.mark.parametrize("name", LOCKS)
def test_the_locks_are_made_from_this_pyproject_and_hash_every_pin(name: str) -> None:
    text = (ROOT / "requirements" / f"{name}.lock").read_text()
    assert text.startswith(f"# pyproject-digest: {_digest(ROOT / 'pyproject.toml')} ")
    entries = [e for e in re.split(r"\n(?=\S)", text) if e and not e.startswith("#")]
    assert entries and all("--hash=sha256:" in entry for entry in entries)
    pinned = {Requirement(e.split(" \\")[0].split(";")[0]).name.lower() for e in entries}
    assert {name.lower() for name in REQUIREMENTS} <= pinned | {"psycopg"}


def test_install_refuses_a_lock_that_pyproject_no_longer_matches(tmp_path) -> None:
    for part in ("bin", "requirements"):
        shutil.copytree(ROOT / part, tmp_path / part)
    pyproject = (ROOT / "pyproject.toml").read_text()
    # Someone adds a dependency and forgets bin/lock.
    changed = pyproject.replace('  "click>=8.1",\n', '  "click>=8.1",\n  "leftpad>=1.0",\n')
    assert changed != pyproject
    (tmp_path / "pyproject.toml").write_text(changed)
    refused = subprocess.run(
        [str(tmp_path / "bin/lib/install"), "test"], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1
    assert "do not match requirements/test.lock" in refused.stderr
    assert "run bin/lock" in refused.stderr
    assert not (tmp_path / ".venv").exists()  # nothing installed


@pytest.mark.parametrize("hasher", ["sha256sum", "shasum", None])
def test_install_hashes_the_lock_with_what_the_machine_has(tmp_path, hasher: str | None) -> None:
    # macOS has no sha256sum (GNU coreutils), only shasum: the install stopped there.
    for part in ("bin", "requirements"):
        shutil.copytree(ROOT / part, tmp_path / part)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").symlink_to(sys.executable)
    lock = (tmp_path / "requirements/test.lock").read_bytes()
    # Installed already from this very lock: nothing to do but hash the lock and compare.
    (venv / ".cruddur-installed").write_text(f"test {hashlib.sha256(lock).hexdigest()[:16]}\n")
    tools = tmp_path / "tools"  # a PATH with the script's tools and one hasher at most
    tools.mkdir()
    for tool in ("bash", "dirname", "readlink", "sed", "head", "cat", hasher):
        if tool:
            (tools / tool).symlink_to(shutil.which(tool))
    done = subprocess.run(
        [str(tmp_path / "bin/lib/install"), "test"],
        env={"PATH": str(tools), "PYTHON": sys.executable, "HOME": str(tmp_path)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if hasher:
        assert done.returncode == 0, done.stderr
        assert "installing" not in done.stderr  # the stamp matched: the hash was the same
    else:
        assert done.returncode == 1
        assert done.stderr == (
            "error: neither sha256sum nor shasum is installed (coreutils or perl provides one)\n"
        )


def test_a_cached_wheel_that_is_not_the_locked_file_is_not_packaged(tmp_path) -> None:
    from cruddur.ops.packaging import _cached, locked, requirements

    pinned = requirements()
    version = pinned[0].split("==")[1]
    planted = tmp_path / f"psycopg-{version}-py3-none-any.whl"
    planted.write_bytes(b"not the wheel PyPI serves")
    hashes = frozenset().union(*(allowed for _, allowed in locked().values()))
    assert _cached(tmp_path, pinned[:1], "x86_64", hashes) is None
