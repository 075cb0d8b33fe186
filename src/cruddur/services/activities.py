"""The activity use cases: feeds, one crud with its replies, new cruds and replies.

Each runs one named SQL file; PostgreSQL builds the JSON, and it is returned as the UTF-8
bytes PostgreSQL sent (binary results), ready to go out as a response body.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from cruddur.db import Db, template
from cruddur.services.paging import Cursor, Page, PageRequest, RepliesRequest
from cruddur.services.users import Author, AuthorGone
from cruddur.telemetry.spans import use_case

# The columns every page query gives first, in this order (newest_first.sql, show.sql),
# then one of its own (OWN_COLUMN: first_expiry, user_found). Read by position: a
# named-tuple row costs a type lookup and the column names on every page.
PAGE_COLUMNS = ("body", "has_more", "last_created_at", "last_uuid")
OWN_COLUMN = len(PAGE_COLUMNS)


def _page_row(db: Db, name: str, params: dict[str, Any]) -> tuple | None:
    """The one row of a page query (PAGE_COLUMNS, then the query's own), with the body as
    bytes (binary results)."""
    return db.query_row(template("activities", name), params, binary=True)


def _page(row: tuple) -> Page:
    body, has_more, last_created_at, last_uuid = row[:OWN_COLUMN]
    return Page(body, Cursor(last_created_at, last_uuid) if has_more else None)


# What the use-case spans say (telemetry/spans.py), computed only for a sampled span.
def _length(page: Page | None, limit: int, key: str | None = None) -> int | None:
    if page is None:
        return None
    if page.next is not None:
        return limit  # a full page; no need to read the body
    body = json.loads(page.body)
    return len(body[key] if key else body)


def _feed_span(page: Page | None, db: Db, *args: object) -> dict[str, object]:
    wanted = args[-1]
    assert isinstance(wanted, PageRequest)
    return {
        "app.page_limit": wanted.limit,
        "app.result_length": _length(page, wanted.limit),
        "app.has_more": None if page is None else page.next is not None,
        "app.found": page is not None,
    }


def _show_span(
    page: Page | None, db: Db, activity_uuid: UUID, replies: RepliesRequest
) -> dict[str, object]:
    return {
        "app.activity_uuid": str(activity_uuid),
        "app.page_limit": replies.limit,
        "app.result_length": _length(page, replies.limit, "replies"),
        "app.has_more": None if page is None else page.next is not None,
        "app.found": page is not None,
    }


# A write's span says whose it is (and the parent of a reply) from the start, so a write
# that fails says so too; what it found once it ran, after.
def _write_span(db: Db, author: Author, *args: object) -> dict[str, object]:
    return {"app.author_uuid": str(author.uuid)}


def _reply_write_span(
    db: Db, author: Author, parent_uuid: UUID, *args: object
) -> dict[str, object]:
    return {"app.author_uuid": str(author.uuid), "app.parent_uuid": str(parent_uuid)}


def _reply_span(created: str | None, *args: object) -> dict[str, object]:
    return {"app.found": created is not None}


@use_case("home-activities", _feed_span)
def home_feed(db: Db, page: PageRequest) -> Page:
    """Unexpired cruds of everyone, newest first."""
    row = _page_row(db, "home", page.params())
    assert row is not None  # one row, always (FROM one_row)
    return _page(row)


def _first_page_span(kept: tuple[Page, datetime | None], db: Db, limit: int) -> dict:
    page = kept[0]
    return {
        "app.page_limit": limit,
        "app.result_length": _length(page, limit),
        "app.has_more": page.next is not None,
    }


@use_case("home-activities-first-page", _first_page_span)
def home_first_page(db: Db, limit: int) -> tuple[Page, datetime | None]:
    """The home feed's first page, and when it next changes by itself (the earliest
    expiry on it; None when empty): what services/feed_cache.py keeps."""
    row = _page_row(db, "home", PageRequest(limit).params())
    assert row is not None  # one row, always (FROM one_row)
    return _page(row), row[OWN_COLUMN]  # first_expiry


@use_case("user-activities", _feed_span)
def user_feed(db: Db, handle: str, page: PageRequest) -> Page | None:
    """One user's unexpired cruds, newest first; None when no user has that handle."""
    row = _page_row(db, "user_feed", {"handle": handle, **page.params()})
    assert row is not None  # one row, always
    return _page(row) if row[OWN_COLUMN] else None  # user_found


@use_case("show-activity", _show_span)
def show_activity(db: Db, activity_uuid: UUID, replies: RepliesRequest) -> Page | None:
    """{"activity": …, "replies": […]} with a page of replies; None when missing or expired."""
    row = _page_row(db, "show", {"uuid": activity_uuid, **replies.params()})
    return _page(row) if row is not None else None


def _author_params(author: Author) -> dict[str, Any]:
    return {"user_uuid": author.uuid, "cognito_user_id": author.cognito_user_id}


