"""The activity use cases: feeds, one crud with its replies, new cruds and replies.

Each runs one named SQL file; PostgreSQL builds the JSON, and it is returned as the UTF-8
bytes PostgreSQL sent (binary results), ready to go out as a response body.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.rows import namedtuple_row

from cruddur.db import Db, template
from cruddur.services.paging import Cursor, Page, PageRequest, RepliesRequest
from cruddur.telemetry.spans import use_case


def _page_row(db: Db, name: str, params: dict[str, Any]) -> Any:
    """The one row of a page query, by column name (body, has_more, last_created_at,
    last_uuid, and the query's own), with the body as bytes (binary results)."""
    return db.query_row(template("activities", name), params, namedtuple_row, binary=True)


def _page(row: Any) -> Page:
    more = Cursor(row.last_created_at, row.last_uuid) if row.has_more else None
    return Page(row.body, more)


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


def _create_span(created: str, db: Db, user_uuid: UUID, *args: object) -> dict[str, object]:
    return {"app.author_uuid": str(user_uuid)}


def _reply_span(
    created: str | None, db: Db, user_uuid: UUID, parent_uuid: UUID, message: str
) -> dict[str, object]:
    return {
        "app.author_uuid": str(user_uuid),
        "app.parent_uuid": str(parent_uuid),
        "app.found": created is not None,
    }


@use_case("home-activities", _feed_span)
def home_feed(db: Db, page: PageRequest) -> Page:
    """Unexpired cruds of everyone, newest first."""
    return _page(_page_row(db, "home", page.params()))


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
    return _page(row), row.first_expiry


@use_case("user-activities", _feed_span)
def user_feed(db: Db, handle: str, page: PageRequest) -> Page | None:
    """One user's unexpired cruds, newest first; None when no user has that handle."""
    row = _page_row(db, "user_feed", {"handle": handle, **page.params()})
    return _page(row) if row.user_found else None


@use_case("show-activity", _show_span)
def show_activity(db: Db, activity_uuid: UUID, replies: RepliesRequest) -> Page | None:
    """{"activity": …, "replies": […]} with a page of replies; None when missing or expired."""
    row = _page_row(db, "show", {"uuid": activity_uuid, **replies.params()})
    return _page(row) if row is not None else None


@use_case("create-activity", _create_span)
def create_activity(db: Db, user_uuid: UUID, message: str, ttl: timedelta) -> str:
    """The new crud as JSON text."""
    return db.query_commit(
        template("activities", "create"), {"user_uuid": user_uuid, "message": message, "ttl": ttl}
    )


@use_case("create-reply", _reply_span)
def create_reply(db: Db, user_uuid: UUID, parent_uuid: UUID, message: str) -> str | None:
    """The new reply as JSON text; None when the parent is missing or expired."""
    return db.query_commit(
        template("activities", "reply"),
        {"user_uuid": user_uuid, "parent_uuid": parent_uuid, "message": message},
    )
