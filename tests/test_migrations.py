"""Versioned migrations against a real PostgreSQL: `cruddur db migrate`, `rollback`,
`migrations` and `new`, run as a user runs them (bin/ scripts, subprocesses)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest
from helpers import BIN, ROOT, as_role, cli, ctrl_c_once, run, tables
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cruddur.config import MigrationSettings
from cruddur.db import Db, packaged_script, run_script
from cruddur.ops.migrations import catalog, lock, runner
from cruddur.ops.migrations.files import checksum, package_dir
from cruddur.ops.migrations.reporter import Reporter
from cruddur.urls import database_name, redact, with_database

NOTES = """-- migrate:up
CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO notes VALUES (1, 'kept');
-- migrate:down
DROP TABLE notes;
"""
ADD_COLOUR = """-- migrate:up
ALTER TABLE notes ADD COLUMN colour text;
-- migrate:down
ALTER TABLE notes DROP COLUMN colour;
"""
ADD_SIZE = """-- migrate:up
ALTER TABLE notes ADD COLUMN size int;
-- migrate:down
ALTER TABLE notes DROP COLUMN size;
"""


def local(url: str, **extra: str) -> dict[str, str]:
    return {"CONNECTION_URL": url, **extra}


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def applied(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
            return []
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [row[0] for row in rows]


def columns(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " ORDER BY ordinal_position",
            [table],
        ).fetchall()
    return [row[0] for row in rows]


def migrate(url: str, directory: Path, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return cli("db-migrate", "--migrations-dir", str(directory), *args, env=local(url), **kwargs)


# -- the first migration is today's schema ------------------------------------------------


def test_migrating_an_empty_database_gives_exactly_what_schema_sql_gives(
    empty_db: str, admin, server_url, new_db_name
) -> None:
    other = new_db_name()
    admin.execute(f'CREATE DATABASE "{other}"')
    loaded = with_database(empty_db, other)
    with Db(loaded) as db:
        run_script(db, packaged_script("schema.sql"), "schema.sql")
    result = run("db-migrate", env=local(empty_db))
    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_db) as migrated, psycopg.connect(loaded) as from_schema:
        want, got = catalog.snapshot(from_schema), catalog.snapshot(migrated)
    for kind in ("table", "column", "constraint", "index"):
        assert want.get(kind), f"the schema has no {kind}: the comparison would prove nothing"
    assert got == want  # tables, columns, types, defaults, constraints, indexes, functions…


def test_the_adoptable_shape_is_what_the_first_migration_makes(empty_db: str, tmp_path) -> None:
    first = sorted(package_dir().glob("*.sql"))[0]
    only_first = write(tmp_path / "m", {first.name: first.read_text()})
    assert migrate(empty_db, only_first).returncode == 0
    with psycopg.connect(empty_db) as conn:
        assert catalog.shape(conn) == catalog.adoptable_shape()


# -- migrate, migrations, rollback --------------------------------------------------------


def test_migrate_applies_pending_in_version_order_each_once(empty_db: str, tmp_path) -> None:
    folder = write(
        tmp_path / "m",
        {"20260102000000_add_colour.sql": ADD_COLOUR, "20260101000000_notes.sql": NOTES},
    )
    status = run(
        "db-migrations", "--migrations-dir", str(folder), "--exit-code", env=local(empty_db)
    )
    assert status.returncode == 1  # pending: a deploy script stops here
    assert "0 applied, 2 pending" in status.stderr
    first = migrate(empty_db, folder)
    assert first.returncode == 0, first.stderr
    err = first.stderr
    assert err.index("applied 20260101000000_notes.sql in") < err.index(
        "applied 20260102000000_add_colour.sql in"
    )
    assert "2 migrations applied" in err
    assert applied(empty_db) == ["20260101000000", "20260102000000"]
    assert columns(empty_db, "notes") == ["id", "body", "colour"]
    again = migrate(empty_db, folder)
    assert again.returncode == 0, again.stderr
    assert "nothing (else) to migrate" in again.stderr
    status = run(
        "db-migrations", "--migrations-dir", str(folder), "--exit-code", env=local(empty_db)
    )
    assert status.returncode == 0, status.stderr
    assert "2 applied, 0 pending" in status.stderr
    assert "20260102000000" in status.stdout and "applied" in status.stdout


def test_an_applied_migration_with_no_file_here_is_named_and_fails_the_gate(
    empty_db: str, tmp_path
) -> None:
    # A folder without the file of a migration the database has applied: migrate said
    # "the schema is up to date" and --exit-code passed, though the table said otherwise.
    both = write(
        tmp_path / "both",
        {"20260101000000_notes.sql": NOTES, "20260102000000_add_colour.sql": ADD_COLOUR},
    )
    assert migrate(empty_db, both).returncode == 0
    older = write(tmp_path / "older", {"20260101000000_notes.sql": NOTES})
    again = migrate(empty_db, older)
    assert again.returncode == 0, again.stderr
    assert "20260102000000_add_colour.sql is applied but has no file here" in again.stderr
    status = run(
        "db-migrations", "--migrations-dir", str(older), "--exit-code", env=local(empty_db)
    )
    assert status.returncode == 1
    assert "applied, no file here" in status.stdout
    assert "2 applied, 0 pending, 1 applied with no file here" in status.stderr
    # Rolling it back needs its file: where to find one is said (a review).
    refused = cli("db-rollback", "--migrations-dir", str(older), env=local(empty_db))
    assert refused.returncode == 1
    assert "its file is not here; cannot roll it back. Check out the code" in refused.stderr
    gate = run("db-migrations", "--migrations-dir", str(both), "--exit-code", env=local(empty_db))
    assert gate.returncode == 0, gate.stderr


def test_migrations_piped_are_tab_separated_lines_with_names_and_status_whole(
    empty_db: str, tmp_path
) -> None:
    # Piped, rich drew its table 80 columns wide: a long name and its status wrapped.
    name = "add_a_column_for_the_colour_of_each_note_and_backfill_it_from_the_old_one"
    folder = write(
        tmp_path / "m",
        {"20260101000000_notes.sql": NOTES, f"20260102000000_{name}.sql": ADD_COLOUR},
    )
    assert migrate(empty_db, folder).returncode == 0
    write(folder, {"20260103000000_size.sql": ADD_SIZE})
    listed = run(
        "db-migrations", "--migrations-dir", str(folder), env={**local(empty_db), "COLUMNS": "80"}
    )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "version\tname\tstatus\tapplied at (UTC)"
    rows = [line.split("\t") for line in lines[1:]]
    assert [row[:3] for row in rows] == [
        ["20260101000000", "notes", "applied"],
        ["20260102000000", name, "applied"],
        ["20260103000000", "size", "pending"],
    ]
    assert len(rows[1][3]) == len("2026-01-01 00:00:00") and rows[2][3] == ""


def test_dry_run_prints_the_pending_list_and_changes_nothing(empty_db: str, tmp_path) -> None:
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    result = migrate(empty_db, folder, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "20260101000000_notes.sql" in result.stderr and "nothing was changed" in result.stderr
    assert tables(empty_db) == set()  # not even the bookkeeping table


def test_a_failing_migration_leaves_no_trace_and_names_file_line_and_statement(
    empty_db: str, tmp_path
) -> None:
    broken = (
        "-- migrate:up\nALTER TABLE notes ADD COLUMN colour text;\nUPDATE notes\n  SET oops = 1;\n"
    )
    folder = write(
        tmp_path / "m", {"20260101000000_notes.sql": NOTES, "20260102000000_broken.sql": broken}
    )
    result = migrate(empty_db, folder)
    assert result.returncode == 1
    assert '20260102000000_broken.sql:4: column "oops" of relation "notes" does not exist' in (
        result.stderr
    )
    assert "statement: UPDATE notes" in result.stderr
    assert "Traceback" not in result.stderr
    assert applied(empty_db) == ["20260101000000"]  # the one before it stays
    assert columns(empty_db, "notes") == ["id", "body"]  # its first statement is gone too


def test_a_migration_with_a_long_insert_is_applied(empty_db: str, tmp_path) -> None:
    # sqlparse.parse() refuses a statement of more than 10,000 tokens: every command
    # failed with "unexpected SQLParseError", naming no file.
    rows = ",\n".join(f"({i}, 'row {i}')" for i in range(2, 3002))
    many = f"-- migrate:up\nINSERT INTO notes VALUES\n{rows};\n-- migrate:down\nSELECT 1;\n"
    folder = write(
        tmp_path / "m", {"20260101000000_notes.sql": NOTES, "20260102000000_many.sql": many}
    )
    result = migrate(empty_db, folder)
    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (3001,)


def test_a_deferred_constraint_that_fails_names_the_migration_and_keeps_nothing(
    empty_db: str, tmp_path
) -> None:
    # Checked after the last statement, it failed outside the statements' error handling:
    # a bare "violates foreign key constraint", with neither file nor what was kept.
    orphan = (
        "-- migrate:up\nCREATE TABLE parent (id int PRIMARY KEY);\n"
        "CREATE TABLE child (parent_id int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);\n"
        "INSERT INTO child VALUES (1);\n"
    )
    folder = write(tmp_path / "m", {"20260101000000_orphan.sql": orphan})
    result = migrate(empty_db, folder)
    assert result.returncode == 1
    assert (
        '20260101000000_orphan.sql: insert or update on table "child" violates foreign key'
        in result.stderr
    ), result.stderr
    assert "(checking the deferred constraints and triggers of its up section)" in result.stderr
    assert "detail: Key (parent_id)=(1) is not present" in result.stderr
    assert "nothing of 20260101000000_orphan.sql was kept" in result.stderr
    assert "Traceback" not in result.stderr
    assert tables(empty_db) == set()


def test_a_role_a_migration_sets_does_not_do_its_bookkeeping(
    empty_db: str, login_role: str, tmp_path
) -> None:
    # The bookkeeping ran as the role the migration had set: "permission denied for
    # schema public", blamed on the connection URL's role. A SET SESSION AUTHORIZATION
    # (which RESET ALL leaves) also carried over to the next migration.
    folder = write(
        tmp_path / "m",
        {
            "20260101000000_a.sql": "-- migrate:up\nCREATE TABLE a (id int);\n"
            f'SET SESSION AUTHORIZATION "{login_role}";\nSELECT 1;\n',
            "20260102000000_b.sql": "-- migrate:up\nCREATE TABLE b (id int);\n"
            f'SET ROLE "{login_role}";\nSELECT 1;\n',
            "20260103000000_c.sql": "-- migrate:up\nCREATE TABLE c (id int);\n",
        },
    )
    result = migrate(empty_db, folder)
    assert result.returncode == 0, result.stderr
    assert applied(empty_db) == ["20260101000000", "20260102000000", "20260103000000"]
    with psycopg.connect(empty_db) as conn:
        me = conn.execute("SELECT current_user").fetchone()[0]
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relname IN ('a', 'b', 'c', 'schema_migrations')"
        ).fetchall()
    assert owners == [(me,)]


def test_rollback_runs_down_sections_newest_first_and_refuses_without_one(
    empty_db: str, tmp_path
) -> None:
    no_down = "-- migrate:up\nALTER TABLE notes ADD COLUMN size int;\n"
    folder = write(
        tmp_path / "m",
        {
            "20260101000000_notes.sql": NOTES,
            "20260102000000_add_colour.sql": ADD_COLOUR,
            "20260103000000_add_size.sql": no_down,
        },
    )
    assert migrate(empty_db, folder).returncode == 0
    refused = run("db-rollback", "--migrations-dir", str(folder), env=local(empty_db))
    assert refused.returncode == 1
    assert "20260103000000_add_size.sql has no down section" in refused.stderr
    assert len(applied(empty_db)) == 3
    (folder / "20260103000000_add_size.sql").unlink()
    write(folder, {"20260103000000_add_size.sql": ADD_SIZE})  # an edited file: refused too
    edited = cli("db-rollback", "--migrations-dir", str(folder), env=local(empty_db))
    assert edited.returncode == 1 and "changed since it was applied" in edited.stderr
    # Put the history right: forget the third and roll back the other two.
    with psycopg.connect(empty_db) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = '20260103000000'")
        conn.execute("ALTER TABLE notes DROP COLUMN size")
    (folder / "20260103000000_add_size.sql").unlink()
    dry = cli(
        "db-rollback",
        "--migrations-dir",
        str(folder),
        "--steps",
        "2",
        "--dry-run",
        env=local(empty_db),
    )
    assert dry.returncode == 0 and applied(empty_db) == ["20260101000000", "20260102000000"]
    result = cli(
        "db-rollback", "--migrations-dir", str(folder), "--steps", "2", env=local(empty_db)
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.index("rolled back 20260102000000") < result.stderr.index(
        "rolled back 20260101000000"
    )
    assert applied(empty_db) == [] and "notes" not in tables(empty_db)


def test_an_empty_down_section_is_named_as_empty(empty_db: str, tmp_path) -> None:
    # `db new`'s file with only its up section written: "has no down section" of a file
    # that has one sent the reader looking for what was there.
    empty_down = "-- migrate:up\nALTER TABLE notes ADD COLUMN size int;\n\n-- migrate:down\n"
    folder = write(
        tmp_path / "m",
        {"20260101000000_notes.sql": NOTES, "20260102000000_add_size.sql": empty_down},
    )
    assert migrate(empty_db, folder).returncode == 0
    refused = cli("db-rollback", "--migrations-dir", str(folder), env=local(empty_db))
    assert refused.returncode == 1
    assert "20260102000000_add_size.sql's down section is empty" in refused.stderr
    assert "--accept-edited 20260102000000" in refused.stderr
    assert len(applied(empty_db)) == 2


def test_an_unfinished_migration_stops_no_listing_status_or_rollback(
    empty_db: str, tmp_path
) -> None:
    # A review: one `db new` file not written yet stopped `db migrations`, `db rollback`
    # and `db status` too ("the up section has no statement"); only a migrate must stop.
    folder = write(
        tmp_path / "m",
        {"20260101000000_notes.sql": NOTES, "20260102000000_add_colour.sql": ADD_COLOUR},
    )
    assert migrate(empty_db, folder).returncode == 0
    drafted = cli("db-new-migration", "add_bio", "--migrations-dir", str(folder))
    assert drafted.returncode == 0, drafted.stderr
    draft = Path(drafted.stdout.strip()).name
    listed = run(
        "db-migrations", "--migrations-dir", str(folder), "--exit-code", env=local(empty_db)
    )
    assert listed.returncode == 1, listed.stderr  # pending: a deploy would stop here
    assert "2 applied, 1 pending" in listed.stderr and "1 unfinished" in listed.stderr
    assert "unfinished: its up section has no statement" in listed.stdout
    assert draft.removesuffix(".sql").split("_", 1)[0] in listed.stdout
    refused = migrate(empty_db, folder)
    assert refused.returncode == 1 and f"{draft}: the up section has no statement" in (
        refused.stderr
    )
    rolled = cli("db-rollback", "--migrations-dir", str(folder), env=local(empty_db))
    assert rolled.returncode == 0, rolled.stderr
    assert "rolled back 20260102000000" in rolled.stderr
    assert applied(empty_db) == ["20260101000000"]


def test_a_concurrent_index_in_a_transaction_says_how_to_run_it_outside_one(
    empty_db: str, tmp_path
) -> None:
    # A review: PostgreSQL's "cannot run inside a transaction block" came with "fix it
    # and run again", not with the section option that runs it outside one.
    index = "-- migrate:up\nCREATE INDEX CONCURRENTLY notes_body ON notes (body);\n"
    folder = write(
        tmp_path / "m", {"20260101000000_notes.sql": NOTES, "20260102000000_index.sql": index}
    )
    refused = migrate(empty_db, folder)
    assert refused.returncode == 1
    assert "'-- migrate:up transaction:false'" in refused.stderr, refused.stderr
    assert applied(empty_db) == ["20260101000000"]


def test_create_index_concurrently_runs_outside_a_transaction(empty_db: str, tmp_path) -> None:
    index = (
        "-- migrate:up transaction:false\n"
        "CREATE INDEX CONCURRENTLY notes_body_idx ON notes (body);\n"
        "-- migrate:down transaction:false\n"
        "DROP INDEX CONCURRENTLY notes_body_idx;\n"
    )
    folder = write(
        tmp_path / "m", {"20260101000000_notes.sql": NOTES, "20260102000000_index.sql": index}
    )
    result = migrate(empty_db, folder)
    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_db) as conn:
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'notes_body_idx'::regclass"
        ).fetchone()
    assert valid == (True,)
    back = cli("db-rollback", "--migrations-dir", str(folder), env=local(empty_db))
    assert back.returncode == 0, back.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('notes_body_idx')").fetchone() == (None,)
    assert applied(empty_db) == ["20260101000000"]


def test_new_makes_a_folder_of_your_own_on_first_use(tmp_path) -> None:
    result = run("db-new-migration", "first", "--migrations-dir", str(tmp_path / "new" / "m"))
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == tmp_path / "new" / "m"
    # Said (a review: a mistyped folder was made without a word), and only the first time.
    assert f"made the migrations folder {tmp_path / 'new' / 'm'} (it was not there)" in (
        " ".join(result.stderr.split())
    )
    again = cli("db-new-migration", "second", "--migrations-dir", str(tmp_path / "new" / "m"))
    assert again.returncode == 1 and "made the migrations folder" not in again.stderr


def test_new_writes_an_empty_migration_with_the_next_version(tmp_path) -> None:
    folder = write(tmp_path / "m", {"29991231235959_future.sql": NOTES})
    result = cli("db-new-migration", "Add bio to users!", "--migrations-dir", str(folder))
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    # The second after the newest (a review: it was 29991231235960, no time at all).
    assert path.name == "30000101000000_add_bio_to_users.sql"
    text = path.read_text()
    assert "-- migrate:up" in text and "-- migrate:down" in text


def test_new_takes_accents_off_and_refuses_letters_without_an_ascii_form(tmp_path) -> None:
    # A review: non-ASCII letters were dropped ('naïve_index' → 'na_ve_index', 'Größe' →
    # 'gr_e'), and 'ÄÖÜ' was refused as having no letters.
    folder = tmp_path / "m"
    made = cli("db-new-migration", "naïve ﬁx ÄÖÜ", "--migrations-dir", str(folder))
    assert made.returncode == 0, made.stderr
    assert Path(made.stdout.strip()).name.endswith("_naive_fix_aou.sql")
    other = tmp_path / "other"
    refused = cli("db-new-migration", "Größe", "--migrations-dir", str(other))
    assert refused.returncode == 1
    assert "written in ASCII letters and digits (a-z, 0-9); spell 'ß' in them" in refused.stderr
    # Named as typed (a review: 'GROẞE' was told of 'ß', its lower case).
    capital = cli("db-new-migration", "GROẞE", "--migrations-dir", str(other))
    assert "spell 'ẞ' in them" in capital.stderr, capital.stderr
    assert not other.exists() or not list(other.iterdir())


def test_new_after_a_version_that_leaves_no_room_says_so(tmp_path) -> None:
    folder = write(tmp_path / "m", {"99999999999999_last.sql": NOTES})
    refused = cli("db-new-migration", "after", "--migrations-dir", str(folder))
    assert refused.returncode == 1
    assert "no version after 99999999999999 fits in 14 digits" in refused.stderr
    assert [p.name for p in folder.iterdir()] == ["99999999999999_last.sql"]


def test_new_after_an_unfinished_migration_says_where_that_file_is(tmp_path) -> None:
    folder = tmp_path / "m"
    first = cli("db-new-migration", "add_bio", "--migrations-dir", str(folder))
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    second = cli("db-new-migration", "add_avatar", "--migrations-dir", str(folder))
    assert second.returncode == 1
    assert f"error: {path.name}: the up section has no statement" in second.stderr
    assert f"hint: fill in its up section, or remove it first: {path}" in second.stderr
    assert [p.name for p in folder.iterdir()] == [path.name]


def test_new_says_in_one_line_where_it_cannot_write(tmp_path) -> None:
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for folder in (tmp_path / "dangling", Path("/proc/cruddur-migrations")):
        refused = cli("db-new-migration", "x", "--migrations-dir", str(folder))
        assert refused.returncode == 1, refused.stderr
        assert f"error: cannot write a migration in {folder}: " in refused.stderr
        assert "unexpected" not in refused.stderr
    # A name past what a file name can hold (255 bytes) is refused before writing.
    long = cli("db-new-migration", "a" * 300, "--migrations-dir", str(tmp_path / "m"))
    assert long.returncode == 1
    assert "a migration's name is at most 100 characters, not 300" in long.stderr
    assert not list((tmp_path / "m").iterdir())


# -- bad files are refused before anything runs -----------------------------------------


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"20260102000000_x.sql": "CREATE TABLE x (id int);\n"}, "no '-- migrate:up' line"),
        (
            {"20260101000000_other.sql": "-- migrate:up\nSELECT 1;\n"},
            "version 20260101000000 is also",
        ),
        ({"2026_x.sql": "-- migrate:up\nSELECT 1;\n"}, "2026_x.sql: not a migration file name"),
        (
            {
                "20260102000000_x.sql": "-- migrate:up transaction:false\nCREATE INDEX "
                "CONCURRENTLY i ON notes (id);\n-- migrate:down transaction:false\n"
                "DROP INDEX CONCURRENTLY i;\nSELECT 1;\n"
            },
            "20260102000000_x.sql:5: the down section runs outside a transaction",
        ),
        (
            {"20260102000000_x.sql": "-- migrate:up transaction:flase\nSELECT 1;\n"},
            "unknown option 'transaction:flase'",
        ),
        (
            {"20260102000000_x.sql": "-- migrate:up\n\n-- migrate:down\n\n"},  # as `new` wrote it
            "20260102000000_x.sql: the up section has no statement",
        ),
        (
            {"20260102000000_x.sql": "DROP TABLE notes;\n-- migrate:up\nSELECT 1;\n"},
            "20260102000000_x.sql: SQL before '-- migrate:up' would never run",
        ),
        (  # ported from a tool that wraps its files in a transaction of their own
            {
                "20260102000000_x.sql": "-- migrate:up\nCREATE TABLE a (id int);\n"
                "COMMIT;\nCREATE TABLE b (id nosuchtype);\n"
            },
            "20260102000000_x.sql:3: COMMIT in the up section",
        ),
        (
            {"20260102000000_x.sql": "-- migrate:up\n/* wrapped */ begin;\nSELECT 1;\nend;\n"},
            "20260102000000_x.sql:2: BEGIN in the up section",
        ),
        (  # after a column named begin, sqlparse ran on to the file's end as one statement:
            # the ROLLBACK went unseen, and the migration was recorded without its column
            {
                "20260102000000_x.sql": "-- migrate:up\nALTER TABLE notes ADD COLUMN begin date;\n"
                "ROLLBACK;\n"
            },
            "20260102000000_x.sql:3: ROLLBACK in the up section",
        ),
        (  # …or the COMMIT, which kept the first table of a migration said to be undone
            {
                "20260102000000_x.sql": "-- migrate:up\nCREATE TABLE booking (begin date);\n"
                "COMMIT;\nCREATE TABLE t_d (x int);\n"
            },
            "20260102000000_x.sql:3: COMMIT in the up section",
        ),
        (  # saved as .SQL: it was left out without a word, and never ran
            {"20260102000000_x.SQL": "-- migrate:up\nCREATE TABLE x (id int);\n"},
            "20260102000000_x.SQL: name it 20260102000000_x.sql (lower-case .sql)",
        ),
        (  # a review: read as a comment, the up section made the table and dropped it
            {
                "20260102000000_x.sql": "-- migrate:up\nCREATE TABLE x (id int);\n"
                "-- migrate: down\nDROP TABLE x;\n"
            },
            "20260102000000_x.sql:3: '-- migrate: down' reads as a comment, not as the "
            "'-- migrate:down' line it looks like",
        ),
        (
            {"20260102000000_x.sql": "--- MIGRATE:up\nCREATE TABLE x (id int);\n"},
            "20260102000000_x.sql:1: '--- MIGRATE:up' reads as a comment",
        ),
        (  # and other spellings of it, sql-migrate's among them
            {
                "20260102000000_x.sql": "-- migrate:up\nCREATE TABLE x (id int);\n"
                "-- +migrate Down\nDROP TABLE x;\n"
            },
            "20260102000000_x.sql:3: '-- +migrate Down' reads as a comment",
        ),
        (
            {
                "20260102000000_x.sql": "-- migrate:up\nCREATE TABLE x (id int);\n"
                "-- migrate_down\nDROP TABLE x;\n"
            },
            "20260102000000_x.sql:3: '-- migrate_down' reads as a comment",
        ),
    ],
)
def test_bad_files_are_refused_before_anything_runs(
    empty_db: str, tmp_path, files: dict[str, str], message: str
) -> None:
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES, **files})
    result = migrate(empty_db, folder)
    assert result.returncode == 1
    assert message in result.stderr
    assert tables(empty_db) == set()  # not even the good first file ran
    dry = migrate(empty_db, folder, "--dry-run")  # refused as the run is (COMMIT passed)
    assert dry.returncode == 1 and message in dry.stderr, dry.stderr


@pytest.mark.parametrize("kind", ["dangling link", "folder"])
def test_a_migration_that_is_not_a_file_is_refused_by_name(empty_db: str, tmp_path, kind) -> None:
    # Skipped without a word: "nothing (else) to migrate", and the gate (--exit-code) passed.
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    odd = folder / "20260102000000_add_bio.sql"
    if kind == "folder":
        odd.mkdir()
    else:
        odd.symlink_to(tmp_path / "missing" / odd.name)
    said = "a link to nothing" if kind == "dangling link" else "not a file"
    for command in (("db-migrate",), ("db-migrations", "--exit-code")):
        result = cli(*command, "--migrations-dir", str(folder), env=local(empty_db))
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"20260102000000_add_bio.sql: {said}" in result.stderr
    assert tables(empty_db) == set()


def test_odd_names_are_named_and_an_editors_lock_file_is_passed_over(
    empty_db: str, tmp_path
) -> None:
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    # Emacs's lock beside a file with unsaved edits, a link to nothing: it blocked every
    # migrate once links to nothing were refused.
    (folder / ".#20260101000000_notes.sql").symlink_to("root@host.1234:1700000000")
    assert migrate(empty_db, folder).returncode == 0
    for name, said in [
        # Its suffix is ".sql ": skipped, never run, and the gate passed.
        ("20260102000000_x.sql ", "'20260102000000_x.sql ': name it '20260102000000_x.sql'"),
        # Full-width digits passed the name check, ran, then schema_migrations refused
        # the version: pending for ever.
        ("\uff12" * 14 + "_uni.sql", "not a migration file name"),
    ]:
        (folder / name).write_text("-- migrate:up\nCREATE TABLE odd (id int);\n")
        for command in (("db-migrate",), ("db-migrations", "--exit-code")):
            result = cli(*command, "--migrations-dir", str(folder), env=local(empty_db))
            assert result.returncode == 1, result.stdout + result.stderr
            assert said in result.stderr, result.stderr
        (folder / name).unlink()
    assert "odd" not in tables(empty_db)


def test_rollback_dry_run_refuses_a_down_section_the_rollback_would(
    empty_db: str, tmp_path
) -> None:
    down_commits = NOTES.replace("DROP TABLE notes;", "DROP TABLE notes;\nCOMMIT;")
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": down_commits})
    assert migrate(empty_db, folder).returncode == 0
    for dry in (("--dry-run",), ("--yes",)):  # the dry run passed it with "nothing changed"
        refused = cli("db-rollback", "--migrations-dir", str(folder), *dry, env=local(empty_db))
        assert refused.returncode == 1, refused.stderr
        assert "COMMIT in the down section" in refused.stderr
    assert applied(empty_db) == ["20260101000000"]


def test_a_byte_order_mark_is_read_past_and_another_encoding_is_named(
    empty_db: str, tmp_path
) -> None:
    # Files saved by editors on Windows: UTF-8 with a byte-order mark before
    # `-- migrate:up` ("no '-- migrate:up' line"), or cp1252 ("unexpected UnicodeDecodeError").
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "20260101000000_notes.sql").write_bytes(b"\xef\xbb\xbf" + NOTES.encode())
    with_mark = migrate(empty_db, folder)
    assert with_mark.returncode == 0, with_mark.stderr
    assert applied(empty_db) == ["20260101000000"]
    latin = "-- migrate:up\n-- café\nSELECT 1;\n".encode("cp1252")
    (folder / "20260102000000_latin.sql").write_bytes(latin)
    for command in ("db-migrate", "db-migrations"):
        result = cli(command, "--migrations-dir", str(folder), env=local(empty_db))
        assert result.returncode == 1
        assert "20260102000000_latin.sql:2: not UTF-8 (byte 0xe9)" in result.stderr
        assert "unexpected" not in result.stderr
    assert applied(empty_db) == ["20260101000000"]


WRAPPED_DOWN = "-- migrate:up\nCREATE TABLE t (id int);\n-- migrate:down\nDROP TABLE t;\nEND;\n"
WRAPPED_UP = (
    "-- migrate:up\nBEGIN;\nCREATE TABLE w (id int);\nCOMMIT;\n-- migrate:down\nDROP TABLE w;\n"
)


def test_a_down_section_that_ends_the_transaction_is_refused_before_it_runs(
    empty_db: str, tmp_path
) -> None:
    folder = write(tmp_path / "m", {"20260102000000_t.sql": WRAPPED_DOWN})
    assert migrate(empty_db, folder).returncode == 0  # its up section is fine
    refused = cli("db-rollback", "--migrations-dir", str(folder), env=local(empty_db))
    assert refused.returncode == 1
    assert "20260102000000_t.sql:5: END in the down section" in refused.stderr
    assert "t" in tables(empty_db) and applied(empty_db) == ["20260102000000"]


def test_a_commit_after_a_backslash_in_a_string_is_refused_before_anything_runs(
    empty_db: str, tmp_path
) -> None:
    # sqlparse read '\' as an escaped quote, so the COMMIT hid in one piece with the
    # UPDATE: the server ran it, t1 was kept with no schema_migrations row, and the
    # message said nothing was kept.
    hidden = (
        "-- migrate:up\nCREATE TABLE t1 (id int);\n"
        "UPDATE t1 SET id = length('\\'); COMMIT;\n"
        "CREATE TABLE t2 (x int DEFAULT length('nosuchtype'::nosuchtype));\n"
    )
    folder = write(tmp_path / "m", {"20260101000000_hidden.sql": hidden})
    result = migrate(empty_db, folder)
    assert result.returncode == 1
    assert "20260101000000_hidden.sql:3: COMMIT in the up section" in result.stderr, result.stderr
    assert tables(empty_db) == set()


def test_a_copy_from_the_client_is_refused_by_file_and_line_before_anything_runs(
    empty_db: str, tmp_path
) -> None:
    # pg_dump's plain format: the error that came out was the lock's ("another command is
    # already in progress"), then psycopg's, neither saying what to do instead.
    dumped = (
        "-- migrate:up\nCREATE TABLE notes (id int PRIMARY KEY, body text);\n"
        "COPY public.notes (id, body) FROM stdin;\n1\tkept\n\\.\n"
        "-- migrate:down\nDROP TABLE notes;\n"
    )
    folder = write(tmp_path / "m", {"20260101000000_dumped.sql": dumped})
    result = migrate(empty_db, folder)
    assert result.returncode == 1
    assert "20260101000000_dumped.sql:3: COPY … FROM STDIN in the up section" in result.stderr, (
        result.stderr
    )
    assert "in an INSERT" in result.stderr
    assert tables(empty_db) == set()


def test_an_applied_file_that_ends_the_transaction_blocks_nothing(empty_db: str, tmp_path) -> None:
    # Applied before the check existed (it ran, with PostgreSQL's warnings): it is never
    # run again, and must not stop the commands that read the folder.
    folder = write(
        tmp_path / "m", {"20260101000000_notes.sql": NOTES, "20260102000000_w.sql": WRAPPED_UP}
    )
    write(tmp_path / "first", {"20260101000000_notes.sql": NOTES})
    assert migrate(empty_db, tmp_path / "first").returncode == 0
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE w (id int)")
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum, adopted)"
            " VALUES ('20260102000000', 'w', %s, false)",
            [checksum(WRAPPED_UP)],
        )
    assert migrate(empty_db, folder).returncode == 0
    listed = cli("db-migrations", "--migrations-dir", str(folder), env=local(empty_db))
    assert listed.returncode == 0, listed.stderr
    assert cli("db-rollback", "--migrations-dir", str(folder), env=local(empty_db)).returncode == 0
    assert "w" not in tables(empty_db)


# -- one at a time -----------------------------------------------------------------------


SLOW = "-- migrate:up\nCREATE TABLE slow (id int);\nSELECT pg_sleep(2);\n"


def _two_migrates_at_once(url: str, folder: Path) -> tuple[list[int], list[str]]:
    """Two `bin/db-migrate` started at the same moment: their exit statuses and stderr."""
    env = {k: v for k, v in os.environ.items() if k != "PROD_CONNECTION_URL"}
    env.update(NO_COLOR="1", CONNECTION_URL=url)
    command = [str(BIN / "db-migrate"), "--migrations-dir", str(folder)]
    processes = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    errs = [p.communicate(timeout=60)[1] for p in processes]
    return [p.returncode for p in processes], errs


def test_two_migrates_started_together_both_succeed_and_apply_once(empty_db: str, tmp_path) -> None:
    folder = write(tmp_path / "m", {"20260101000000_slow.sql": SLOW})
    returncodes, errs = _two_migrates_at_once(empty_db, folder)
    assert returncodes == [0, 0], errs
    assert sum("applied 20260101000000_slow.sql" in err for err in errs) == 1
    assert sum("nothing (else) to migrate" in err for err in errs) == 1
    assert any("waiting up to" in err and "held by pid" in err for err in errs)
    assert applied(empty_db) == ["20260101000000"]


def test_two_migrates_started_together_over_a_concurrent_index_both_succeed(
    empty_db: str, tmp_path
) -> None:
    # The second waited for the lock inside one pg_advisory_lock statement, holding a
    # snapshot; the first's CREATE INDEX CONCURRENTLY waits for older snapshots. The
    # server cancelled one of the two as a deadlock (both failed, in 3 runs of 3), the
    # index build among them, leaving an INVALID index every later migrate refused.
    folder = write(
        tmp_path / "m",
        {
            "20260101000000_notes.sql": NOTES + "SELECT pg_sleep(2);\n",
            "20260102000000_index.sql": (
                "-- migrate:up transaction:false\n"
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS notes_body_idx ON notes (body);\n"
            ),
        },
    )
    returncodes, errs = _two_migrates_at_once(empty_db, folder)
    assert returncodes == [0, 0], errs
    assert sum("applied 20260102000000_index.sql" in err for err in errs) == 1, errs
    assert sum("nothing (else) to migrate" in err for err in errs) == 1, errs
    assert applied(empty_db) == ["20260101000000", "20260102000000"]
    with psycopg.connect(empty_db) as conn:
        valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'notes_body_idx'::regclass"
        assert conn.execute(valid).fetchone() == (True,)


def test_an_error_that_leaves_the_connection_unusable_stands_and_the_lock_is_freed(
    empty_db: str,
) -> None:
    # A COPY from the client left the connection mid-command: the lock's release failed
    # with "another command is already in progress", which replaced the migration's error
    # (file, line, "COPY cannot be used with this method").
    settings = MigrationSettings(lock_wait=0)
    stopped = pytest.raises(RuntimeError, match="the migration's own error")
    with stopped, runner.locked(empty_db, settings, Reporter()) as conn:
        conn.execute("CREATE TEMP TABLE t (x int)")
        with contextlib.suppress(psycopg.ProgrammingError):  # in COPY IN now
            conn.execute("COPY t FROM STDIN")
        raise RuntimeError("the migration's own error")
    with runner.locked(empty_db, settings, Reporter()):  # free, without waiting
        pass


# 0.0004 s: under a millisecond, where a lock_timeout rounded down to 0 waits forever.
@pytest.mark.parametrize("wait", ["1", "0.0004"])
def test_a_lock_held_too_long_fails_naming_the_holder(empty_db: str, tmp_path, wait: str) -> None:
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    with psycopg.connect(empty_db, autocommit=True, application_name="other-deploy") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [lock.LOCK_KEY])
        result = migrate(empty_db, folder, "--lock-wait", wait)
        pid = holder.info.backend_pid
    assert result.returncode == 1
    assert f"another migration holds the lock: pid {pid} (other-deploy" in result.stderr
    assert tables(empty_db) == set()


def test_a_databases_statement_timeout_does_not_cut_the_lock_wait_short(
    empty_db: str, tmp_path
) -> None:
    # A statement_timeout on the database (or role; an RDS parameter group's) below
    # --lock-wait ended the wait early as "canceling statement due to statement timeout",
    # naming no holder: a second deploy failed where it should have waited.
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET statement_timeout = '1s'").format(
                sql.Identifier(database_name(empty_db))
            )
        )
    with psycopg.connect(empty_db, autocommit=True, application_name="other-deploy") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [lock.LOCK_KEY])
        started = time.monotonic()
        result = migrate(empty_db, folder, "--lock-wait", "3")
        waited = time.monotonic() - started
        pid = holder.info.backend_pid
    assert result.returncode == 1
    assert f"another migration holds the lock: pid {pid} (other-deploy" in result.stderr, (
        result.stderr
    )
    assert "gave up after 3 s" in result.stderr
    assert waited >= 3
    assert migrate(empty_db, folder).returncode == 0  # once free, it migrates as before
    assert applied(empty_db) == ["20260101000000"]


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--lock-wait", "nan"), {}),
        (("--lock-wait", "inf"), {}),  # "wait for ever" overflowed
        (("--lock-wait", "1e300"), {}),  # past lock_timeout's limit: SQLSTATE 22023
        ((), {"CRUDDUR_MIGRATION_LOCK_WAIT": "inf"}),
    ],
)
def test_a_lock_wait_that_is_no_number_of_seconds_is_refused_before_waiting(
    empty_db: str, tmp_path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    with psycopg.connect(empty_db, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [lock.LOCK_KEY])
        result = cli(
            "db-migrate", "--migrations-dir", str(folder), *args, env=local(empty_db, **env)
        )
    assert result.returncode in (1, 2), result.stderr
    assert "waiting up to" not in result.stderr
    assert "unexpected" not in result.stderr and "SQLSTATE" not in result.stderr
    assert ("--lock-wait" if args else "CRUDDUR_MIGRATION_LOCK_WAIT") in result.stderr
    assert tables(empty_db) == set()


def test_a_timeout_past_postgresqls_limit_is_refused_before_anything_runs(
    empty_db: str, tmp_path
) -> None:
    # The server refused it only at the first migration's SET: "rolling back …", then
    # 'invalid value for parameter "lock_timeout"'.
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    assert migrate(empty_db, folder).returncode == 0
    back = cli(
        "db-rollback",
        "--migrations-dir",
        str(folder),
        "--lock-timeout",
        "99999999min",
        env=local(empty_db),
    )
    assert back.returncode == 2  # a usage error, as a bad --lock-wait is (a review)
    assert "Invalid value for '--lock-timeout': is too long: at most 596h" in back.stderr
    assert "rolling back" not in back.stderr and "SQLSTATE" not in back.stderr
    assert applied(empty_db) == ["20260101000000"]


def test_kill_9_during_a_migration_leaves_the_database_as_before_and_the_lock_free(
    empty_db: str, tmp_path
) -> None:
    stuck = "-- migrate:up\nCREATE TABLE half (id int);\nSELECT pg_sleep(60);\n"
    folder = write(
        tmp_path / "m", {"20260101000000_notes.sql": NOTES, "20260102000000_stuck.sql": stuck}
    )
    env = {k: v for k, v in os.environ.items() if k != "PROD_CONNECTION_URL"}
    env.update(NO_COLOR="1", CONNECTION_URL=empty_db)
    cruddur = str(Path(BIN).parent / ".venv" / "bin" / "cruddur")
    process = subprocess.Popen(
        [cruddur, "db", "migrate", "--migrations-dir", str(folder)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with psycopg.connect(empty_db, autocommit=True) as watcher:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'cruddur-migrate'"
                " AND query LIKE '%pg_sleep%' AND state = 'active'"
                " AND datname = current_database()"  # not another test's migration
            ).fetchone()
            if row:
                break
            time.sleep(0.1)
        else:
            process.kill()
            pytest.fail("the migration never started")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        # The server sees the client gone within client_connection_check_interval (1 s).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if watcher.execute("SELECT pg_try_advisory_lock(%s)", [lock.LOCK_KEY]).fetchone()[0]:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the lock was still held 15 s after the kill")
        watcher.execute("SELECT pg_advisory_unlock(%s)", [lock.LOCK_KEY])
    assert applied(empty_db) == ["20260101000000"]
    assert "half" not in tables(empty_db)


def _interrupted_mid_statement(url: str, folder: Path, *args: str) -> str:
    """Run `cruddur db …` until its migration sleeps (pg_sleep, in a statement or a
    trigger), then Ctrl-C it (SIGINT to its process group, as a terminal does); its
    stderr, once it exited 130."""
    cruddur = str(Path(BIN).parent / ".venv" / "bin" / "cruddur")
    command = [cruddur, "db", *args, "--migrations-dir", str(folder)]
    running = "application_name = 'cruddur-migrate' AND wait_event = 'PgSleep'"
    status, err = ctrl_c_once(command, url, {}, running)
    assert status == 130, err
    assert "Aborted!" not in err and "Traceback" not in err
    with psycopg.connect(url, autocommit=True) as conn:  # let go of at once, not left held
        assert conn.execute("SELECT pg_try_advisory_lock(%s)", [lock.LOCK_KEY]).fetchone()[0]
    return err


def test_ctrl_c_during_a_migration_says_what_was_applied_and_exits_130(
    empty_db: str, tmp_path
) -> None:
    # It said only "Aborted!", exit status 1: not which migrations were kept.
    stuck = "-- migrate:up\nCREATE TABLE half (id int);\nSELECT pg_sleep(60);\n"
    folder = write(
        tmp_path / "m", {"20260101000000_notes.sql": NOTES, "20260102000000_stuck.sql": stuck}
    )
    err = _interrupted_mid_statement(empty_db, folder, "migrate")
    assert (
        "interrupted: applied 1 (20260101000000_notes.sql); 20260102000000_stuck.sql was "
        "under way and rolled back: nothing of it was kept"
    ) in err, err
    assert applied(empty_db) == ["20260101000000"]
    assert "half" not in tables(empty_db)


def test_ctrl_c_stops_a_deferred_check_before_the_commit(empty_db: str, tmp_path) -> None:
    # A deferred trigger runs at COMMIT, which Ctrl-C was held off from: the migration
    # ran to its end (20 s here) and was kept although the user had stopped it.
    slow_at_commit = """-- migrate:up
