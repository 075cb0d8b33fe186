"""Named SQL: one query per `.sql` file under `cruddur/db/sql/`, loaded once and cached."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_PART = re.compile(r"^[a-z0-9_]+(?:-[a-z0-9_]+)*$")


class TemplateNotFound(LookupError):
    pass


@cache
def template(*parts: str) -> str:
    """The text of `sql/<parts>.sql`, e.g. template("activities", "home")."""
    if not parts or not all(_PART.match(part) for part in parts):
        raise TemplateNotFound(f"bad template name {'/'.join(parts)!r}")
    resource = resources.files("cruddur.db").joinpath("sql", *parts[:-1], f"{parts[-1]}.sql")
    if not resource.is_file():
        raise TemplateNotFound(f"no SQL template {'/'.join(parts)}.sql")
    return _named("/".join(parts), resource.read_text(encoding="utf-8"))


def _named(name: str, text: str) -> str:
    """The query under a one-line `/* name.sql */` comment instead of its header comment.

    The name then shows wherever the SQL does (pg_stat_activity, pg_stat_statements, a
    trace's db.statement), and a trace names the span by the statement's first word, which
    it finds after a /* */ comment but not after -- lines. Fixed per query, the comment
    does not hinder prepared statements.
    """
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and (
        not lines[start].strip() or lines[start].lstrip().startswith("--")
    ):
        start += 1
    return f"/* {name}.sql */ " + "".join(lines[start:])


@cache
def packaged_script(name: str) -> str:
    """The text of a whole-file script shipped with the package: schema.sql, seed.sql."""
    return resources.files("cruddur.db").joinpath(name).read_text(encoding="utf-8")
