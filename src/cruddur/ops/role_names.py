"""The application roles' default names (cruddur.ops.roles says what each may do). Here
on their own, so the CLI's options can show them without importing the database driver."""

from __future__ import annotations

from cruddur.names import name_too_long

API_ROLE = "cruddur_api"
LAMBDA_ROLE = "cruddur_lambda"


def role_name_problem(role: str) -> str | None:
    """Why `role` cannot be an application role's name, or None: PostgreSQL would cut a
    long one, and the URL written for it would name a role that does not exist; it
    refuses an empty one and those it reserves (a bare SQL error, once connected)."""
    if not role:
        return "the role name is empty"
    if role.startswith("pg_") or role in _RESERVED:
        return f"{role!r} is reserved by PostgreSQL: choose another role name"
    return name_too_long(role, "the role name")


# Names PostgreSQL gives a meaning of its own (and "pg_" at the start of any).
_RESERVED = frozenset({"public", "none", "current_role", "current_user", "session_user"})
