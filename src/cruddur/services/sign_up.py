"""The sign-up rules: which Cognito attributes make which users row, and what a refused
row means to the person signing up.

Shared by the post-confirmation Lambda (cruddur.lambdas.post_confirmation), which records
each user as they confirm, and `cruddur users sync-cognito` (cruddur.ops.cognito_sync),
which records those it missed: the same attributes make the same row, and the same
constraints refuse it with the same words. psycopg and the standard library only: it
goes into the Lambda's zip.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors

from cruddur.errors import Problem

UNSTORABLE = "a sign-up attribute contains characters that cannot be stored"
# What a row breaking one of the schema's CHECK rules means to the person signing up.
_CHECKS = {
    "users_handle_check": "that username is not allowed: use 1 to 64 ASCII "
    "letters, digits, or the characters _ . + -",
    "users_display_name_check": "the name must be 1 to 256 characters long",
    "users_email_check": "the email address must be 3 to 320 characters long",
    "users_cognito_user_id_check": "the account id is malformed",
}


class SignUpError(Problem):
    """The sign-up cannot be recorded; the message is for the person signing up."""


def event_attributes(event: Any) -> dict[str, Any]:
    """The event's request.userAttributes, or {} when any part of that path is missing
    or is not an object (an event of another shape must be refused, not crash)."""
    request = event.get("request") if isinstance(event, dict) else None
    attributes = request.get("userAttributes") if isinstance(request, dict) else None
    return attributes if isinstance(attributes, dict) else {}


def user_from_event(event: dict[str, Any]) -> dict[str, str]:
    """The users row for a Cognito event's attributes (values as given, never edited)."""
    attributes = event_attributes(event)

    def attribute(name: str) -> str | None:
        value = attributes.get(name)
        return value if isinstance(value, str) and value.strip() else None

    sub = attribute("sub")
    if sub is None:
        raise SignUpError("the sign-up has no account id (the 'sub' attribute is missing)")
    email = attribute("email")
    if email is None:
        raise SignUpError("an email address is required (the 'email' attribute is missing)")
    handle = attribute("preferred_username")
    if handle is None:
        # A pool that signs people in by a username: that name is their handle. A pool
        # that signs in by email sets userName to the sub, which is no handle.
        username = event.get("userName") if isinstance(event, dict) else None
        if not isinstance(username, str) or not username.strip() or username == sub:
            raise SignUpError(
                "a preferred username is required (the 'preferred_username' attribute is missing)"
            )
        handle = username
    row = {
        "display_name": attribute("name") or handle,
        "email": email,
        "handle": handle,
        "cognito_user_id": sub,
    }
    for value in row.values():
        try:
            # A lone surrogate ("\ud800", which JSON can carry) has no UTF-8 form: psycopg
            # raised UnicodeEncodeError, answered as a database outage.
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SignUpError(UNSTORABLE) from None
    return row


# The handle's own, and one per person whatever its case (`AndrewBrown` is `andrewbrown`'s).
_HANDLE_TAKEN = frozenset({"users_handle_key", "users_handle_any_case_key"})


def handle_clash(exc: BaseException) -> bool:
    """Whether the insert failed on a handle's uniqueness. Two deliveries of one event at
    once (Cognito's retry racing the first, `users sync-cognito` racing the Lambda) can
    fail so: both pass the sub's ON CONFLICT check, and the later one meets the first's
    handle. The caller looks the sub up (users/by_cognito_user_id.sql) before saying the
    name is taken: then it is this very user, recorded meanwhile."""
    constraint = getattr(getattr(exc, "diag", None), "constraint_name", None)
    return isinstance(exc, errors.UniqueViolation) and constraint in _HANDLE_TAKEN


def refusal(exc: BaseException, user: dict[str, str]) -> SignUpError | None:
    """The person's own data broke a rule: say which (None: the database failed)."""
    constraint = getattr(getattr(exc, "diag", None), "constraint_name", None)
    if isinstance(exc, errors.UniqueViolation) and constraint in _HANDLE_TAKEN:
        return SignUpError("that username is already taken")
    if isinstance(exc, errors.CheckViolation) and constraint in _CHECKS:
        return SignUpError(_CHECKS[constraint])
    if isinstance(exc, psycopg.DataError):  # e.g. a NUL character, refused by psycopg
        return SignUpError(UNSTORABLE)
    return None
