"""Load the packaged schema and seed files into the target database."""

from __future__ import annotations

from cruddur.config import PoolSettings
from cruddur.db import packaged_script, run_script, template
from cruddur.ops.connections import database_db
from cruddur.targets import Target

SCHEMA = "schema.sql"
SEED = "seed.sql"


def load(target: Target, settings: PoolSettings, script: str) -> int:
    """Run one packaged script in one transaction; return how many statements ran."""
    with database_db(target, settings) as db:
        return run_script(db, packaged_script(script), script)


SCHEMA_TABLES = 2  # users, activities


def schema_tables(target: Target, settings: PoolSettings) -> int:
    """How many of the schema's tables the database has: 0, some, or SCHEMA_TABLES."""
    with database_db(target, settings) as db:
        return int(db.query_value(template("database", "schema_tables")))
