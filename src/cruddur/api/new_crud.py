"""`POST /api/activities`, a new crud, answered without Flask when nothing is wrong.

A create through Flask spent ~40% of its Python on the request context, URL matching,
hooks and the Response (cProfile), for a request whose answer is one INSERT's JSON and
a few headers. `NewCrud` takes only the plainest case, and gives every other to the app
before anything happens that cannot happen twice:

- anything it does not check itself (another content type than application/json, a
  chunked or oversized body, no bearer token, an Idempotency-Key) goes to the app
  untouched;
- a token refused, a dev token from elsewhere, a caller whose user uuid this worker has
  not looked up yet, a body that is not a valid crud: to the app, which checks again and
  answers, logs and counts it as it always has (the body, once read, is handed on in a
  new stream);
- a failure once it is reading the body or writing (a slow reader's 503, a client gone,
  the database down): to the app with the exception under FAILED_WITHOUT_FLASK_KEY,
  which the activities blueprint raises before its view runs, so the answer is the app's
  own and nothing is written twice.

tests/test_api_new_crud.py sends each case both ways and compares the answers.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from cruddur.api.activities import (
    CREATE_PATH,
    FAILED_WITHOUT_FLASK_KEY,
    IDEMPOTENCY_KEY,
    JSON,
    after_write,
)
from cruddur.api.auth import InvalidToken, TokenVerifier, bearer_token, no_user
from cruddur.api.bodies import (
    JSON_DECODER,
    UTF8_CHARSETS,
    BodyReaders,
    declared_length,
    named_charsets,
    read_declared,
)
from cruddur.api.db import PRIMARY_KEY
from cruddur.api.dev_sign_in import local_caller
from cruddur.api.keys import KeysUnavailable
from cruddur.services import activities
from cruddur.services.users import Authors, UnknownAuthor
from cruddur.services.validation import ValidationFailed, validate_crud
from cruddur.telemetry.requests import ROUTE_KEY, USER_UUID_KEY

CREATED = "201 CREATED"


class NewCrud:
    """WSGI middleware: a valid `POST /api/activities` from a known caller, without Flask."""

    def __init__(self, app: Any, extensions: dict[str, Any], max_body: int) -> None:
        self.app = app
        self.extensions = extensions
        self.verifier: TokenVerifier = extensions["cruddur.verifier"]
        self.authors: Authors = extensions["cruddur.authors"]
        self.body_readers: BodyReaders | None = extensions.get("cruddur.body_readers")
        self.max_body = max_body

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != CREATE_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        environ[ROUTE_KEY] = CREATE_PATH  # the route's template, for the request log
        try:
            created = self._create(environ)
        except Exception as exc:  # reading or writing failed: the app answers it
            environ[FAILED_WITHOUT_FLASK_KEY] = exc
            return self.app(environ, start_response)
        if created is None:
            return self.app(environ, start_response)
        body, headers = created
        start_response(CREATED, headers)
        return [body]

    def _create(self, environ: dict[str, Any]) -> tuple[bytes, list[tuple[str, str]]] | None:
        """The 201's body and headers, or None when the app is to take the request as it
        is (nothing has been written)."""
        if IDEMPOTENCY_KEY in environ:  # a keyed write: the view keeps it to one row
            return None
        length = self._declared_length(environ)
        if length is None:
            return None
        subject = self._caller(environ)
        if subject is None:
            return None
        author = self.authors.known(subject)
        if author is None:  # the app looks it up (a round trip) and keeps it
            return None
        # For the log line, as @signed_in does: before the body is read, which may fail.
        environ[USER_UUID_KEY] = author
        read = _reader(environ["wsgi.input"], length, self.max_body)
        raw = self.body_readers.read(read) if self.body_readers is not None else read()
        environ["wsgi.input"] = io.BytesIO(raw)  # for the app, if it takes over
        try:
            fields = JSON_DECODER.decode(raw.decode())
            if not isinstance(fields, dict):
                return None
            message, ttl = validate_crud(fields)
        except (ValueError, RecursionError, ValidationFailed):
            # Not UTF-8, not JSON, too deep, not a valid crud: the app's bodies.py and
            # validation say which.
            return None
        db = self.extensions[PRIMARY_KEY].get()
        try:
            created = self.authors.write_as(
                db, subject, lambda author: activities.create_activity(db, author, message, ttl)
            )
        except UnknownAuthor:
            raise no_user() from None
        body = created.encode()
        headers = [("Content-Type", JSON), ("Content-Length", str(len(body)))]
        return body, headers + after_write(self.extensions, created)

    def _declared_length(self, environ: dict[str, Any]) -> int | None:
        """The body's Content-Length when it is UTF-8 JSON, uncompressed, plainly framed
        and within the limit. Anything else goes to the app, whose require_json decides."""
        kind = environ.get("CONTENT_TYPE", "")
        if kind != JSON and not _utf8_json(kind):
            return None
        encoding = environ.get("HTTP_CONTENT_ENCODING")  # rarely sent: one lookup then
        if encoding is not None and encoding.strip().lower() != "identity":
            return None
        length = declared_length(environ)
        return length if length is not None and length <= self.max_body else None

    def _caller(self, environ: dict[str, Any]) -> str | None:
        """The verified token's subject, or None for the app to refuse (and count) it."""
        verifier = self.verifier
        if verifier.settings.dev and not local_caller(environ):
            return None
        token = bearer_token(environ)
        if token is None:
            return None
        try:
            return verifier.verify(token)["sub"]
        except (InvalidToken, KeysUnavailable):
            return None


def _utf8_json(kind: str) -> bool:
    """`kind` is application/json with no parameter but one UTF-8 charset, read as the
    view's require_json reads it (a value quoted on one side only once passed here, and
    the view refused it: a 201 from one path, a 415 from the other). A body declared
    ASCII goes to the view, which checks that it is."""
    media, _, params = kind.partition(";")
    if media.strip().lower() != JSON:
        return False
    if not params.strip():
        return True
    name, _, value = params.partition("=")
    if name.strip().lower() != "charset" or ";" in value:
        return False
    named = named_charsets(kind)
    return len(named) == 1 and named[0] in UTF8_CHARSETS


def _reader(stream: Any, length: int, limit: int) -> Callable[[], bytes]:
    return lambda: read_declared(stream, length, limit)
