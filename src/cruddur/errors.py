"""The one kind of error a user meets: what went wrong, and a hint what to do about it.

Each layer raises its own subclass (AwsProblem, EmbeddedError, DatabaseInUse,
PackagingError, FakeDataClash, ConfigError, …), or turns a library's error into an
Explanation; the CLI's entry point prints every one the same way, in one place
(`error:` and `hint:` lines, exit status 1). The layers say what happened in their own
terms; the hint may name a command, the CLI adds what only it knows (its flags).
Standard library only: the Lambda handlers import it too.
"""

from __future__ import annotations


class Problem(Exception):
    """Something the user can fix, or must know: a message, and a hint how (or None)."""

    hint: str | None = None  # a class may give every instance the same hint

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint


class Explanation(Problem):
    """Another library's error (psycopg's, botocore's) told in one line and a hint."""

    def __init__(self, kind: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.kind = kind  # a stable name, for tests and logs
