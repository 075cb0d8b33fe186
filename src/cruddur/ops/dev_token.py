"""Whom a development token speaks for: the `sub` on file for a handle (`cruddur dev token`)."""

from __future__ import annotations

from cruddur.db import Db, template


def subject_for_handle(db: Db, handle: str) -> str | None:
    """The user's cognito_user_id, which a token carries as `sub`; None: no such user."""
    return db.query_value(template("users", "cognito_user_id_for_handle"), {"handle": handle})
