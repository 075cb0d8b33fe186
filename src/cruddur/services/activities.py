"""The activity use cases: feeds, one crud with its replies, new cruds and replies.

Each runs one named SQL file; PostgreSQL builds the JSON and it is returned as text.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from cruddur.db import Db, template
from cruddur.services.paging import Cursor, Page, PageRequest, RepliesRequest


def _page(row: tuple) -> Page:
    body, has_more, last_created_at, last_uuid = row[:4]
    return Page(body, Cursor(last_created_at, last_uuid) if has_more else None)


def home_feed(db: Db, page: PageRequest) -> Page:
    """Unexpired cruds of everyone, newest first."""
    (row,) = db.query_rows(template("activities", "home"), page.params())
    return _page(row)


def user_feed(db: Db, handle: str, page: PageRequest) -> Page | None:
    """One user's unexpired cruds, newest first; None when no user has that handle."""
    (row,) = db.query_rows(template("activities", "user_feed"), {"handle": handle, **page.params()})
    return _page(row) if row[4] else None


def show_activity(db: Db, activity_uuid: UUID, replies: RepliesRequest) -> Page | None:
    """{"activity": …, "replies": […]} with a page of replies; None when missing or expired."""
    params = {"uuid": activity_uuid, **replies.params()}
    rows = db.query_rows(template("activities", "show"), params)
    return _page(rows[0]) if rows else None


def user_for_token_subject(db: Db, cognito_user_id: str) -> UUID | None:
    return db.query_value(
        template("users", "by_cognito_user_id"), {"cognito_user_id": cognito_user_id}
    )


def create_activity(db: Db, user_uuid: UUID, message: str, ttl: timedelta) -> str:
    """The new crud as JSON text."""
    return db.query_commit(
        template("activities", "create"), {"user_uuid": user_uuid, "message": message, "ttl": ttl}
    )


def create_reply(db: Db, user_uuid: UUID, parent_uuid: UUID, message: str) -> str | None:
    """The new reply as JSON text; None when the parent is missing or expired."""
    return db.query_commit(
        template("activities", "reply"),
        {"user_uuid": user_uuid, "parent_uuid": parent_uuid, "message": message},
    )