CREATE TABLE slow (x int);
CREATE FUNCTION slow_check() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER slow_at_commit AFTER INSERT ON slow
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_check();
INSERT INTO slow VALUES (1);
"""
    folder = write(tmp_path / "m", {"20260101000000_slow.sql": slow_at_commit})
    err = _interrupted_mid_statement(empty_db, folder, "migrate", "--statement-timeout", "0")
    assert "20260101000000_slow.sql was under way and rolled back" in err, err
    assert applied(empty_db) == [] and "slow" not in tables(empty_db)


def test_ctrl_c_during_a_rollback_says_what_was_rolled_back_and_exits_130(
    empty_db: str, tmp_path
) -> None:
    slow_down = "-- migrate:up\nCREATE TABLE half (id int);\n-- migrate:down\n"
    slow_down += "DROP TABLE half;\nSELECT pg_sleep(60);\n"
    folder = write(
        tmp_path / "m", {"20260101000000_notes.sql": NOTES, "20260102000000_half.sql": slow_down}
    )
    assert migrate(empty_db, folder).returncode == 0
    err = _interrupted_mid_statement(empty_db, folder, "rollback", "--steps", "2")
    assert (
        "interrupted: rolled back none; 20260102000000_half.sql's down section was under "
        "way and rolled back: it is still applied"
    ) in err, err
    assert applied(empty_db) == ["20260101000000", "20260102000000"]
    assert "half" in tables(empty_db)


# -- fail fast instead of blocking users ---------------------------------------------------


def test_an_alter_queued_behind_a_long_transaction_gives_up_after_lock_timeout(
    empty_db: str, tmp_path
) -> None:
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    assert migrate(empty_db, folder).returncode == 0
    write(folder, {"20260102000000_add_colour.sql": ADD_COLOUR})
    with psycopg.connect(empty_db) as reader:  # a transaction that holds the table open
        reader.execute("SELECT * FROM notes").fetchall()
        result = migrate(empty_db, folder, "--lock-timeout", "300ms")
        # While migrate waited (and after it gave up), readers were never stuck behind it.
        assert reader.execute("SELECT count(*) FROM notes").fetchone() == (1,)
    assert result.returncode == 1
    assert "canceling statement due to lock timeout" in result.stderr
    assert "20260102000000_add_colour.sql:2" in result.stderr
    assert "bin/db-sessions" in result.stderr  # the hint: find the long transaction
    assert applied(empty_db) == ["20260101000000"]
    assert columns(empty_db, "notes") == ["id", "body"]


@pytest.mark.parametrize("prod", [False, True])
def test_a_rollback_that_gives_up_says_to_roll_back_again_not_to_migrate(
    empty_db: str, tmp_path, prod: bool
) -> None:
    # Its hint was the migration's: "nothing of this migration was applied … then migrate
    # again". The migration is still applied, and migrating again does nothing. On
    # production it named the local sessions' command (README: `bin/db-sessions prod`).
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    assert migrate(empty_db, folder).returncode == 0
    where = ("prod", "--yes") if prod else ()
    env = (
        {"PROD_CONNECTION_URL": empty_db, "CONNECTION_URL": "postgresql://nobody@127.0.0.1:1/x"}
        if prod
        else local(empty_db)
    )
    with psycopg.connect(empty_db) as reader:  # a transaction that holds the table open
        reader.execute("SELECT * FROM notes").fetchall()
        result = cli(
            "db-rollback", *where, "--migrations-dir", str(folder), "--lock-timeout", "300ms",
            env=env, cwd=ROOT,
        )  # fmt: skip
    assert result.returncode == 1
    assert "canceling statement due to lock timeout" in result.stderr
    hint = result.stderr.split("hint: ", 1)[1]
    assert "nothing was rolled back: 20260101000000_notes.sql is still applied" in hint, hint
    assert "then roll back again" in hint, hint
    assert "migrate" not in hint, hint
    sessions = "`bin/db-sessions prod`" if prod else "`bin/db-sessions`"
    assert f"Find it with {sessions}," in hint, hint
    assert applied(empty_db) == ["20260101000000"]


def test_a_rollback_that_fails_part_way_says_how_many_went_and_the_steps_left(
    empty_db: str, tmp_path
) -> None:
    # The hint said "nothing was rolled back … then roll back again", though the first of
    # the two had gone: the same command again rolled back one migration too many.
    other = "-- migrate:up\nCREATE TABLE other (id int);\n-- migrate:down\nDROP TABLE other;\n"
    folder = write(
        tmp_path / "m", {"20260101000000_notes.sql": NOTES, "20260102000000_other.sql": other}
    )
    assert migrate(empty_db, folder).returncode == 0
    with psycopg.connect(empty_db) as reader:  # holds notes, the second step's table
        reader.execute("SELECT * FROM notes").fetchall()
        result = cli(
            "db-rollback", "--migrations-dir", str(folder), "--steps", "2",
            "--lock-timeout", "300ms", env=local(empty_db),
        )  # fmt: skip
    assert result.returncode == 1
    assert "rolled back 20260102000000_other.sql" in result.stderr
    hint = result.stderr.split("hint: ", 1)[1]
    assert "1 of 2 rolled back" in hint and "nothing was rolled back" not in hint, hint
    assert "20260101000000_notes.sql is still applied" in hint, hint
    assert "roll back the rest with --steps 1" in hint, hint
    assert applied(empty_db) == ["20260101000000"]


def test_a_down_section_fixed_after_it_failed_rolls_back_as_the_hint_says(
    empty_db: str, tmp_path
) -> None:
    # A review: the hint said "fix it, then roll back the rest with --steps 2", and the
    # rollback then refused the fixed file as edited, with no way on; migrate's
    # --accept-edited applied again what had just been rolled back.
    def section(name: str, down: str) -> str:
        return f"-- migrate:up\nCREATE TABLE {name} (id int);\n-- migrate:down\n{down}\n"

    files = {
        "20260101000000_a.sql": section("a", "DROP TABLE a;"),
        "20260101000001_b.sql": section("b", "DROP TABLE nonexistent;"),
        "20260101000002_c.sql": section("c", "DROP TABLE c;"),
    }
    folder = write(tmp_path / "m", files)
    assert migrate(empty_db, folder).returncode == 0
    failed = cli("db-rollback", "--migrations-dir", str(folder), "--steps", "3",
                 env=local(empty_db))  # fmt: skip
    assert failed.returncode == 1
    hint = " ".join(failed.stderr.split("hint: ", 1)[1].split())
    assert "roll back the rest with --steps 2 --accept-edited 20260101000001" in hint, hint
    (folder / "20260101000001_b.sql").write_text(section("b", "DROP TABLE b;"))
    plain = cli("db-rollback", "--migrations-dir", str(folder), "--steps", "2",
                env=local(empty_db))  # fmt: skip
    assert plain.returncode == 1
    assert "roll back with --accept-edited 20260101000001" in " ".join(plain.stderr.split())
    again = cli("db-rollback", "--migrations-dir", str(folder), "--steps", "2",
                "--accept-edited", "20260101000001", env=local(empty_db))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert applied(empty_db) == []
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('a'), to_regclass('b'), to_regclass('c')"
                            ).fetchone() == (None, None, None)  # fmt: skip


def test_statement_timeout_stops_a_long_statement(empty_db: str, tmp_path) -> None:
    folder = write(
        tmp_path / "m", {"20260101000000_slow.sql": "-- migrate:up\nSELECT pg_sleep(30);\n"}
    )
    result = migrate(empty_db, folder, "--statement-timeout", "200ms")
    assert result.returncode == 1
    assert "canceling statement due to statement timeout" in result.stderr
    assert applied(empty_db) == []


def test_timeouts_come_from_the_environment_too(empty_db: str, tmp_path) -> None:
    folder = write(
        tmp_path / "m", {"20260101000000_slow.sql": "-- migrate:up\nSELECT pg_sleep(30);\n"}
    )
    env = local(empty_db, CRUDDUR_MIGRATION_STATEMENT_TIMEOUT="200ms")
    result = cli("db-migrate", "--migrations-dir", str(folder), env=env)
    assert result.returncode == 1 and "statement timeout" in result.stderr
    bad = cli("db-migrate", env=local(empty_db, CRUDDUR_MIGRATION_LOCK_TIMEOUT="soon"))
    assert bad.returncode == 1
    assert "CRUDDUR_MIGRATION_LOCK_TIMEOUT must be a duration" in bad.stderr


# -- edited, out of order -----------------------------------------------------------------


def test_an_edited_migration_is_reported_and_migrate_refuses_until_accepted(
    empty_db: str, tmp_path
) -> None:
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    assert migrate(empty_db, folder).returncode == 0
    write(folder, {"20260101000000_notes.sql": NOTES.replace("kept", "changed")})
    write(folder, {"20260102000000_add_colour.sql": ADD_COLOUR})
    status = cli(
        "db-migrations", "--migrations-dir", str(folder), "--exit-code", env=local(empty_db)
    )
    assert status.returncode == 1 and "EDITED since applied" in status.stdout
    refused = migrate(empty_db, folder)
    assert refused.returncode == 1
    assert "changed since applied: 20260101000000_notes.sql" in refused.stderr
    assert applied(empty_db) == ["20260101000000"]  # the pending one did not run either
    for dry in ((), ("--dry-run",)):  # a dry run refuses what the run would
        typo = migrate(empty_db, folder, "--accept-edited", "20260101000001", *dry)
        assert typo.returncode == 1 and "no applied migration has that version" in typo.stderr
    accepted = migrate(empty_db, folder, "--accept-edited", "20260101000000")
    assert accepted.returncode == 0, accepted.stderr
    assert "recorded the edited 20260101000000_notes.sql's checksum" in accepted.stderr
    assert applied(empty_db) == ["20260101000000", "20260102000000"]
    assert migrate(empty_db, folder).returncode == 0


def test_accepting_an_edited_migration_on_production_asks_first(empty_db: str, tmp_path) -> None:
    # With nothing pending, --accept-edited wrote the new checksum to production's
    # schema_migrations without asking, and said only that nothing was to migrate.
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    assert migrate(empty_db, folder).returncode == 0
    write(folder, {"20260101000000_notes.sql": NOTES + "-- a comment\n"})
    env = {"PROD_CONNECTION_URL": empty_db, "CONNECTION_URL": "postgresql://nobody@127.0.0.1:1/x"}
    args = ("prod", "--migrations-dir", str(folder), "--accept-edited", "20260101000000")
    with psycopg.connect(empty_db) as conn:
        checksum = "SELECT checksum FROM schema_migrations"
        before = conn.execute(checksum).fetchone()
    refused = run("db-migrate", *args, env=env)  # no answer on stdin
    assert refused.returncode == 1 and "not confirmed" in refused.stderr, refused.stderr
    assert "record the edited checksum of 20260101000000_notes.sql" in refused.stderr
    assert "apply 0 migration(s)" not in refused.stderr  # nothing pending: not said
    with psycopg.connect(empty_db) as conn:
        assert conn.execute(checksum).fetchone() == before
    typed = run("db-migrate", *args, env=env, stdin=f"{database_name(empty_db)}\n")
    assert typed.returncode == 0, typed.stderr
    assert "recorded the edited 20260101000000_notes.sql's checksum" in typed.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute(checksum).fetchone() != before


def test_an_older_migration_from_another_branch_is_applied_and_said_so(
    empty_db: str, tmp_path
) -> None:
    folder = write(
        tmp_path / "m",
        {"20260101000000_notes.sql": NOTES, "20260103000000_add_size.sql": ADD_SIZE},
    )
    assert migrate(empty_db, folder).returncode == 0
    write(folder, {"20260102000000_add_colour.sql": ADD_COLOUR})  # merged later
    strict = migrate(empty_db, folder, "--strict")
    assert strict.returncode == 1 and "out of order" in strict.stderr
    assert "colour" not in columns(empty_db, "notes")
    result = migrate(empty_db, folder)
    assert result.returncode == 0, result.stderr
    assert (
        "20260102000000_add_colour.sql is out of order: older than 20260103000000" in result.stderr
    )
    assert applied(empty_db) == ["20260101000000", "20260102000000", "20260103000000"]


# -- production ---------------------------------------------------------------------------


def test_production_migrate_asks_for_the_database_name_and_never_shows_the_password(
    empty_db: str, login_role: str, admin, tmp_path
) -> None:
    name = database_name(empty_db)
    admin.execute(f'ALTER DATABASE "{name}" OWNER TO "{login_role}"')
    try:
        check_production_migrate(empty_db, login_role, tmp_path)
    finally:  # give everything back, so that the role can be dropped
        with psycopg.connect(empty_db, autocommit=True) as conn:
            conn.execute(f'REASSIGN OWNED BY "{login_role}" TO CURRENT_USER')
        admin.execute(f'ALTER DATABASE "{name}" OWNER TO CURRENT_USER')


def check_production_migrate(url: str, role: str, tmp_path: Path) -> None:
    prod = as_role(url, role, "right-password")
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    env = {"PROD_CONNECTION_URL": prod, "CONNECTION_URL": "postgresql://nobody@127.0.0.1:1/x"}
    args = ("prod", "--migrations-dir", str(folder))
    refused = run("db-migrate", *args, env=env)  # no answer on stdin
    assert refused.returncode == 1 and "not confirmed" in refused.stderr
    assert "20260101000000_notes.sql" in refused.stderr  # the pending list came first
    assert applied(url) == []
    typed = run("db-migrate", *args, env=env, stdin=f"{database_name(url)}\n")
    assert typed.returncode == 0, typed.stderr
    assert applied(url) == ["20260101000000"]
    back = run("db-rollback", *args, "--yes", env=env)
    assert back.returncode == 0, back.stderr
    assert applied(url) == []
    for output in (refused, typed, back):
        assert "right-password" not in output.stdout + output.stderr
        assert "(production)" in output.stderr


def test_a_migration_url_is_used_when_given_and_must_name_the_same_database(
    empty_db: str, tmp_path
) -> None:
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    name = database_name(empty_db)
    pooled = f"postgresql://postgres@127.0.0.1:1/{name}"  # a pooler that is not there
    result = migrate_with(pooled, folder, MIGRATION_CONNECTION_URL=empty_db)
    assert result.returncode == 0, result.stderr
    assert "migrating through MIGRATION_CONNECTION_URL" in result.stderr
    # The pooler does not answer, so whether both reach one database is not known.
    assert "could not check that MIGRATION_CONNECTION_URL reaches the target's" in result.stderr
    assert applied(empty_db) == ["20260101000000"]
    other = migrate_with(
        pooled.replace(name, "elsewhere"), folder, MIGRATION_CONNECTION_URL=empty_db
    )
    assert other.returncode == 1 and "must be the same database" in other.stderr


def test_a_migration_url_on_another_server_is_refused_though_the_name_is_the_same(
    empty_db: str, tmp_path
) -> None:
    from tls_support import make_server_cert, tls_postgres

    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    name = database_name(empty_db)
    with tls_postgres(make_server_cert(["127.0.0.1"], None)) as port:  # another server
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres") as conn:
            conn.autocommit = True
            conn.execute(f'CREATE DATABASE "{name}"')
        elsewhere = f"postgresql://postgres@127.0.0.1:{port}/{name}"
        for verb in ("db-migrate", "db-migrations", "db-rollback"):
            refused = cli(
                verb, "--migrations-dir", str(folder),
                env=local(empty_db, MIGRATION_CONNECTION_URL=elsewhere),
            )  # fmt: skip
            assert refused.returncode == 1, refused.stderr
            assert "MIGRATION_CONNECTION_URL reaches another database than the target" in (
                refused.stderr
            )
            assert "Traceback" not in refused.stderr
        assert applied(elsewhere) == [] and applied(empty_db) == []
        # db setup finds out before it drops anything.
        with psycopg.connect(empty_db) as conn:
            conn.execute("CREATE TABLE keep_me ()")
        refused = run("db-setup", env=local(empty_db, MIGRATION_CONNECTION_URL=elsewhere))
        assert refused.returncode == 1, refused.stderr
        assert "reaches another database than the target" in refused.stderr
        assert "dropped" not in refused.stderr and tables(empty_db) == {"keep_me"}
        with psycopg.connect(empty_db) as conn:
            conn.execute("DROP TABLE keep_me")
    # The same database spelt another way (a name for its address) is the same.
    same = migrate_with(
        empty_db, folder, MIGRATION_CONNECTION_URL=empty_db.replace("@127.0.0.1:", "@localhost:")
    )
    assert same.returncode == 0, same.stderr
    assert "could not check" not in same.stderr
    assert applied(empty_db) == ["20260101000000"]


def test_setup_refuses_a_pooler_for_migrations_before_dropping_anything(empty_db: str) -> None:
    # It dropped and created the database, then refused to migrate through the pooler.
    with psycopg.connect(empty_db) as conn:
        conn.execute("CREATE TABLE keep_me ()")
    refused = run("db-setup", env=local(empty_db, CRUDDUR_POOLER="transaction"))
    assert refused.returncode == 1, refused.stderr
    assert "goes through a transaction pooler" in refused.stderr
    assert "dropped" not in refused.stderr and tables(empty_db) == {"keep_me"}


def test_a_migration_url_that_names_production_asks_first(empty_db: str, tmp_path) -> None:
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    name = database_name(empty_db)
    pooled = f"postgresql://postgres@127.0.0.1:1/{name}"  # a local pooler, not production
    env = {
        "PROD_CONNECTION_URL": empty_db.replace("@127.0.0.1:", "@localhost:"),  # a tunnel
        "MIGRATION_CONNECTION_URL": empty_db,
    }
    refused = migrate_with(pooled, folder, **env)  # no answer on stdin
    assert refused.returncode == 1 and "not confirmed" in refused.stderr
    assert "PRODUCTION" in refused.stderr
    assert applied(empty_db) == []
    typed = run(
        "db-migrate", "--migrations-dir", str(folder), env=local(pooled, **env), stdin=name + "\n"
    )
    assert typed.returncode == 0, typed.stderr
    back = run("db-rollback", "--migrations-dir", str(folder), env=local(pooled, **env))
    assert back.returncode == 1 and "not confirmed" in back.stderr
    assert applied(empty_db) == ["20260101000000"]


class Tunnel:
    """A TCP forwarder on a port of its own to `url`'s server: production reached by
    another address, as through an SSH tunnel or a pooler."""

    def __init__(self, url: str) -> None:
        params = conninfo_to_dict(url)
        self.to = (params.get("host") or "127.0.0.1", int(params.get("port") or 5432))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = make_conninfo(url, host="127.0.0.1", port=self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near = self.listener.accept()[0]
            except OSError:
                return  # closed
            far = socket.create_connection(self.to)
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def test_setup_through_a_tunnel_to_production_asks_before_dropping(
    empty_db: str, tmp_path: Path
) -> None:
    # CONNECTION_URL reaches production by another address (a tunnel); the migrations'
    # URL names it: setup's drop, migrations and roles are production's, so it asks first.
    with psycopg.connect(empty_db) as conn:
        conn.execute("CREATE TABLE keep_me ()")
    home = tmp_path / "home"
    env = {
        "PROD_CONNECTION_URL": empty_db, "MIGRATION_CONNECTION_URL": empty_db,
        "CRUDDUR_HOME": str(home),
    }  # fmt: skip
    tunnel = Tunnel(empty_db)
    try:
        refused = run("db-setup", env=local(tunnel.url, **env))
        assert refused.returncode == 1, refused.stderr
        assert "not confirmed" in refused.stderr and "PRODUCTION" in refused.stderr
        assert "dropped" not in refused.stderr and tables(empty_db) == {"keep_me"}
        # The question names the server the migrations change, not only the tunnel's.
        assert f"migrations through MIGRATION_CONNECTION_URL: {redact(empty_db)}" in " ".join(
            refused.stderr.split()
        )
        typed = run("db-setup", env=local(tunnel.url, **env), stdin=database_name(empty_db))
    finally:
        tunnel.close()
    assert typed.returncode == 0, typed.stderr
    assert "keep_me" not in tables(empty_db)
    # Production's roles file, written when a role is made or else named as where the
    # URLs would be (roles made by an earlier test leave no new password to write).
    assert not (home / "db-roles.env").exists()
    made = sorted(p.name for p in home.glob("db-roles*"))
    assert made == ["db-roles-prod.env"] or str(home / "db-roles-prod.env") in typed.stderr, (
        typed.stderr
    )


def migrate_with(url: str, folder: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return cli("db-migrate", "--migrations-dir", str(folder), env=local(url, **extra))


# -- adoption -----------------------------------------------------------------------------


def old_schema_load_and_seed(url: str) -> None:
    """What `schema-load` and `seed` made before migrations: the first migration's schema
    (schema.sql has moved on since), no schema_migrations, the seed's rows."""
    first = sorted(package_dir().glob("*.sql"))[0]
    up = first.read_text().split("-- migrate:up", 1)[1].split("-- migrate:down", 1)[0]
    with Db(url) as db:
        run_script(db, up, first.name)
        run_script(db, packaged_script("seed.sql"), "seed.sql")


