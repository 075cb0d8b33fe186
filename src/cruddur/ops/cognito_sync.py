"""`cruddur users sync-cognito`: rows for the Cognito users the post-confirmation Lambda
never recorded (they confirmed while it was failing, or before it existed), and real ids
for rows that still carry a placeholder (the seed's MOCK-<handle>).

The rules are the Lambda's (cruddur.services.sign_up, which both use): the same
attributes make the same row, and the same constraints refuse it with the same words. A placeholder
row goes only to the Cognito user whose verified email is the row's.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg.rows import class_row

from cruddur.db import Db, template
from cruddur.ops import interrupts
from cruddur.services.sign_up import SignUpError, handle_clash, refusal, user_from_event

PAGE_SIZE = 60  # the most ListUsers returns at once

# Accounts that exist for good: confirmed by the user, or created by an admin or an
# identity provider (the post-confirmation trigger never runs for those two).
# UNCONFIRMED ones get their row from the Lambda when they confirm; ARCHIVED,
# COMPROMISED and UNKNOWN ones get none.
SYNCED_STATUSES = frozenset(
    {"CONFIRMED", "RESET_REQUIRED", "FORCE_CHANGE_PASSWORD", "EXTERNAL_PROVIDER"}
)


# A claim's UPDATE found no row: it changed between the read and the write.
CLAIM_MISSED = (
    "its seeded row changed while this ran (claimed, or its email or id changed); "
    "nothing written: run again"
)


def is_placeholder(cognito_user_id: str) -> bool:
    return cognito_user_id == "MOCK" or cognito_user_id.startswith("MOCK-")


@dataclass(frozen=True)
class CognitoUser:
    username: str
    status: str  # CONFIRMED, UNCONFIRMED, FORCE_CHANGE_PASSWORD, …
    attributes: dict[str, str]

    @property
    def label(self) -> str:
        return self.attributes.get("preferred_username") or self.username


def handle_key(handle: str) -> str:
    """What makes two handles one (users_handle_any_case_key): their case, in ASCII, the
    only letters a handle may have. (str.lower() would take the Kelvin sign for a k.)"""
    return handle.lower() if handle.isascii() else handle


def same_email(a: str, b: str) -> bool:
    # Case only, as mail is addressed: casefold() took Straße@x.org and STRASSE@x.org
    # (and the domains straße.de and strasse.de, two owners) for one address. This is the
    # only comparison: users/claim_placeholder.sql updates the row whose email it judged.
    # ASCII letters only, as handle_key: str.lower() took the Kelvin sign for a k, so
    # \u212aim@x.org claimed kim@x.org's row.
    return _ascii_lower(a.strip(_ASCII_SPACE)) == _ascii_lower(b.strip(_ASCII_SPACE))


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ASCII_SPACE = " \t\r\n\f\v"


def claim_refusal(user: CognitoUser, cognito_email: str, row_email: str) -> str | None:
    """Why `user` may not take over a placeholder row (None: they may). Only the owner of
    the row's email address may: Cognito must have verified that address, and it must be
    the row's; the same handle proves nothing, anyone can sign up with it."""
    if user.attributes.get("email_verified", "").lower() != "true":
        return "the handle belongs to a seeded row, and Cognito has not verified this email"
    if not same_email(cognito_email, row_email):
        return "the handle belongs to a seeded row with another email address"
    return None


@dataclass(frozen=True)
class KnownUser:  # users/cognito_matches.sql: a row a batch of Cognito users may already have
    handle: str
    cognito_user_id: str
    email: str


@dataclass
class SyncReport:
    inserted: list[str] = field(default_factory=list)  # handles
    updated: list[str] = field(default_factory=list)  # handles whose placeholder was replaced
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (user, reason)


def list_users(
    cognito: Any, user_pool_id: str, on_page: Callable[[int], None] | None = None
) -> list[CognitoUser]:
    """Every user of the pool, all pages; `on_page(users so far)` after each page."""
    users: list[CognitoUser] = []
    paginator = cognito.get_paginator("list_users")
    pages = paginator.paginate(UserPoolId=user_pool_id, PaginationConfig={"PageSize": PAGE_SIZE})
    for page in pages:
        for user in page.get("Users", []):
            attributes = {a["Name"]: a.get("Value", "") for a in user.get("Attributes", [])}
            users.append(CognitoUser(user["Username"], user.get("UserStatus", ""), attributes))
        if on_page is not None:
            on_page(len(users))
    return users


