"""The users use cases: who a token speaks for (token subject, Cognito's `sub` → Cruddur
user uuid, kept per process), and the lookups for signing in as a local user.

A write needs its author's uuid. Looking it up before each insert doubled a write's
round trips, so each process keeps what it has found. An entry goes stale when its user
row is deleted (perhaps made again by `users sync-cognito`, with a new uuid), or when the
row is given another `sub`: `users sync-cognito` puts the real Cognito `sub` into a row
that had a placeholder (`MOCK-…`), and the old subject's token must then speak for no
one, as it does in a process that never kept it. So a write never trusts the entry: its
own statement takes the author's row by the kept uuid and the token's `sub` together
(db/sql/activities/writer.sql), and writes nothing, answering no row, when that row is
not there (AuthorGone). That, or a failure on the author's foreign key (the row deleted
while the statement ran), makes `write_as` drop the entry, look the subject up again
and retry once. Only found users are kept: a subject with no row yet may get one at
any moment.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple, TypeVar
from uuid import UUID

import psycopg

from cruddur.db import Db, template

DEFAULT_MAX_ENTRIES = 100_000  # ~200 bytes each: 20 MB at the very most
AUTHOR_FOREIGN_KEY = "activities_user_uuid_fkey"

T = TypeVar("T")


class UnknownAuthor(LookupError):
    """The token's subject has no users row."""


class AuthorGone(LookupError):
    """A write found no users row with its author's uuid and subject (deleted, or given
    another subject since the uuid was kept): nothing was stored."""


class Author(NamedTuple):
    """Who a write is by: the user uuid kept for the token's subject, and that subject,
    which the write checks the row still has (db/sql/activities/writer.sql)."""

    uuid: UUID
    cognito_user_id: str


def _is_author_gone(exc: psycopg.errors.ForeignKeyViolation) -> bool:
    return exc.diag.constraint_name == AUTHOR_FOREIGN_KEY


class Authors:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._uuids: OrderedDict[str, UUID] = OrderedDict()
        self._lock = threading.Lock()

    def uuid_for(self, db: Db, subject: str) -> UUID:
        """The subject's user uuid (kept once found), or UnknownAuthor."""
        found = self._uuids.get(subject)
        if found is not None:
            return found
        found = db.query_value(
            template("users", "by_cognito_user_id"), {"cognito_user_id": subject}
        )
        if found is None:
            raise UnknownAuthor(subject)
        with self._lock:
            self._uuids[subject] = found
            while len(self._uuids) > self.max_entries:
                self._uuids.popitem(last=False)
        return found

    def known(self, subject: str) -> UUID | None:
        """The subject's user uuid if this process has looked it up, without a query."""
        return self._uuids.get(subject)

    def forget(self, subject: str) -> None:
        with self._lock:
            self._uuids.pop(subject, None)

    def write_as(self, db: Db, subject: str, write: Callable[[Author], T]) -> T:
        """write(the author); if the author's row is gone or no longer the subject's
        (AuthorGone, or a failure on the author's foreign key), drop the entry, look again
        and retry once. UnknownAuthor when the subject has no row, or lost it twice.

        The retry is safe: a write that found no author stored nothing.
        """
        for _ in (1, 2):
            author = Author(self.uuid_for(db, subject), subject)
            try:
                return write(author)
            except AuthorGone as exc:
                gone: Exception = exc
            except psycopg.errors.ForeignKeyViolation as exc:
                if not _is_author_gone(exc):
                    raise
                gone = exc
            self.forget(subject)
        raise UnknownAuthor(subject) from gone


def subject_for_handle(db: Db, handle: str) -> tuple[str, str] | None:
    """The token subject (`cognito_user_id`) of the user with this handle in any case, and
    their handle as stored (`AndrewBrown` finds andrewbrown), or None: what a development
    token for that user must carry."""
    row = db.query_row(template("users", "cognito_user_id_for_handle"), {"handle": handle})
    return None if row is None else (row[0], row[1])


def sign_in_choices(db: Db) -> str:
    """The users a developer may sign in as from the page, as a JSON array (text)."""
    return db.query_array_json(template("users", "dev_sign_in_choices"))