def test_a_schema_load_database_with_rows_is_adopted_and_keeps_every_row(empty_db: str) -> None:
    old_schema_load_and_seed(empty_db)
    with psycopg.connect(empty_db) as conn:
        before = conn.execute("SELECT count(*) FROM users").fetchone()[0]
    result = cli("db-migrate", env=local(empty_db))
    assert result.returncode == 0, result.stderr
    assert "adopted 20261201000000_initial_schema.sql" in result.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == before == 3
        rows = conn.execute("SELECT adopted FROM schema_migrations ORDER BY version").fetchall()
    # The first is adopted; any later migration then runs.
    assert rows == [(True,)] + [(False,)] * (len(list(package_dir().glob("*.sql"))) - 1)


def test_handles_that_differ_only_in_case_stop_the_migration_naming_them(empty_db: str) -> None:
    # One handle per person whatever its case: a database where `Londo` and `londo` are
    # two users is not changed, and the migration says which to rename.
    old_schema_load_and_seed(empty_db)
    with psycopg.connect(empty_db) as conn:
        conn.execute(
            "INSERT INTO users (display_name, handle, email, cognito_user_id)"
            " VALUES ('Londo Again', 'Londo', 'l2@example.com', 'sub-londo-2')"
        )
    refused = cli("db-migrate", env=local(empty_db))
    assert refused.returncode != 0
    assert "handles that differ only in case: Londo and londo" in refused.stderr, refused.stderr
    assert "give all but one of each another handle" in refused.stderr
    with psycopg.connect(empty_db) as conn:
        assert (
            conn.execute("SELECT to_regclass('public.users_handle_any_case_key')").fetchone()[0]
            is None
        )
        conn.execute("UPDATE users SET handle = 'LondoMollari' WHERE handle = 'Londo'")
    again = cli("db-migrate", env=local(empty_db))
    assert again.returncode == 0, again.stderr
    with psycopg.connect(empty_db) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("UPDATE users SET handle = 'LONDO' WHERE handle = 'LondoMollari'")