def sync(
    db: Db,
    users: list[CognitoUser],
    *,
    dry_run: bool = False,
    report: SyncReport | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SyncReport:
    """Insert or update the rows of `users` (nothing is written when dry_run), each in a
    transaction of its own. `report`: filled as it goes (what was written before an
    interruption); `progress(done, total)`: after each user it decides on."""
    report = SyncReport() if report is None else report
    rows: list[tuple[CognitoUser, dict[str, str]]] = []
    for user in users:
        if user.status == "UNCONFIRMED":
            report.skipped.append((user.label, "not confirmed yet: the Lambda records them then"))
            continue
        if user.status not in SYNCED_STATUSES:
            report.skipped.append((user.label, f"account status {user.status or 'unknown'}"))
            continue
        try:
            event = {"userName": user.username, "request": {"userAttributes": user.attributes}}
            rows.append((user, user_from_event(event)))
        except SignUpError as exc:
            report.skipped.append((user.label, str(exc)))

    found = db.query_rows(
        template("users", "cognito_matches"),
        {
            "cognito_user_ids": [row["cognito_user_id"] for _, row in rows],
            "handles": [handle_key(row["handle"]) for _, row in rows],
        },
        row_factory=class_row(KnownUser),
    )
    known_ids = {known.cognito_user_id for known in found}
    by_handle = {handle_key(known.handle): known for known in found}
    handled: set[str] = set()  # handles (handle_key) given to a Cognito user in this run

    for done, (user, row) in enumerate(rows):
        if progress is not None:
            progress(done, len(rows))
        handle = row["handle"]
        if row["cognito_user_id"] in known_ids:
            report.unchanged.append(handle)
            continue
        key = handle_key(handle)
        if key in handled:
            report.skipped.append((user.label, f"another Cognito user also has '{handle}'"))
            continue
        holder = by_handle.get(key)  # the row that has this handle in any case, if one does
        if holder is not None and not is_placeholder(holder.cognito_user_id):
            report.skipped.append((user.label, f"the username '{handle}' is already taken"))
            continue
        if holder is not None:
            refused = claim_refusal(user, row["email"], holder.email)
            if refused:
                report.skipped.append((user.label, refused))
                continue
        outcome = report.updated if holder is not None else report.inserted
        # Ctrl-C waits for this user's write and its place in the report (interrupts.py):
        # what the report says was written before a stop is what was.
        with interrupts.held() as hold:
            hold()
            # A dry run makes the same write and rolls it back: the database's checks (a handle
            # its rule refuses) skip the same users as the real run, not "would insert" them.
            write = db.query_rolled_back if dry_run else db.query_commit
            try:
                if holder is not None:
                    # The email judged above pins the row: one comparison, Python's. The row
                    # keeps its handle (bayko, claimed by Cognito's Bayko).
                    handle = holder.handle
                    claimed = {**row, "handle": handle, "row_email": holder.email}
                    if write(template("users", "claim_placeholder"), claimed) is None:
                        report.skipped.append((user.label, CLAIM_MISSED))
                        continue
                elif write(template("users", "create_from_cognito"), row) is None:
                    handled.add(key)
                    report.unchanged.append(handle)  # recorded meanwhile (by the Lambda)
                    continue
            except Exception as exc:
                refused = refusal(exc, row)
                if refused is None:
                    raise
                if handle_clash(exc) and db.query_value(
                    template("users", "by_cognito_user_id"), row
                ):
                    handled.add(key)
                    report.unchanged.append(handle)  # recorded meanwhile, by the Lambda
                    continue
                report.skipped.append((user.label, str(refused)))
                continue
            # Only a user whose row was written holds the handle for the rest of the run:
            # one the database refused (a name too long) kept it from the next user who
            # had it, for good, as "another Cognito user also has" it.
            handled.add(key)
            outcome.append(handle)
    if progress is not None:
        progress(len(rows), len(rows))
    return report
