"""Named SQL: one query per `.sql` file under `cruddur/db/sql/`, loaded once and cached.

A query can take in a shared piece of SQL (a fragment, itself a `.sql` file) by naming
it on a line of its own, `{{activities/columns}}`: the fragment's text, less its header
comment, stands there at that line's indentation. What several queries must say alike
(the columns of a crud as the API shows it) is then written once.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_PART = re.compile(r"^[a-z0-9_]+(?:-[a-z0-9_]+)*$")
_INCLUDE = re.compile(r"^(?P<indent>[ \t]*)\{\{(?P<name>[a-z0-9_/-]+)\}\}(?P<tail>.*)$", re.M)


class TemplateNotFound(LookupError):
    pass


def _text(parts: tuple[str, ...]) -> str:
    if not parts or not all(_PART.match(part) for part in parts):
        raise TemplateNotFound(f"bad template name {'/'.join(parts)!r}")
    resource = resources.files("cruddur.db").joinpath("sql", *parts[:-1], f"{parts[-1]}.sql")
    if not resource.is_file():
        raise TemplateNotFound(f"no SQL template {'/'.join(parts)}.sql")
    return resource.read_text(encoding="utf-8")


@cache
def template(*parts: str) -> str:
    """The text of `sql/<parts>.sql`, e.g. template("activities", "home"), with the
    fragments it names put in."""
    return _named("/".join(parts), _inlined(_text(parts)))


def _inlined(text: str, seen: tuple[str, ...] = ()) -> str:
    def put_in(match: re.Match[str]) -> str:
        name = match["name"]
        if name in seen:
            raise TemplateNotFound(f"SQL fragment {name}.sql takes in itself")
        body = _inlined(_without_header(_text(tuple(name.split("/")))), (*seen, name))
        indent = match["indent"]
        lines = body.rstrip().splitlines()
        return "\n".join(indent + line if line.strip() else "" for line in lines) + match["tail"]

    return _INCLUDE.sub(put_in, text)


def _without_header(text: str) -> str:
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and (
        not lines[start].strip() or lines[start].lstrip().startswith("--")
    ):
        start += 1
    return "".join(lines[start:])


def _named(name: str, text: str) -> str:
    """The query under a one-line `/* name.sql */` comment instead of its header comment.

    The name then shows wherever the SQL does (pg_stat_activity, pg_stat_statements, a
    trace's db.statement), and a trace names the span by the statement's first word, which
    it finds after a /* */ comment but not after -- lines. Fixed per query, the comment
    does not hinder prepared statements.
    """
    return f"/* {name}.sql */ " + _without_header(text)


@cache
def packaged_script(name: str) -> str:
    """The text of a whole-file script shipped with the package: schema.sql, seed.sql."""
    return resources.files("cruddur.db").joinpath(name).read_text(encoding="utf-8")