INFINITE = {  # cruds an import left with a time the API cannot read back or show
    "bbbbbbbb-0000-4000-8000-000000000001": ("now", "infinity"),
    "bbbbbbbb-0000-4000-8000-000000000002": ("-infinity", "tomorrow"),
}


def _imported_cruds(url: str, cruds: dict[str, tuple[str, str]]) -> list[tuple]:
    """The old schema and seed, with `cruds` (uuid: created_at, expires_at) imported as
    psql would; every crud's row as text, to tell later that nothing changed."""
    old_schema_load_and_seed(url)
    with psycopg.connect(url) as conn:
        for uuid, times in cruds.items():
            conn.execute(
                "INSERT INTO activities (uuid, user_uuid, message, created_at, expires_at)"
                " VALUES (%s, (SELECT uuid FROM users WHERE handle = 'londo'), 'imported',"
                " %s::timestamptz, %s::timestamptz)",
                [uuid, *times],
            )
        return conn.execute("SELECT a::text FROM activities a ORDER BY uuid").fetchall()


def test_infinite_times_in_cruds_stop_the_migration_naming_them(empty_db: str) -> None:
    # A crud's times are finite from the migration on; a database that has infinite ones
    # is not changed, and the migration names them to fix.
    before = _imported_cruds(empty_db, INFINITE)
    refused = cli("db-migrate", env=local(empty_db))
    assert refused.returncode != 0
    assert "cruds with an infinite created_at or expires_at (2):" in refused.stderr, refused.stderr
    for uuid in INFINITE:
        assert uuid in refused.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT a::text FROM activities a ORDER BY uuid").fetchall() == before
        finite = "SELECT count(*) FROM pg_constraint WHERE conname = 'activities_times_finite'"
        assert conn.execute(finite).fetchone()[0] == 0
        gone, fixed = INFINITE
        conn.execute("DELETE FROM activities WHERE uuid = %s", [gone])
        conn.execute("UPDATE activities SET created_at = now() WHERE uuid = %s", [fixed])
    again = cli("db-migrate", env=local(empty_db))
    assert again.returncode == 0, again.stderr
    with psycopg.connect(empty_db) as conn:
        valid = "SELECT convalidated FROM pg_constraint WHERE conname = 'activities_times_finite'"
        assert conn.execute(valid).fetchone()[0] is True
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE activities SET expires_at = 'infinity'")


