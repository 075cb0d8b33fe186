"""Load the packaged schema and seed files into an open database Db."""

from __future__ import annotations

from cruddur.db import Db, packaged_script, run_script, template

SCHEMA = "schema.sql"
SEED = "seed.sql"
SCHEMA_TABLES = 2  # users, activities


def load(db: Db, script: str) -> int:
    """Run one packaged script in one transaction; return how many statements ran."""
    return run_script(db, packaged_script(script), script)


def schema_tables(db: Db) -> int:
    """How many of the schema's tables the database has: 0, some, or SCHEMA_TABLES."""
    return int(db.query_value(template("database", "schema_tables")))
