"""A problem an AWS command found before or instead of an AWS error: says what to do."""

from __future__ import annotations


class AwsProblem(Exception):
    """Something the user can fix (a missing setting, a wrong state), with a hint how."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
