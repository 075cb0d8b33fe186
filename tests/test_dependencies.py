"""Dependencies: no lower bound admits a release with a published vulnerability."""

from __future__ import annotations

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
