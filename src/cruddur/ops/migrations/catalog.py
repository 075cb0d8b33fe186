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
        # A table missing (or unexpected) is said first, and what hangs on it not at all:
        # "missing column: public.activities.created_at; … and 38 more" never named the
        # table that was missing, nor the one that was there instead.
        missing, unexpected = _tables_first(self.missing), _tables_first(self.unexpected)
        parts = [f"missing {item}" for item in missing[:limit]]
        parts += [f"unexpected {item}" for item in unexpected[: max(0, limit - len(parts))]]
        more = len(missing) + len(unexpected) - len(parts)
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _tables_first(items: tuple[str, ...]) -> list[str]:
    """`kind: item` lines, the tables first, without the lines of those tables' columns,
    constraints, indexes and triggers."""
    tables = [item for item in items if item.startswith("table: ")]
    names = [item.removeprefix("table: ").split(" ")[0] for item in tables]

    def on_a_table_named(item: str) -> bool:
        text = item.partition(": ")[2]
        return any(
            text.startswith((f"{name}.", f"{name} ")) or f" ON {name} " in text for name in names
        )

    return tables + [i for i in items if not i.startswith("table: ") and not on_a_table_named(i)]


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
