"""The token issuer's public keys (a JWKS), fetched once and kept.

A token whose `kid` is not among them makes one refetch (Cognito rotates keys), but at
most once per `min_refresh` seconds, so junk tokens cannot make the service hammer the
issuer. A fetch that failed is tried again after `retry_after_failure` seconds, and until
then a key that is not known is "unavailable" (503), not "unknown" (401): the token may
be fine. Works with https:// (Cognito), http:// (moto, tests) and file:// (dev keys).
A redirect is refused (unavailable): the keys come from the configured URL or nowhere,
not from wherever its answer points (another host, or http:// after https://).

An issuer that answers slowly must not hold the service: one thread fetches at a time,
within `timeout` seconds for the body (the connection and each read of the headers wait
`timeout` at most: urllib gives no hold on them), at most MAX_BYTES of it. While it
does, a thread that also needs a key it lacks waits only when the service has no keys
yet (start-up), and then `timeout` at most; otherwise it is
told "unavailable" at once. The retry clock starts when a fetch ends: one that took
its whole time used to be followed at once by the next thread's, one after another.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

import jwt

from cruddur.config import redact_endpoint

MAX_BYTES = 64 * 1024  # Cognito's JWKS is ~1 kB; a bigger answer is not one


class KeysUnavailable(RuntimeError):
    """The JWKS could not be fetched or read; tokens cannot be checked right now."""


class UnknownKey(LookupError):
    """The token names a key the issuer does not publish."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handler, refusing every redirect: followed, a key set URL that
    answered 302 took its signing keys from the other place, and tokens signed with those
    were accepted for any user."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str):
        fp.close()
        raise KeysUnavailable(
            f"the token keys at {redact_endpoint(req.full_url)} answered {code}, a redirect: "
            "the keys are read from the configured URL only (set it to where they are)"
        )


_OPENER = urllib.request.build_opener(_NoRedirects)  # urlopen's handlers, redirects refused


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
        # In messages, which go to the log: without a query or user and password (a
        # presigned URL's signature rides in its query).
        self.shown = redact_endpoint(url)
        parts = urllib.parse.urlsplit(url)
        # What an error's own text may repeat of them (urllib's quotes the path and query).
        self._secrets = [s for s in (parts.query, parts.password, parts.username) if s]
        self.timeout = timeout
        self.min_refresh = min_refresh
        self.retry_after_failure = retry_after_failure
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._failure: str | None = None  # why the last fetch failed; None after a success
        self._lock = threading.Lock()

    def _fetch(self) -> dict[str, Any]:
        try:
            document = json.loads(self._read())
            if not isinstance(document, dict):  # PyJWKSet fails on it with AttributeError
                raise ValueError(f"a JSON {type(document).__name__}, not a key set")
            key_set = jwt.PyJWKSet.from_dict(document)
        except KeysUnavailable:
            raise
        except Exception as exc:  # whatever the answer was (deeply nested: RecursionError)
            raise KeysUnavailable(
                f"cannot read the token keys at {self.shown}: {self._without_secrets(exc)}"
            ) from exc
        return {key.key_id: key for key in key_set.keys if key.key_id}

    def _without_secrets(self, exc: BaseException) -> str:
        said = str(exc)
        for secret in self._secrets:
            said = said.replace(secret, "…")
        return said

    def _read(self) -> bytes:
        """The answer's body, within `timeout` for all of it (a socket timeout bounds
        each read only: a body dripping a byte a second took 40 s) and MAX_BYTES."""
        deadline = time.monotonic() + self.timeout
        chunks: list[bytes] = []
        size = 0
        with _OPENER.open(self.url, timeout=self.timeout) as response:
            while chunk := response.read1(8192):  # what has come, not 8 kB
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BYTES:
                    raise KeysUnavailable(
                        f"the token keys at {self.shown} are over {MAX_BYTES // 1024} kB"
                    )
                if time.monotonic() > deadline:
                    raise KeysUnavailable(
                        f"the token keys at {self.shown} took over {self.timeout:g} s to arrive"
                    )
        return b"".join(chunks)

    def get(self, kid: str) -> Any:
        """The key (a PyJWK) with this id."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        # Waits for a fetch under way only with no keys at all (start-up), up to its bound.
        if not self._lock.acquire(timeout=self.timeout if not self._keys else 0):
            raise KeysUnavailable(f"the token keys at {self.shown} are being fetched")
        try:
            key = self._keys.get(kid)
            wait = self.min_refresh if self._failure is None else self.retry_after_failure
            due = self._fetched_at is None or time.monotonic() - self._fetched_at >= wait
            if key is None and due:
                try:
                    self._keys = self._fetch()
                except KeysUnavailable as exc:
                    self._failure = str(exc)
                    raise
                finally:
                    self._fetched_at = time.monotonic()  # from its end
                self._failure = None
                key = self._keys.get(kid)
            if key is None and self._failure is not None:
                raise KeysUnavailable(self._failure)
        finally:
            self._lock.release()
        if key is None:
            raise UnknownKey(kid)
        return key
