"""Access tokens already verified, so the same token's RSA check is not done again.

A client sends the same access token with every request for up to an hour; checking its
RS256 signature each time is most of a write's CPU in this process. An entry is keyed by
the SHA-256 of the token (the token itself is never kept) and holds its claims and the
key that verified it. It is used only:
- before the token's own `exp` (no leeway: the full check accepts a little past `exp`,
  so the cache never lets a token live longer than it would without it);
- while the issuer's key set still holds that very key object: a refetch of the keys (a
  rotation, a revoked key) makes every entry re-verified the full way.
Malformed, forged and expired tokens are never stored: only what passed the full check.
The cache is bounded; when full, the least recently used entry goes.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_ENTRIES = 4096


@dataclass(frozen=True)
class Verified:
    claims: dict[str, Any]
    kid: str
    key: Any  # the PyJWK that verified the signature
    expires_at: float  # the token's exp, seconds since the epoch


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class VerifiedTokens:
    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, Verified] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes) -> Verified | None:
        """The entry for this token digest, if it is there and the token has not expired."""
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if self._clock() >= entry.expires_at:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return entry

    def put(self, digest: bytes, entry: Verified) -> None:
        if self._clock() >= entry.expires_at:
            return
        with self._lock:
            self._entries[digest] = entry
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, digest: bytes) -> None:
        with self._lock:
            self._entries.pop(digest, None)
