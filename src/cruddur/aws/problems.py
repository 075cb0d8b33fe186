"""A problem an AWS command found before or instead of an AWS error: says what to do."""

from __future__ import annotations

from cruddur.errors import Problem


class AwsProblem(Problem):
    """Something the user can fix (a missing setting, a wrong state), with a hint how."""