OUT_OF_RANGE = {  # cruds psql or an import left with a time a datetime cannot hold
    "cccccccc-0000-4000-8000-000000000001": ("0001-06-01 00:00+00 BC", "9999-01-01+00"),
    "cccccccc-0000-4000-8000-000000000002": ("now", "10000-01-01+00"),
    "cccccccc-0000-4000-8000-000000000003": ("0001-01-01 00:00+00", "now"),  # 1 BC in New York
}


def test_times_out_of_a_datetimes_range_in_cruds_stop_the_migration_naming_them(
    empty_db: str,
) -> None:
    # A crud's times are within years 1 to 9999 in every time zone from the migration on;
    # a database that has others is not changed, and the migration names them to fix.
    before = _imported_cruds(empty_db, OUT_OF_RANGE)
    refused = cli("db-migrate", env=local(empty_db))
    assert refused.returncode != 0
    assert (
        "cruds with a created_at or expires_at outside 0001-01-02 to 9999-12-30 UTC,"
        " which the API cannot read back (3):" in refused.stderr
    ), refused.stderr
    assert (
        "cccccccc-0000-4000-8000-000000000002 (created_at " in refused.stderr
        and "expires_at 10000-01-01 00:00:00 UTC)" in refused.stderr
    )
    assert "created_at 0001-06-01 00:00:00 BC UTC" in refused.stderr
    for uuid in OUT_OF_RANGE:
        assert uuid in refused.stderr
    in_range = "SELECT count(*) FROM pg_constraint WHERE conname = 'activities_times_in_range'"
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT a::text FROM activities a ORDER BY uuid").fetchall() == before
        assert conn.execute(in_range).fetchone()[0] == 0
        bc, far, edge = OUT_OF_RANGE
        conn.execute("DELETE FROM activities WHERE uuid = %s", [bc])
        conn.execute(
            "UPDATE activities SET expires_at = now() + interval '1 day' WHERE uuid = %s", [far]
        )
        conn.execute(
            "UPDATE activities SET created_at = now() - interval '1 day' WHERE uuid = %s", [edge]
        )
    again = cli("db-migrate", env=local(empty_db))
    assert again.returncode == 0, again.stderr
    with psycopg.connect(empty_db) as conn:
        valid = "SELECT convalidated FROM pg_constraint WHERE conname = 'activities_times_in_range'"
        assert conn.execute(valid).fetchone()[0] is True
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE activities SET expires_at = '10000-01-01+00'")


