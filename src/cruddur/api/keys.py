"""The token issuer's public keys (a JWKS), fetched once and kept.

A token whose `kid` is not among them makes one refetch (Cognito rotates keys), but at
most once per `min_refresh` seconds, so junk tokens cannot make the service hammer the
issuer. A fetch that failed is tried again after `retry_after_failure` seconds, and until
then a key that is not known is "unavailable" (503), not "unknown" (401): the token may
be fine. Works with https:// (Cognito), http:// (moto, tests) and file:// (dev keys).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import jwt


class KeysUnavailable(RuntimeError):
    """The JWKS could not be fetched or read; tokens cannot be checked right now."""


class UnknownKey(LookupError):
    """The token names a key the issuer does not publish."""


class KeySet:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 3.0,
        min_refresh: float = 60.0,
        retry_after_failure: float = 5.0,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.min_refresh = min_refresh
        self.retry_after_failure = retry_after_failure
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._failure: str | None = None  # why the last fetch failed; None after a success
        self._lock = threading.Lock()

    def _fetch(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                document = json.load(response)
            key_set = jwt.PyJWKSet.from_dict(document)
        except (OSError, ValueError, jwt.PyJWKSetError) as exc:
            raise KeysUnavailable(f"cannot read the token keys at {self.url}: {exc}") from exc
        return {key.key_id: key for key in key_set.keys if key.key_id}

    def get(self, kid: str) -> Any:
        """The key (a PyJWK) with this id."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            key = self._keys.get(kid)
            now = time.monotonic()
            wait = self.min_refresh if self._failure is None else self.retry_after_failure
            if key is None and (self._fetched_at is None or now - self._fetched_at >= wait):
                self._fetched_at = now
                try:
                    self._keys = self._fetch()
                except KeysUnavailable as exc:
                    self._failure = str(exc)
                    raise
                self._failure = None
                key = self._keys.get(kid)
            if key is None and self._failure is not None:
                raise KeysUnavailable(self._failure)
        if key is None:
            raise UnknownKey(kid)
        return key
