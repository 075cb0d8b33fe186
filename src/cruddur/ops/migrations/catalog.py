"""A database's schema as sorted lines of text, to compare two databases object by object."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from importlib import resources

import psycopg

from cruddur.db import template

# What adoption compares: the tables and what hangs on them. Functions and extensions
# are left out: they differ by server (uuid-ossp or its stand-in) and RDS users add
# extensions such as pg_stat_statements.
SHAPE_KINDS = ("table", "column", "constraint", "index", "trigger")


@dataclass(frozen=True)
class Difference:
    missing: tuple[str, ...]  # in the expected schema, not in the database
    unexpected: tuple[str, ...]  # in the database, not expected

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected)

    def describe(self, limit: int = 3) -> str:
        parts = [f"missing {item}" for item in self.missing[:limit]]
        parts += [f"unexpected {item}" for item in self.unexpected[: max(0, limit - len(parts))]]
        more = len(self.missing) + len(self.unexpected) - len(parts)
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def snapshot(conn: psycopg.Connection) -> dict[str, list[str]]:
    """kind → sorted lines: table, column, constraint, index, trigger, function, extension."""
    found: dict[str, list[str]] = defaultdict(list)
    for kind, item in conn.execute(template("catalog", "schema_objects"), prepare=False):
        found[kind].append(item)
    return {kind: sorted(items) for kind, items in found.items()}


def shape(conn: psycopg.Connection) -> list[str]:
    """The tables' shape as `kind: item` lines (the kinds adoption compares)."""
    found = snapshot(conn)
    return sorted(f"{kind}: {item}" for kind in SHAPE_KINDS for item in found.get(kind, []))


def adoptable_shape() -> list[str]:
    """The shape of a database made by `schema-load` before migrations began."""
    text = resources.files("cruddur.db").joinpath("adoptable_shape.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def compare(expected: list[str], actual: list[str]) -> Difference:
    want, have = set(expected), set(actual)
    return Difference(tuple(sorted(want - have)), tuple(sorted(have - want)))
