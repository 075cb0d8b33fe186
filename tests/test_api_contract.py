"""openapi.yaml says what the server enforces, and schemathesis finds nothing to add.

Schemathesis (from PyPI) runs against `cruddur serve` over HTTP with every check but
negative_data_rejection, on valid and invalid data, a bounded number of examples per
operation and a fixed seed.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from served import Served

from cruddur.api import OPENAPI
from cruddur.services.paging import CURSOR_PATTERN, BadPageRequest, Cursor
from cruddur.services.validation import (
    MESSAGE_PATTERN,
    UUID_PATTERN,
    ValidationFailed,
    parse_uuid,
    validate_crud,
)

DOCUMENT = yaml.safe_load(OPENAPI.read_text())
SCHEMAS = DOCUMENT["components"]["schemas"]
EXAMPLES_PER_OPERATION = 15


def _crud_refused(message: str) -> bool:
    try:
        validate_crud({"message": message, "ttl": "1-day"})
    except ValidationFailed:
        return True
    return False


def test_the_document_names_the_servers_patterns() -> None:
    activity_uuid = DOCUMENT["components"]["parameters"]["ActivityUuid"]["schema"]
    assert activity_uuid["format"] == "uuid"
    assert activity_uuid["pattern"] == f"^{UUID_PATTERN}$"
    assert SCHEMAS["Message"]["minLength"] == 1
    assert SCHEMAS["Message"]["pattern"] == MESSAGE_PATTERN
    assert SCHEMAS["Cursor"]["pattern"] == CURSOR_PATTERN
    limit = DOCUMENT["components"]["parameters"]["Limit"]["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 100)


def test_the_document_names_the_dev_sign_in_handles_pattern(api) -> None:
    # A handle the schema's users_handle_check refuses is a 400 (invalid_handle), so the
    # document must refuse it too, or a valid request by the document is refused.
    content = DOCUMENT["paths"]["/api/dev/sign-in"]["post"]["requestBody"]["content"]
    schema = content["application/json"]["schema"]["properties"]["handle"]
    for text, status in [("andrewbrown", 200), ("nobody", 404), ("x" * 64, 404), ("é", 400),
                         ("a b", 400), ("x" * 65, 400), ("", 400)]:  # fmt: skip
        assert api.post("/api/dev/sign-in", json={"handle": text}).status_code == status, text
        admitted = re.search(schema.get("pattern", ""), text) is not None
        admitted = admitted and schema["minLength"] <= len(text) <= schema["maxLength"]
        assert admitted == (status != 400), text


def test_the_message_pattern_refuses_exactly_what_the_server_refuses() -> None:
    pattern = re.compile(SCHEMAS["Message"]["pattern"])
    # Every character of the Basic Multilingual Plane but the surrogates, alone and
    # beside a letter; then strings of whitespace.
    singles = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    samples = [*singles, *(f"a{ch}" for ch in singles), " \t\n", "\u3000\u2028", "", "\U0001f600"]
    disagreements = [
        s for s in samples if (pattern.search(s) is None) != _crud_refused(s) and len(s) <= 280
    ]
    assert disagreements == []


def test_beyond_the_bmp_the_server_refuses_only_what_the_description_names() -> None:
    # The pattern cannot name characters beyond the BMP the same way in every engine: a
    # crud of only U+E0100 (a variation selector) was a 201. The description names each
    # range the server refuses there, and the pattern admits nothing else it refuses.
    pattern = re.compile(SCHEMAS["Message"]["pattern"])
    named = {
        code
        for low, high in re.findall(
            r"U\+([0-9A-F]+)\u2013U\+([0-9A-F]+)", SCHEMAS["Message"]["description"]
        )
        for code in range(int(low, 16), int(high, 16) + 1)
    }
    beyond = [chr(code) for code in range(0x10000, 0x110000)]
    assert all(pattern.search(ch) for ch in beyond)
    refused = {ord(ch) for ch in beyond if _crud_refused(ch)}
    assert refused == named
    assert len(named) == 4124  # Egyptian 16, U+E0000-E0FFF 4,096, shorthand 4, beams 8
    for code in named:  # with whitespace or BMP invisibles too; kept beside a letter
        assert pattern.search(f"\u200b {chr(code)}") and _crud_refused(f"\u200b {chr(code)}")
        assert not _crud_refused(f"a{chr(code)}")


@pytest.mark.parametrize(
    "created_at",
    [
        datetime.min.replace(tzinfo=UTC),
        datetime(1600, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2300, 1, 1, tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
    ],
)
def test_every_cursor_the_server_makes_decodes_and_follows_the_document(created_at) -> None:
    # Any time the server reads back (years 1 to 9999): 17 digits were refused.
    cursor = Cursor(created_at, uuid.uuid4())
    text = cursor.encode()
    assert re.fullmatch(SCHEMAS["Cursor"]["pattern"], text)
    assert Cursor.decode(text) == cursor


@pytest.mark.parametrize(
    "micros",
    ["253402300800000000", "-62135596800000001", "999999999999999999", "687646315249496037",
     "-758300705457504214", "0123", "-0123"],
)  # fmt: skip
def test_a_cursor_past_any_time_the_server_reads_is_refused_by_both(micros: str) -> None:
    # Any 18 digits matched the document, so schemathesis with other seeds found
    # schema-valid cursors the server refused (a year past 9999).
    text = f"{micros}_{uuid.uuid4()}"
    assert re.fullmatch(SCHEMAS["Cursor"]["pattern"], text) is None
    with pytest.raises(BadPageRequest):
        Cursor.decode(text)


def test_the_cursors_pattern_admits_exactly_the_times_the_server_reads() -> None:
    earliest, latest = -62135596800000000, 253402300799999999
    rng = random.Random(7)
    numbers = [0, 1, 9, 10, -1, earliest, latest, earliest - 1, latest + 1]
    numbers += [rng.randrange(earliest * 2, latest * 2) for _ in range(5000)]
    numbers += [int(str(latest)[:width]) + shift for width in range(1, 19) for shift in (-1, 0, 1)]
    for micros in numbers:
        text = f"{micros}_5acca6ba-fca3-44f5-beec-c16123455e3c"
        assert (re.fullmatch(SCHEMAS["Cursor"]["pattern"], text) is not None) == (
            earliest <= micros <= latest
        ), micros


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("0", False),
        ("5acca6ba-fca3-44f5-beec-c16123455e3c", True),
        ("5ACCA6BA-FCA3-44F5-BEEC-C16123455E3C", True),
        ("5acca6bafca344f5beecc16123455e3c", False),  # UUID() takes it; the document does not
        ("{5acca6ba-fca3-44f5-beec-c16123455e3c}", False),
        ("urn:uuid:5acca6ba-fca3-44f5-beec-c16123455e3c", False),
        ("5acca6ba-fca3-44f5-beec-c16123455e3c\n", False),
    ],
)
def test_uuids_and_cursors_follow_the_document(text: str, valid: bool) -> None:
    uuid_pattern = DOCUMENT["components"]["parameters"]["ActivityUuid"]["schema"]["pattern"]
    assert (re.fullmatch(uuid_pattern, text) is not None) == valid
    assert (parse_uuid(text) is not None) == valid
    cursor = f"1764660000000000_{text}"
    assert (re.fullmatch(SCHEMAS["Cursor"]["pattern"], cursor) is not None) == valid
    try:
        Cursor.decode(cursor)
    except ValueError:
        assert not valid
    else:
        assert valid


@pytest.mark.parametrize(
    "path",
    [
        "/api/activities/home?before=__main__",
        "/api/activities/home?before=",
        "/api/activities/home?before=%D9%A1_5acca6ba-fca3-44f5-beec-c16123455e3c",  # Arabic 1
        "/api/activities/home?before=-99999999999999999_5acca6ba-fca3-44f5-beec-c16123455e3c",
        "/api/activities/5acca6bafca344f5beecc16123455e3c",
    ],
)
def test_what_the_document_refuses_the_server_refuses(api, path: str) -> None:
    assert api.get(path).status_code == 400


def test_schemathesis_finds_nothing_against_cruddur_serve(served: Served, tmp_path) -> None:
    token = served.token("andrewbrown")
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{served.base}/api/openapi.yaml",
        # Every check but one: given invalid data, the API may still answer 2xx when the
        # only fault is a query parameter it does not know, which it ignores on purpose
        # (cache-busters) and which OpenAPI 3.0 cannot forbid. Invalid values of known
        # parameters are refused (test_what_the_document_refuses_the_server_refuses).
        "--checks", "all", "--exclude-checks", "negative_data_rejection", "--mode", "all",
        "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "20261202",
        "--generation-database", "none", "--request-timeout", "10",
        "--header", f"Authorization: Bearer {token}", "--no-color",
    ]  # fmt: skip
    hooks = Path(__file__).with_name("schemathesis_hooks.py")  # a fresh Idempotency-Key each
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(hooks)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "No issues found" in output
    # Every operation it found was tested (it leaves out the document's own URL).
    counts = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert counts, output[-2000:]
    selected, total, tested = map(int, counts.groups())
    assert selected == total == tested >= len(DOCUMENT["paths"]) - 1