def test_a_database_to_adopt_counts_as_pending_for_exit_code(empty_db: str, tmp_path) -> None:
    old_schema_load_and_seed(empty_db)
    first = sorted(package_dir().glob("*.sql"))[0]
    folder = write(tmp_path / "m", {first.name: first.read_text()})  # nothing else pending
    listed = cli(
        "db-migrations", "--migrations-dir", str(folder), "--exit-code", env=local(empty_db)
    )
    assert listed.returncode == 1, listed.stderr  # migrate would still change the database
    assert "0 applied, 1 pending (1 to adopt)" in listed.stderr
    assert cli("db-migrate", "--migrations-dir", str(folder), env=local(empty_db)).returncode == 0
    again = cli(
        "db-migrations", "--migrations-dir", str(folder), "--exit-code", env=local(empty_db)
    )
    assert again.returncode == 0 and "1 applied, 0 pending" in again.stderr, again.stderr


def test_an_empty_database_with_an_extensions_views_is_migrated(empty_db: str, tmp_path) -> None:
    # pg_buffercache's view (pg_stat_statements' too, common on RDS) counted as a table:
    # the empty database was taken for one to adopt and refused as an unknown schema.
    # A view and a table made members of plpgsql, which every server has (the embedded
    # one has no pg_buffercache): to PostgreSQL, an extension's own objects, as those are.
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE VIEW public.ext_view AS SELECT 1 AS one")
        conn.execute("CREATE TABLE public.ext_table (id int)")
        conn.execute("ALTER EXTENSION plpgsql ADD VIEW public.ext_view")
        conn.execute("ALTER EXTENSION plpgsql ADD TABLE public.ext_table")
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    result = migrate(empty_db, folder)
    assert result.returncode == 0, result.stderr
    assert "adopt" not in result.stderr
    assert applied(empty_db) == ["20260101000000"]


