"""X-Read-After, signed and short-lived: a write's WAL position, when the value stops
counting, and an HMAC of both, so that only values this service gave are taken back,
and only while they matter.

Unsigned, any client could send a position far ahead of the primary's: no replica ever
replays that far, so each of its reads went to the primary, and past the feed's kept
first page. With a replica serving reads, anyone could put the whole read load back on
the primary. Signed, a read's header is a position a write was answered with or a 400;
and past its window (`read_after_seconds`, as long as the web page sends it: by then a
read without it shows the write) it counts for nothing, so one genuine value replayed
for ever does not keep reads off the kept page, or on the primary while the replica is
out of use.

Every worker, and every instance behind one load balancer, must sign with the same key:
CRUDDUR_READ_AFTER_KEY when set, else one that `cruddur serve` makes for its workers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time

from cruddur.db.replication import parse_lsn

KEY_SETTING = "CRUDDUR_READ_AFTER_KEY"  # 32 characters or more (config.ReplicaSettings)
# base64url characters of the HMAC-SHA256 kept: 132 bits, more than a guess can find.
TAG_LENGTH = 22
_MOST_DIGITS = 12  # of the expiry, a Unix time in seconds


class InvalidReadAfter(ValueError):
    """A header value this service did not sign (or not with this key)."""


def new_key() -> str:
    """A random key, for one server's workers when no key is set."""
    return secrets.token_urlsafe(32)


class ReadAfterSigner:
    """Signs the positions a write answers with, and reads them back from reads."""

    def __init__(self, key: str, window_seconds: float) -> None:
        self._key = key.encode()
        self.window_seconds = window_seconds

    def sign(self, position: str, now: float | None = None) -> str:
        """`position` (0/16B3748) as the header's value: 0/16B3748.<expiry>.<tag>."""
        now = time.time() if now is None else now
        signed = f"{position}.{math.ceil(now + self.window_seconds)}"
        return f"{signed}.{self._tag(signed)}"

    def position(self, value: str, now: float | None = None) -> int | None:
        """The WAL position of a value `sign` made with this key; None once it has expired
        (the read then needs no care). InvalidReadAfter for anything else."""
        signed, dot, tag = value.strip().rpartition(".")
        position, _, expiry = signed.rpartition(".")
        if (
            not dot
            or len(tag) != TAG_LENGTH
            or not (tag.isascii() and signed.isascii())
            or not (expiry.isdigit() and len(expiry) <= _MOST_DIGITS)
            or not hmac.compare_digest(tag, self._tag(signed))
        ):
            raise InvalidReadAfter(value)
        lsn = parse_lsn(position)
        if lsn is None:
            raise InvalidReadAfter(value)
        return lsn if (time.time() if now is None else now) < int(expiry) else None

    def _tag(self, signed: str) -> str:
        digest = hmac.digest(self._key, signed.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest)[:TAG_LENGTH].decode()
