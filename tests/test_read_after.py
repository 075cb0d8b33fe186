"""X-Read-After's signature and window (api/read_after.py), without a database; the
reads it steers, against a real replica: test_replicas.py."""

from __future__ import annotations

import pytest

from cruddur.api.read_after import InvalidReadAfter, ReadAfterSigner
from cruddur.db.replication import parse_lsn

NOW = 1_800_000_000.0


def test_a_signed_position_reads_back_within_its_window_only() -> None:
    signer = ReadAfterSigner("k" * 40, window_seconds=12)
    value = signer.sign("0/16B3748", now=NOW)
    assert value.startswith(f"0/16B3748.{int(NOW) + 12}.")
    assert signer.position(value, now=NOW) == parse_lsn("0/16B3748")
    assert signer.position(f"  {value} ", now=NOW + 11.9) == parse_lsn("0/16B3748")
    assert signer.position(value, now=NOW + 12) is None  # past it: as if not sent
    # Another instance with the same key reads it; one with another key refuses it.
    assert ReadAfterSigner("k" * 40, 5).position(value, now=NOW) == parse_lsn("0/16B3748")
    with pytest.raises(InvalidReadAfter):
        ReadAfterSigner("o" * 40, 12).position(value, now=NOW)


@pytest.mark.parametrize(
    "change",
    [
        lambda v: v.replace("0/16B3748", "0/16B3749"),  # another position
        lambda v: v.replace(".1800000012.", ".1800003600."),  # a later expiry
        lambda v: v[:-1] + ("A" if v[-1] != "A" else "B"),  # another signature
        lambda v: v.rpartition(".")[0],  # no signature
        lambda v: v.split(".")[0],  # the position alone (the old header)
        lambda v: v + "A",
        # digits, but not ASCII ones (str.isdigit takes them)
        lambda v: v.replace(".1800000012.", ".\uff11\uff18" + "\uff10" * 6 + "\uff11\uff12."),
        lambda v: "é" * len(v),
        lambda v: "",
    ],
)
def test_anything_but_a_value_it_signed_is_refused(change) -> None:
    signer = ReadAfterSigner("k" * 40, window_seconds=12)
    value = signer.sign("0/16B3748", now=NOW)
    with pytest.raises(InvalidReadAfter):
        signer.position(change(value), now=NOW)