def _written(db: Db, name: str, params: dict[str, Any]) -> str | None:
    """The write `name`'s JSON, None when it wrote nothing (a reply's parent missing), or
    AuthorGone when it found no author (db/sql/activities/writer.sql): its only row is
    the author's, so no row at all is that."""
    row = db.query_commit_row(template("activities", name), params)
    if row is None:
        raise AuthorGone(params["user_uuid"])
    return row[0]


@use_case("create-activity", given=_write_span)
def create_activity(db: Db, author: Author, message: str, ttl: timedelta) -> str:
    """The new crud as JSON text; AuthorGone when the author's row is not there (any more)."""
    created = _written(db, "create", {**_author_params(author), "message": message, "ttl": ttl})
    assert created is not None  # an insert, always, once the author is there
    return created


@use_case("create-reply", _reply_span, given=_reply_write_span)
def create_reply(db: Db, author: Author, parent_uuid: UUID, message: str) -> str | None:
    """The new reply as JSON text; None when the parent is missing or expired; AuthorGone
    when the author's row is not there (any more)."""
    params = {**_author_params(author), "parent_uuid": parent_uuid, "message": message}
    return _written(db, "reply", params)


# -- writes with an Idempotency-Key -----------------------------------------------------

KEY_CONSTRAINT = "idempotency_keys_pkey"


@dataclass(frozen=True)
class IdempotencyKey:
    """A caller's Idempotency-Key and what its request asked for (`fingerprint`): the
    method, the path and the body's fields as parsed, so a retry whose JSON is spelled
    differently (spaces, key order) is the same request."""

    key: str
    fingerprint: bytes

    @classmethod
    def of(cls, key: str, method: str, path: str, *fields: object) -> IdempotencyKey:
        request = json.dumps([method, path, *fields], separators=(",", ":"))
        return cls(key, hashlib.sha256(request.encode()).digest())


class KeyReused(ValueError):
    """The key was used for another request (another body or endpoint): nothing stored."""


@dataclass(frozen=True)
class Written:
    """A keyed write's answer: the row's JSON, and whether it is the first attempt's,
    kept under the key (`replayed`) rather than written now."""

    body: str
    replayed: bool = False


def _keyed_write(db: Db, name: str, params: dict[str, Any], key: IdempotencyKey) -> Written | None:
    """The keyed write `name` (create_keyed.sql, reply_keyed.sql), or the answer kept under
    the key when it was used before; None when the write found nothing to write to;
    AuthorGone when it found no author (nothing kept for the key)."""
    params = {**params, "key": key.key, "fingerprint": key.fingerprint}
    for _ in (1, 2):
        try:
            body = _written(db, name, params)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != KEY_CONSTRAINT:
                raise
        except psycopg.errors.ReadOnlySqlTransaction:
            # A retry of a write stored before the database went read-only is answered
            # as it was: its answer is read, not written. Any other stays refused.
            kept = _kept_answer(db, params["user_uuid"], key)
            if kept is None:
                raise
            return kept
        else:
            if body is None:
                # Nothing to write to (a reply's crud expired or gone): a retry of a reply
                # stored before that is still answered as it was; any other, a 404.
                return _kept_answer(db, params["user_uuid"], key)
            return Written(body)
        # The key is taken, by a write that has committed (the statement waited for it):
        # answer as it was answered. Nothing of this attempt was stored.
        kept = _kept_answer(db, params["user_uuid"], key)
        if kept is not None:
            return kept
        # Gone since (expired, and deleted by another keyed write): write again, once.
    # Not the key's value: a traced write records the exception's text.
    raise RuntimeError("an Idempotency-Key came and went twice")


def _kept_answer(db: Db, user_uuid: UUID, key: IdempotencyKey) -> Written | None:
    """The answer kept under the caller's unexpired key, None when there is none;
    KeyReused when it was kept for another request."""
    kept = db.query_row(
        template("activities", "kept_key"), {"user_uuid": user_uuid, "key": key.key}
    )
    if kept is None:
        return None
    fingerprint, response = kept
    if bytes(fingerprint) != key.fingerprint:
        raise KeyReused()  # not the key: a traced write records the exception's text
    return Written(response, replayed=True)


def _keyed_span(written: Written | None, *args: object) -> dict:
    return {
        "app.found": written is not None,
        "app.replayed": None if written is None else written.replayed,
    }


@use_case("create-activity", _keyed_span, given=_write_span)
def create_activity_once(
    db: Db, author: Author, message: str, ttl: timedelta, key: IdempotencyKey
) -> Written:
    """create_activity, at most once per (user, key): a retry gets the first answer."""
    params = {**_author_params(author), "message": message, "ttl": ttl}
    written = _keyed_write(db, "create_keyed", params, key)
    assert written is not None  # an insert, always
    return written


@use_case("create-reply", _keyed_span, given=_reply_write_span)
def create_reply_once(
    db: Db, author: Author, parent_uuid: UUID, message: str, key: IdempotencyKey
) -> Written | None:
    """create_reply, at most once per (user, key); None when the parent is missing or
    expired (nothing is kept for the key)."""
    params = {**_author_params(author), "parent_uuid": parent_uuid, "message": message}
    return _keyed_write(db, "reply_keyed", params, key)
