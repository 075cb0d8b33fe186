"""X-Read-After, signed: a write's WAL position with an HMAC of it, so that only values
this service gave are taken back.

Unsigned, any client could send a position far ahead of the primary's: no replica ever
replays that far, so each of its reads went to the primary, and past the feed's kept
first page. With a replica serving reads, anyone could put the whole read load back on
the primary. Signed, a read's header is either a position a write was answered with
(and the replica is skipped only until it replays that far) or a 400.

Every worker, and every instance behind one load balancer, must sign with the same key:
CRUDDUR_READ_AFTER_KEY when set, else one that `cruddur serve` makes for its workers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cruddur.db.replication import parse_lsn

KEY_SETTING = "CRUDDUR_READ_AFTER_KEY"
KEY_MIN_LENGTH = 32  # characters: `openssl rand -hex 32` gives 64
# base64url characters of the HMAC-SHA256 kept: 132 bits, more than a guess can find.
TAG_LENGTH = 22


def new_key() -> str:
    """A random key, for one server's workers when no key is set."""
    return secrets.token_urlsafe(32)


class ReadAfterSigner:
    """Signs the positions a write answers with, and reads them back from reads."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def sign(self, position: str) -> str:
        """`position` (0/16B3748) as the header's value: 0/16B3748.<tag>."""
        return f"{position}.{self._tag(position)}"

    def position(self, value: str) -> int | None:
        """The WAL position of a value `sign` made with this key, else None."""
        position, dot, tag = value.strip().rpartition(".")
        if not dot or len(tag) != TAG_LENGTH or not tag.isascii() or not position.isascii():
            return None
        if not hmac.compare_digest(tag, self._tag(position)):
            return None
        return parse_lsn(position)

    def _tag(self, position: str) -> str:
        digest = hmac.digest(self._key, position.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest)[:TAG_LENGTH].decode()