def test_an_unknown_schema_is_refused_and_never_altered(empty_db: str) -> None:
    with psycopg.connect(empty_db) as conn:
        conn.execute("CREATE TABLE users (id int)")
    result = cli("db-migrate", env=local(empty_db))
    assert result.returncode == 1
    assert "not the schema 20261201000000_initial_schema.sql makes" in result.stderr
    assert "nothing was changed" in result.stderr
    # The table that is missing is named first, not its 20-odd columns and indexes.
    assert "missing table: public.activities" in result.stderr, result.stderr
    assert "missing column: public.activities" not in result.stderr
    assert tables(empty_db) == {"users"}
    assert columns(empty_db, "users") == ["id"]


def test_another_tools_schema_migrations_table_is_named_and_left_alone(
    empty_db: str, tmp_path
) -> None:
    # dbmate's (and Rails') table of the same name has a version column alone: migrate
    # ended in 'column "name" does not exist', status in "reachable no".
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)")
        conn.execute("INSERT INTO schema_migrations VALUES ('20200101000000')")
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    for command in ("db-migrate", "db-migrations"):
        result = cli(command, "--migrations-dir", str(folder), env=local(empty_db))
        assert result.returncode == 1
        assert "public.schema_migrations is not Cruddur's (its columns: version;" in (result.stderr)
    assert tables(empty_db) == {"schema_migrations"}
    assert columns(empty_db, "schema_migrations") == ["version"]


def test_schema_load_records_every_migration_so_migrate_has_nothing_to_do(empty_db: str) -> None:
    assert run("db-schema-load", env=local(empty_db)).returncode == 0
    assert applied(empty_db) == [p.name[:14] for p in sorted(package_dir().glob("*.sql"))]
    result = cli("db-migrate", env=local(empty_db))
    assert result.returncode == 0 and "nothing (else) to migrate" in result.stderr


def test_schema_load_on_production_says_migrate_is_the_way(empty_db: str) -> None:
    env = {"PROD_CONNECTION_URL": empty_db}
    result = run("db-schema-load", "prod", env=env)  # not confirmed: nothing happens
    assert result.returncode == 1
    assert "bin/db-migrate prod" in result.stderr
    assert tables(empty_db) == set()


def test_setup_if_missing_adopts_a_schema_load_database_and_status_says_so(
    empty_db: str,
) -> None:
    old_schema_load_and_seed(empty_db)  # what `bin/run` met before migrations
    before = run(str(BIN.parent / ".venv" / "bin" / "cruddur"), "db", "status", env=local(empty_db))
    assert "migrations none recorded: a schema-load database" in before.stdout
    result = run("db-setup", "--if-missing", env=local(empty_db))  # what bin/run does
    assert result.returncode == 0, result.stderr
    assert "adopted 20261201000000_initial_schema.sql" in result.stderr
    assert "not seeded" in result.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (3,)  # not seeded twice
    after = run(str(BIN.parent / ".venv" / "bin" / "cruddur"), "db", "status", env=local(empty_db))
    count = len(list(package_dir().glob("*.sql")))  # adopted the first, applied the rest
    assert f"migrations {count} applied, 0 pending" in after.stdout


def test_status_names_what_fails_the_deploy_gate(seeded_db: str) -> None:
    # `db status` said "N applied, 0 pending" while `db migrations --exit-code` failed on
    # an applied migration with no file here and on an INVALID index.
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) "
            "VALUES ('20991231235959', 'from_a_newer_checkout', 'x')"
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY one_ttl ON activities ((1))")
    status = run(
        str(BIN.parent / ".venv" / "bin" / "cruddur"), "db", "status", env=local(seeded_db)
    )
    assert status.returncode == 0, status.stderr
    assert "1 applied with no file here, 1 INVALID index(es)" in status.stdout, status.stdout


def test_rollback_with_nothing_applied_says_so(empty_db: str, tmp_path) -> None:
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    result = cli("db-rollback", "--migrations-dir", str(folder), env=local(empty_db))
    assert result.returncode == 1
    assert "only 0 migrations are applied; cannot roll back 1" in result.stderr


def test_a_failed_concurrent_index_is_named_as_invalid(empty_db: str, tmp_path) -> None:
    duplicates = NOTES.replace(
        "INSERT INTO notes VALUES (1, 'kept');", "INSERT INTO notes VALUES (1, 'a'), (2, 'a');"
    )
    unique = (
        "-- migrate:up transaction:false\n"
        "CREATE UNIQUE INDEX CONCURRENTLY notes_body_key ON notes (body);\n"
    )
    folder = write(
        tmp_path / "m",
        {"20260101000000_notes.sql": duplicates, "20260102000000_unique.sql": unique},
    )
    result = migrate(empty_db, folder)
    assert result.returncode == 1
    assert "20260102000000_unique.sql:2: could not create unique index" in result.stderr
    assert "it ran outside a transaction (transaction:false)" in result.stderr
    assert applied(empty_db) == ["20260101000000"]
    status = cli("db-migrations", "--migrations-dir", str(folder), env=local(empty_db))
    assert "index notes_body_key is INVALID" in status.stderr
    assert "DROP INDEX CONCURRENTLY notes_body_key" in status.stderr


def _notes_then_index(
    empty_db: str, tmp_path: Path, index: str
) -> tuple[Path, dict[str, str], list[str]]:
    """The notes table migrated, an index migration written after it but not run: its
    folder, the local environment, and the `bin/db-migrate` command that would run it."""
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    assert migrate(empty_db, folder).returncode == 0
    write(folder, {"20260102000000_index.sql": index})
    env = {k: v for k, v in os.environ.items() if k != "PROD_CONNECTION_URL"}
    env.update(NO_COLOR="1", CONNECTION_URL=empty_db)
    command = [str(BIN / "db-migrate"), "--migrations-dir", str(folder), "--lock-timeout", "60s"]
    return folder, env, command


def test_a_migrate_during_another_ones_concurrent_index_build_waits_for_it(
    empty_db: str, tmp_path
) -> None:
    # A CREATE INDEX CONCURRENTLY is INVALID until it ends. The second deploy read it as
    # one a failed build left: it refused (exit 1) before waiting for the lock, and told
    # the operator to DROP INDEX CONCURRENTLY it, which would have dropped the first
    # deploy's index just after that one recorded its migration as applied.
    index = (
        "-- migrate:up transaction:false\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS notes_body_idx ON notes (body);\n"
    )
    folder, env, command = _notes_then_index(empty_db, tmp_path, index)
    with psycopg.connect(empty_db) as old:  # a snapshot the build must wait out
        old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        old.execute("SELECT count(*) FROM notes")
        first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        with psycopg.connect(empty_db, autocommit=True) as look:
            deadline = time.monotonic() + 30
            while look.execute("SELECT to_regclass('notes_body_idx')").fetchone() == (None,):
                assert time.monotonic() < deadline, "the index build did not start"
                time.sleep(0.05)
        status = cli("db-migrations", "--migrations-dir", str(folder), env=local(empty_db))
        second = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        # Both connected: the second's checks ran, or run, while the first builds.
        connected = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cruddur-migrate'"
            " AND datname = current_database()"  # not another test's migration
        )
        with psycopg.connect(empty_db, autocommit=True) as look:
            while second.poll() is None and look.execute(connected).fetchone()[0] < 2:
                assert time.monotonic() < deadline, "the second migrate neither waited nor ended"
                time.sleep(0.05)
    # The old snapshot is gone: the build ends, then the second migrate takes the lock.
    errs = [p.communicate(timeout=60)[1] for p in (first, second)]
    assert "INVALID" not in status.stderr, status.stderr
    assert [p.returncode for p in (first, second)] == [0, 0], errs
    assert "applied 20260102000000_index.sql" in errs[0]
    assert "INVALID" not in errs[1] and "nothing (else) to migrate" in errs[1], errs[1]
    assert applied(empty_db) == ["20260101000000", "20260102000000"]
    with psycopg.connect(empty_db) as conn:
        valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'notes_body_idx'::regclass"
        assert conn.execute(valid).fetchone() == (True,)


def test_a_concurrent_index_build_cut_off_names_the_migration_and_what_it_may_leave(
    empty_db: str, tmp_path
) -> None:
    # Its session ended mid-build (terminated, a failover): the error said only "the
    # connection is closed" (the timeouts' RESET failed on the dead connection and hid
    # it), naming neither the file nor the INVALID index the build may have left.
    index = (
        "-- migrate:up transaction:false\n"
        "CREATE INDEX CONCURRENTLY notes_body_idx ON notes (body);\n"
    )
    _, env, command = _notes_then_index(empty_db, tmp_path, index)
    building = (
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'cruddur-migrate'"
        " AND query LIKE 'CREATE INDEX CONCURRENTLY%'"
        " AND datname = current_database()"  # a test beside it builds one too
    )
    with psycopg.connect(empty_db) as old:  # a snapshot the build must wait out
        old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        old.execute("SELECT count(*) FROM notes")
        cut = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        with psycopg.connect(empty_db, autocommit=True) as look:
            deadline = time.monotonic() + 30
            while not (pids := look.execute(building).fetchall()):
                assert time.monotonic() < deadline, "the index build did not start"
                time.sleep(0.05)
            look.execute("SELECT pg_terminate_backend(%s)", [pids[0][0]])
        err = cut.communicate(timeout=60)[1]
    assert cut.returncode == 1
    assert "20260102000000_index.sql:2: terminating connection" in err, err
    assert "statement: CREATE INDEX CONCURRENTLY notes_body_idx" in err
    assert "it ran outside a transaction (transaction:false)" in err
    assert "Traceback" not in err
    assert applied(empty_db) == ["20260101000000"]


