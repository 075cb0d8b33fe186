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
    return resource.read_text(encoding="utf-8")


@cache
def packaged_script(name: str) -> str:
    """The text of a whole-file script shipped with the package: schema.sql, seed.sql."""
    return resources.files("cruddur.db").joinpath(name).read_text(encoding="utf-8")
