"""Load the packaged schema and seed files into an open database Db."""

from __future__ import annotations

from cruddur.db import Db, packaged_script, run_script, template
from cruddur.ops.migrations import runner

SCHEMA = "schema.sql"
SEED = "seed.sql"
SCHEMA_TABLES = 2  # users, activities


def load(db: Db, script: str) -> int:
    """Run one packaged script in one transaction; return how many statements ran."""
    return run_script(db, packaged_script(script), script)


def load_schema(db: Db) -> int:
    """schema.sql, and the bookkeeping started afresh with every migration recorded as
    applied (schema.sql is what they make, tests/test_migrations.py checks it), in one
    transaction: a later `migrate` runs only migrations written after this."""
    migrations = runner.load()
    return run_script(
        db, packaged_script(SCHEMA), SCHEMA, lambda conn: runner.record_all(conn, migrations)
    )


def seed_users_left_out(db: Db) -> list[str]:
    """The seed's handles that other users have: seed.sql left those seed users and their
    cruds out (posted as whoever had the handle, they were someone else's words)."""
    with db.connection() as conn:
        rows = conn.execute(template("database", "seed_users_left_out")).fetchall()
    return [row[0] for row in rows]


def schema_tables(db: Db) -> int:
    """How many of the schema's tables the database has: 0, some, or SCHEMA_TABLES."""
    return int(db.query_value(template("database", "schema_tables")))