def test_a_failed_concurrent_index_is_not_recorded_as_applied_when_migrate_runs_again(
    empty_db: str, tmp_path
) -> None:
    # The shipped activities_expires_idx migration's shape: IF NOT EXISTS, which takes an
    # INVALID index left by a failed run as built.
    duplicates = NOTES.replace(
        "INSERT INTO notes VALUES (1, 'kept');", "INSERT INTO notes VALUES (1, 'a'), (2, 'a');"
    )
    unique = (
        "-- migrate:up transaction:false\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS notes_body_key ON notes (body);\n"
    )
    folder = write(
        tmp_path / "m",
        {"20260101000000_notes.sql": duplicates, "20260102000000_unique.sql": unique},
    )
    assert migrate(empty_db, folder).returncode == 1
    for args in (("--dry-run",), ()):
        again = migrate(empty_db, folder, *args)
        assert again.returncode == 1, again.stderr
        assert "INVALID index notes_body_key" in again.stderr
        assert "DROP INDEX CONCURRENTLY notes_body_key" in again.stderr
    assert applied(empty_db) == ["20260101000000"]
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("DROP INDEX CONCURRENTLY notes_body_key")
        conn.execute("DELETE FROM notes WHERE id = 2")
    fixed = migrate(empty_db, folder)
    assert fixed.returncode == 0, fixed.stderr
    assert applied(empty_db) == ["20260101000000", "20260102000000"]
    with psycopg.connect(empty_db) as conn:
        valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'notes_body_key'::regclass"
        assert conn.execute(valid).fetchone() == (True,)


def test_a_table_a_migration_makes_is_the_owners_until_granted_and_the_bookkeeping_too(
    seeded_db: str, api_url: str, tmp_path
) -> None:
    # Least privilege: grant.sql names what each role may touch; a new table is no one's
    # until it does, while the tables it names keep their grants through the migrate.
    folder = tmp_path / "m"
    shutil.copytree(package_dir(), folder)
    likes = "-- migrate:up\nCREATE TABLE public.likes (id serial PRIMARY KEY, note text);\n"
    write(folder, {"29990101000000_likes.sql": likes})
    result = migrate(seeded_db, folder)
    assert result.returncode == 0, result.stderr
    with psycopg.connect(api_url, autocommit=True) as api:  # the API's least-privilege role
        assert api.execute("SELECT count(*) FROM activities").fetchone()[0] > 0
        for statement in (
            "INSERT INTO likes (note) VALUES ('x')",
            "SELECT count(*) FROM likes",
            "SELECT * FROM schema_migrations",
            "DELETE FROM schema_migrations",
            "DROP TABLE likes",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                api.execute(statement)


def test_a_rollback_stopped_outside_a_transaction_fails_the_gate_until_rolled_back_again(
    empty_db: str,
) -> None:
    # DROP INDEX CONCURRENTLY (the expiry index's down section, transaction:false) stopped
    # by its lock timeout left the index INVALID while the migration stayed applied: the
    # gate passed, and the warning's "drop it, then migrate again" lost the index for good.
    assert cli("db-migrate", env=local(empty_db)).returncode == 0
    # The migrations after the two rolled back below go first, with nothing waiting: the
    # reader would stop their ALTER TABLEs before the drop.
    newer = [p for p in package_dir().glob("*.sql") if p.name[:14] > "20261206113000"]
    if newer:
        back = cli("db-rollback", "--steps", str(len(newer)), env=local(empty_db))
        assert back.returncode == 0, back.stderr
    index = "activities_expires_idx"
    # Back to (and including) the migration that made the index, from the one above.
    steps = sum(
        1
        for f in package_dir().glob("*.sql")
        if "20261202073000" <= f.name[:14] <= "20261206113000"
    )
    with psycopg.connect(empty_db) as reader:  # a transaction that the drop waits for
        reader.execute("SELECT count(*) FROM activities").fetchall()
        stopped = cli(
            "db-rollback", "--steps", str(steps), "--lock-timeout", "300ms", env=local(empty_db)
        )
        assert stopped.returncode == 1, stopped.stderr
        assert "still applied, but its down section ran outside a transaction" in stopped.stderr
        with psycopg.connect(empty_db) as conn:
            valid = conn.execute(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", [index]
            ).fetchone()
        assert valid == (False,)
        gate = cli("db-migrations", "--exit-code", env=local(empty_db))
        assert gate.returncode == 1, gate.stdout + gate.stderr
        assert "1 INVALID index" in gate.stderr and "roll back again" in gate.stderr
    again = cli("db-rollback", env=local(empty_db))
    assert again.returncode == 0, again.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass(%s)", [index]).fetchone() == (None,)


def test_a_migrations_session_settings_do_not_carry_over_to_the_next(
    empty_db: str, tmp_path
) -> None:
    # A SET ROLE (not SET LOCAL) stayed for the next migration of the same run: its table
    # was pg_database_owner's, and another's when each ran in a run of its own.
    folder = write(
        tmp_path / "m",
        {
            "20260101000000_a.sql": "-- migrate:up\nSET ROLE pg_database_owner;\n"
            "SET search_path = pg_catalog;\nSELECT 1;\n",
            "20260102000000_b.sql": "-- migrate:up\nCREATE TABLE public.b (id int);\n"
            "CREATE TABLE c (id int);\n",
        },
    )
    assert migrate(empty_db, folder).returncode == 0
    with psycopg.connect(empty_db) as conn:
        me = conn.execute("SELECT current_user").fetchone()[0]  # the one migrate connects as
        owners = conn.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner), n.nspname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname IN ('b', 'c')"
            " ORDER BY 1"
        ).fetchall()
    assert owners == [("b", me, "public"), ("c", me, "public")]


# -- what was confirmed is what runs (a review) ---------------------------------------------


def test_migrate_never_applies_a_migration_that_was_not_confirmed(empty_db: str, tmp_path) -> None:
    # While `migrate --prod` waited for its answer, a colleague rolled back an applied
    # migration: the confirmed run applied it again too, unasked.
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    assert migrate(empty_db, folder).returncode == 0
    write(folder, {"20260102000000_colour.sql": ADD_COLOUR})
    migrations = runner.load(folder)
    settings = MigrationSettings()
    with runner.connect(empty_db, settings.connect_timeout) as conn:
        asked = runner.plan(conn, migrations)  # pending: colour only
    back = cli("db-rollback", "--migrations-dir", str(folder), env=local(empty_db))
    assert back.returncode == 0, back.stderr
    unasked = pytest.raises(runner.MigrationError, match=r"20260101000000_notes\.sql would run")
    with runner.locked(empty_db, settings, Reporter()) as conn, unasked:
        runner.migrate(conn, migrations, settings, Reporter(), confirmed=asked)
    assert applied(empty_db) == []
    # Fewer than confirmed is fine: another migrate applied the rest meanwhile.
    with runner.connect(empty_db, settings.connect_timeout) as conn:
        asked = runner.plan(conn, migrations)  # pending: both
    first = write(tmp_path / "first", {"20260101000000_notes.sql": NOTES})
    assert migrate(empty_db, first).returncode == 0
    with runner.locked(empty_db, settings, Reporter()) as conn:
        done = runner.migrate(conn, migrations, settings, Reporter(), confirmed=asked)
    assert [m.version for m in done] == ["20260102000000"]
    assert applied(empty_db) == ["20260101000000", "20260102000000"]


def test_production_migrate_refuses_an_edited_migration_before_asking(
    empty_db: str, tmp_path
) -> None:
    # It asked for the database's name, then refused for a reason it knew before asking.
    folder = write(tmp_path / "m", {"20260101000000_notes.sql": NOTES})
    assert migrate(empty_db, folder).returncode == 0
    (folder / "20260101000000_notes.sql").write_text(NOTES + "-- edited\n")
    write(folder, {"20260102000000_colour.sql": ADD_COLOUR})
    env = {"PROD_CONNECTION_URL": empty_db, "CONNECTION_URL": "postgresql://nobody@127.0.0.1:1/x"}
    refused = cli("db-migrate", "prod", "--migrations-dir", str(folder), env=env)
    assert refused.returncode == 1, refused.stderr
    assert "changed since applied" in refused.stderr
    assert "Type the database name" not in refused.stderr + refused.stdout
    assert applied(empty_db) == ["20260101000000"]


def test_a_failed_migration_statement_shows_the_servers_detail(empty_db: str, tmp_path) -> None:
    # Only the first line was shown: which key was duplicated was never said.
    twice = """-- migrate:up
CREATE TABLE pairs (k int);
INSERT INTO pairs VALUES (7), (7);
CREATE UNIQUE INDEX pairs_k ON pairs (k);
-- migrate:down
DROP TABLE pairs;
"""
    folder = write(tmp_path / "m", {"20260101000000_pairs.sql": twice})
    failed = migrate(empty_db, folder)
    assert failed.returncode == 1
    assert '20260101000000_pairs.sql:4: could not create unique index "pairs_k"' in failed.stderr
    assert "detail: Key (k)=(7) is duplicated." in failed.stderr
    assert applied(empty_db) == []


def test_schema_load_refuses_another_tools_schema_migrations(empty_db: str) -> None:
    # It dropped dbmate's table, and the history in it, without a word.
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)")
        conn.execute("INSERT INTO schema_migrations VALUES ('20200101000000')")
    refused = cli("db-schema-load", env=local(empty_db))
    assert refused.returncode == 1, refused.stderr
    assert "public.schema_migrations is not Cruddur's" in refused.stderr
    with psycopg.connect(empty_db) as conn:
        kept = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert kept == [("20200101000000",)]
        assert conn.execute("SELECT to_regclass('activities')").fetchone() == (None,)


def test_a_migration_url_without_connection_url_is_refused_before_anything_starts(
    empty_db: str, tmp_path
) -> None:
    # It was ignored: the embedded server was started and migrated, and said "applied".
    home = tmp_path / "home"
    env = {"CONNECTION_URL": "", "MIGRATION_CONNECTION_URL": empty_db, "CRUDDUR_HOME": str(home)}
    for verb in ("db-migrate", "db-migrations", "db-rollback"):
        refused = cli(verb, env=env)
        assert refused.returncode == 1, refused.stderr
        assert "MIGRATION_CONNECTION_URL is set but CONNECTION_URL is not" in refused.stderr
        assert "started the embedded PostgreSQL" not in refused.stderr
    assert not (home / "postgres.json").exists()
    assert applied(empty_db) == []


def test_a_migrations_notices_and_warnings_are_shown(empty_db: str, tmp_path) -> None:
    # They were dropped: psql and dbmate show them, and a migration's author writes
    # RAISE WARNING for the operator to read.
    folder = write(
        tmp_path / "m",
        {
            "20260101000000_says_things.sql": "-- migrate:up\n"
            "DO $$ BEGIN RAISE NOTICE 'hello notice'; RAISE WARNING 'careful now'; END $$;\n"
            "-- migrate:down\nSELECT 1;\n"
        },
    )
    result = migrate(empty_db, folder)
    assert result.returncode == 0, result.stderr
    said = result.stderr
    assert "NOTICE from 20260101000000_says_things.sql: hello notice" in said, said
    assert "WARNING from 20260101000000_says_things.sql: careful now" in said, said
    # The runner's own bookkeeping says nothing of that kind (its table made if missing).
    again = migrate(empty_db, folder)
    assert "NOTICE" not in again.stderr and "already exists" not in again.stderr
