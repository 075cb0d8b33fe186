"""SQL files run as one transaction and stop at the first error; the schema's rules hold."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from helpers import ACTIVITY_COLUMNS, USER_COLUMNS
from psycopg import errors

from cruddur.db import Db, ScriptError, packaged_script, run_script, scripts
from cruddur.db.scripts import split, transaction_control

SCRIPT = """-- a comment first
CREATE TABLE t1 (id int);

/* a block comment; with a semicolon */
INSERT INTO t1 VALUES (1);
DO $$ BEGIN PERFORM 1; PERFORM 2; END $$;
INSERT INTO t1
  VALUES (2),
         (oops);
INSERT INTO t1 VALUES (3);
"""


def test_split_keeps_dollar_quotes_and_finds_each_line() -> None:
    statements = split(SCRIPT)
    assert [s.line for s in statements] == [2, 5, 6, 7, 10]
    assert "PERFORM 2" in statements[2].text


def test_split_cuts_after_a_column_named_begin_but_keeps_an_atomic_body(empty_db: str) -> None:
    # sqlparse read `begin` as a block's start and ran on to the end as one statement: a
    # COMMIT or ROLLBACK after it went unseen by the migrations' checks.
    # As psql cuts: not inside parentheses (a rule's actions), and in an atomic body
    # BEGIN, CASE and END count only outside them and not after a dot (`s.end`).
    text = (
        'CREATE TABLE booking (begin date, "end" date);\nUPDATE booking SET begin = now();\n'
        "CREATE FUNCTION two() RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END;\n"
        "DO $$ BEGIN PERFORM 1; END $$;\n"
        "CREATE TABLE copies (d date);\n"
        "CREATE RULE r AS ON INSERT TO booking DO ALSO (INSERT INTO copies VALUES (NEW.begin);"
        " INSERT INTO copies VALUES (NEW.end));\n"
        "CREATE FUNCTION last_end() RETURNS date LANGUAGE sql\n"
        "BEGIN ATOMIC SELECT max(b.end) FROM booking b; SELECT b.end FROM booking b; END;\n"
    )
    assert [(s.line, s.text.strip().split()[0]) for s in split(text)] == [
        (1, "CREATE"), (2, "UPDATE"), (3, "CREATE"), (5, "DO"), (6, "CREATE"), (7, "CREATE"),
        (8, "CREATE"),
    ]  # fmt: skip
    with Db(empty_db) as db:
        assert run_script(db, text, "booking.sql") == 7
        with db.connection() as conn:
            assert conn.execute("SELECT two()").fetchone() == (2,)
            conn.execute("INSERT INTO booking VALUES ('2026-01-01', '2026-01-02')")
            assert conn.execute("SELECT count(*) FROM copies").fetchone() == (2,)


def test_split_reads_backslashes_as_postgresql_does() -> None:
    # sqlparse read '\' as a quote escaped: the string ran on past its semicolon, and the
    # COMMIT after it hid inside one piece, unseen by the migrations' check.
    text = (
        "CREATE TABLE t1 (id int); UPDATE t1 SET id = length('\\');\n"
        "COMMIT;\n"
        "SELECT E'it\\'s; here', e'\\\\', \"odd\\\";\n"
        "SELECT E'two\\\nlines; still one';\n"
        "CREATE TABLE t2 (x nosuchtype);\n"
    )
    statements = split(text)
    assert [(s.line, s.text.split()[0].rstrip(";")) for s in statements] == [
        (1, "CREATE"), (1, "UPDATE"), (2, "COMMIT"), (3, "SELECT"), (4, "SELECT"), (6, "CREATE"),
    ]  # fmt: skip
    assert [transaction_control(s) for s in statements].count("COMMIT") == 1


def test_a_statement_the_split_left_whole_is_refused_not_run(empty_db: str, monkeypatch) -> None:
    # Sent whole by the simple query protocol, the server ran every statement in it: the
    # COMMIT kept t1 although the file failed. Each statement goes by the extended
    # protocol, which refuses a string of several.
    text = "CREATE TABLE t1 (id int); COMMIT; CREATE TABLE t2 (x nosuchtype);"
    monkeypatch.setattr(scripts, "split", lambda text: (scripts.Statement(text, 1, 1),))
    with Db(empty_db) as db:
        with pytest.raises(ScriptError) as caught:
            run_script(db, text, "whole.sql")
        assert "cannot insert multiple commands" in str(caught.value)
        assert db.query_value("SELECT to_regclass('t1')") is None


def test_a_statement_of_any_kind_runs_by_the_extended_protocol(empty_db: str) -> None:
    # Statements of each kind the schema, seed and migrations hold.
    text = (
        "CREATE TABLE t (id int);\n"
        "DO $$ BEGIN PERFORM 1; PERFORM 2; END $$;\n"
        "CREATE FUNCTION two() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n"
        "SELECT 'a%b' LIKE 'a%', now(), ARRAY[1.5], '{}'::jsonb;\n"
    )
    with Db(empty_db) as db:
        assert run_script(db, text, "kinds.sql") == 4
    with psycopg.connect(empty_db, autocommit=True) as conn:  # as transaction:false runs it
        scripts.execute(conn, scripts.Statement("CREATE INDEX CONCURRENTLY t_id ON t (id)", 1, 1))
        assert conn.execute("SELECT two()").fetchone() == (2,)
        valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_id'::regclass"
        assert conn.execute(valid).fetchone() == (True,)


def test_a_failing_statement_stops_the_file_and_nothing_is_kept(empty_db: str) -> None:
    with Db(empty_db) as db:
        with pytest.raises(ScriptError) as caught:
            run_script(db, SCRIPT, "demo.sql")
        error = caught.value
        assert error.line == 9  # the line of `oops`, not of the INSERT
        assert error.sqlstate == "42703"
        assert str(error).startswith('demo.sql:9: column "oops" does not exist')
        assert db.query_value("SELECT to_regclass('t1')") is None


def test_schema_loads_twice_and_seed_after_it(empty_db: str) -> None:
    with Db(empty_db) as db:
        for _ in range(2):
            run_script(db, packaged_script("schema.sql"), "schema.sql")
        run_script(db, packaged_script("seed.sql"), "seed.sql")
        assert db.query_value("SELECT count(*) FROM users") == 3


def column_types(db: Db, table: str) -> dict[str, str]:
    rows = db.query_rows(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
        [table],
    )
    return dict(rows)


def test_columns_keep_the_original_names_with_fixed_types(db: Db) -> None:
    users = column_types(db, "users")
    assert set(users) == USER_COLUMNS
    activities = column_types(db, "activities")
    assert set(activities) == ACTIVITY_COLUMNS
    assert activities["reply_to_activity_uuid"] == "uuid"
    for types in (users, activities):
        for name, kind in types.items():
            if name.endswith("_at"):
                assert kind == "timestamp with time zone"
    assert db.query_value("SELECT uuid_generate_v4()").version == 4


def test_the_original_week4_sql_runs_unchanged(db: Db) -> None:
    create = (
        "INSERT INTO public.activities (user_uuid, message, expires_at) VALUES ("
        "(SELECT uuid FROM public.users WHERE users.handle = %(handle)s LIMIT 1), "
        "%(message)s, %(expires_at)s) RETURNING uuid;"
    )
    new = db.query_commit(
        create, {"handle": "bayko", "message": "hi", "expires_at": "2099-01-01T00:00:00+00:00"}
    )
    assert isinstance(new, uuid.UUID)


def test_replies_reference_real_activities(db: Db) -> None:
    parent = db.query_value("SELECT uuid FROM activities WHERE replies_count = 2")
    assert (
        db.query_value(
            "SELECT count(*) FROM activities WHERE reply_to_activity_uuid = %s", [parent]
        )
        == 2
    )
    with pytest.raises(errors.ForeignKeyViolation):
        db.query_commit(
            "INSERT INTO activities (user_uuid, message, reply_to_activity_uuid) "
            "SELECT uuid, 'orphan', uuid_generate_v4() FROM users LIMIT 1"
        )


@pytest.mark.parametrize(
    ("column", "value"),
    [("handle", "andrewbrown"), ("cognito_user_id", "MOCK-andrewbrown")],
)
def test_handle_and_cognito_user_id_are_unique(db: Db, column: str, value: str) -> None:
    row = {"display_name": "Dup", "handle": "dup", "email": "d@e.f", "cognito_user_id": "dup"}
    row[column] = value
    with pytest.raises(errors.UniqueViolation):
        db.query_commit(
            "INSERT INTO users (display_name, handle, email, cognito_user_id) "
            "VALUES (%(display_name)s, %(handle)s, %(email)s, %(cognito_user_id)s)",
            row,
        )


def test_activities_need_a_real_user(db: Db) -> None:
    with pytest.raises(errors.ForeignKeyViolation):
        db.query_commit(
            "INSERT INTO activities (user_uuid, message) VALUES (uuid_generate_v4(), 'x')"
        )
    with pytest.raises(errors.NotNullViolation):  # the original's unknown-handle case
        db.query_commit(
            "INSERT INTO activities (user_uuid, message) VALUES "
            "((SELECT uuid FROM users WHERE handle = 'nobody'), 'x')"
        )


def test_feed_indexes_match_newest_first(db: Db) -> None:
    with db.connection() as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT uuid FROM activities ORDER BY created_at DESC, uuid DESC LIMIT 20"
            )
        )
    assert "activities_feed_idx" in plan


def test_expired_seed_crud_is_expired(db: Db) -> None:
    assert db.query_value("SELECT count(*) FROM activities WHERE expires_at < now()") == 1
    with pytest.raises(psycopg.errors.CheckViolation):
        db.query_commit("UPDATE activities SET expires_at = created_at - interval '1 second'")


def test_split_reads_nested_block_comments_as_postgresql_does(empty_db: str) -> None:
    # Block comments nest in PostgreSQL: the split ended this one at its first `*/`, and
    # the quote in "it's" opened a string that hid the next semicolon: the two statements
    # went as one and the file was refused.
    text = (
        "/* outer /* inner */ it's; still the comment */ CREATE TABLE t1 (id int);\n"
        "/* a /* b /* c */ */ ' */ INSERT INTO t1 VALUES (1);\n"
        "SELECT '/*' AS not_a_comment;\n"
    )
    statements = split(text)
    assert [(s.line, s.text.split("*/")[-1].split()[0]) for s in statements] == [
        (1, "CREATE"), (2, "INSERT"), (3, "SELECT"),
    ]  # fmt: skip
    with Db(empty_db) as db:
        assert run_script(db, text, "nested.sql") == 3
        assert db.query_value("SELECT count(*) FROM t1") == 1
