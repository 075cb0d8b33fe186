"""`cruddur db purge-expired` / bin/db-purge-expired: only cruds expired past the grace go."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from helpers import CRUDDUR, cli, run, silent_port

from cruddur.db import Db, template
from cruddur.ops import purge


def _add(conn: psycopg.Connection, message: str, expires_in: str, parent=None, count: int = 1):
    """`count` activities by bayko that expire `expires_in` from now (negative: ago)."""
    rows = conn.execute(
        "INSERT INTO activities (user_uuid, message, reply_to_activity_uuid, created_at,"
        " expires_at)"
        " SELECT (SELECT uuid FROM users WHERE handle = 'bayko'), %s || n, %s,"
        "   now() + %s::interval - interval '3 days', now() + %s::interval"
        " FROM generate_series(1, %s) AS n RETURNING uuid",
        [message, parent, expires_in, expires_in, count],
    ).fetchall()
    return [row[0] for row in rows]


def _reply_to_each(conn: psycopg.Connection, parents: list, count: int = 1) -> None:
    """`count` replies to each of `parents`, by its author, expiring with it (as the API
    makes them)."""
    conn.execute(
        "INSERT INTO activities (user_uuid, message, reply_to_activity_uuid, created_at,"
        " expires_at) SELECT user_uuid, 'reply', uuid, created_at, expires_at"
        " FROM activities, generate_series(1, %s) WHERE uuid = ANY(%s)",
        [count, parents],
    )


def _left(conn: psycopg.Connection, uuids) -> int:
    return conn.execute("SELECT count(*) FROM activities WHERE uuid = ANY(%s)", [uuids]).fetchone()[
        0
    ]


def test_purge_deletes_only_cruds_expired_longer_than_the_grace(seeded_db: str) -> None:
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        old = _add(conn, "old", "-2 days", count=7)
        old_replies = _add(conn, "old reply", "-2 days", parent=old[0], count=3)
        recent = _add(conn, "recent", "-1 hour", count=2)  # expired, but inside the grace
        alive = _add(conn, "alive", "1 day", count=2)
        # An expired crud with a reply that has not expired waits for it.
        waiting = _add(conn, "waiting", "-2 days")
        alive_reply = _add(conn, "alive reply", "1 day", parent=waiting[0])
        before = conn.execute("SELECT count(*) FROM activities").fetchone()[0]

        dry = run("db-purge-expired", "--dry-run", env={"CONNECTION_URL": seeded_db})
        assert dry.returncode == 0, dry.stderr
        # the seed's crud that expired a day ago, and the 7 old ones; 3 replies
        assert "would delete 8 cruds and 3 replies" in dry.stderr
        assert conn.execute("SELECT count(*) FROM activities").fetchone()[0] == before

        done = cli("db-purge-expired", "--batch-size", "2", env={"CONNECTION_URL": seeded_db})
        assert done.returncode == 0, done.stderr
        assert "deleted 8 cruds and 3 replies" in done.stderr
        assert _left(conn, old + old_replies) == 0
        assert _left(conn, recent + alive + waiting + alive_reply) == 6
        assert conn.execute("SELECT count(*) FROM activities").fetchone()[0] == before - 11

        again = cli("db-purge-expired", env={"CONNECTION_URL": seeded_db})
        assert again.returncode == 0 and "nothing expired before" in again.stderr
        # A shorter grace takes the recent ones too.
        short = cli("db-purge-expired", "--grace", "30m", env={"CONNECTION_URL": seeded_db})
        assert "deleted 2 cruds and 0 replies" in short.stderr
        assert _left(conn, recent) == 0 and _left(conn, alive) == 2
        # One of each is said so ("1 cruds and 1 replies").
        one = _add(conn, "one", "-2 days")
        _add(conn, "one reply", "-2 days", parent=one[0])
        single = cli("db-purge-expired", "--dry-run", env={"CONNECTION_URL": seeded_db})
        assert "would delete 1 crud and 1 reply that" in single.stderr, single.stderr


def test_replies_to_replies_are_counted_and_an_unexpired_one_keeps_its_whole_thread(
    seeded_db: str,
) -> None:
    with psycopg.connect(seeded_db, autocommit=True) as conn, Db(seeded_db) as db:
        conn.execute("DELETE FROM activities")
        # A crud, a reply to it, a reply to that reply and one below that: all expired.
        chain = _add(conn, "root", "-2 days")
        for depth in range(3):
            chain += _add(conn, f"depth {depth + 1}", "-2 days", parent=chain[-1])
        # A thread whose only unexpired row is two replies down: nothing in it may go.
        kept = _add(conn, "kept root", "-2 days")
        kept += _add(conn, "kept reply", "-2 days", parent=kept[0])
        kept += _add(conn, "alive below", "1 day", parent=kept[1])
        cutoff = purge.cutoff(db, timedelta(days=1))

        assert purge.expired(db, cutoff) == purge.Counts(cruds=1, replies=3)
        # One row a batch: the first batch takes the crud, and with it its whole thread.
        purged = purge.purge(db, cutoff, batch_size=1)
        assert purged.deleted == purge.Counts(cruds=1, replies=3)
        assert _left(conn, chain) == 0
        assert _left(conn, kept) == 3


def test_a_live_cruds_reply_count_drops_with_its_purged_replies(seeded_db: str) -> None:
    # Imported rows: replies that expired long before their still-live crud. The feed
    # shows replies_count; left as it was, it would promise replies nobody can open.
    with psycopg.connect(seeded_db, autocommit=True) as conn, Db(seeded_db) as db:
        (live,) = _add(conn, "live", "1 day")
        gone = _add(conn, "old reply", "-2 days", parent=live, count=2)
        (kept,) = _add(conn, "live reply", "1 day", parent=live)
        conn.execute("UPDATE activities SET replies_count = 3 WHERE uuid = %s", [live])
        purged = purge.purge(db, purge.cutoff(db, timedelta(days=1)), batch_size=1)
        assert purged.deleted.replies == 2
        assert _left(conn, gone) == 0 and _left(conn, [live, kept]) == 2
        count = conn.execute("SELECT replies_count FROM activities WHERE uuid = %s", [live])
        assert count.fetchone()[0] == 1


def _threads(conn: psycopg.Connection, cruds: int) -> list:
    """`cruds` cruds expired 3 days ago with 3 replies each (as the API makes them), and
    a live crud with 2 replies of its own that expired (imported rows): its uuid last."""
    roots = _add(conn, "old", "-3 days", count=cruds)
    _reply_to_each(conn, roots, 3)
    conn.execute("UPDATE activities SET replies_count = 3 WHERE uuid = ANY(%s)", [roots])
    (live,) = _add(conn, "live", "1 day")
    _add(conn, "old reply", "-3 days", parent=live, count=2)
    conn.execute("UPDATE activities SET replies_count = 2 WHERE uuid = %s", [live])
    conn.execute("ANALYZE activities")  # as autovacuum soon would: the plans a purge meets
    return [*roots, live]


def test_two_purges_at_once_both_finish_without_a_deadlock(seeded_db: str) -> None:
    # Each batch locked only the rows it picked, expired replies among them, and deleted
    # the replies of its cruds unlocked: one purge deleted a reply the other had picked
    # while the other waited for that reply's crud to lower its count. Deadlock, 5 of 5.
    with psycopg.connect(seeded_db, autocommit=True) as conn, Db(seeded_db) as db:
        conn.execute("DELETE FROM activities")
        *_, live = _threads(conn, 5000)
        cutoff = purge.cutoff(db, timedelta(days=1))
        done: list[purge.Purged] = []
        failed: list[BaseException] = []

        def one_purge() -> None:
            try:
                with Db(seeded_db) as own:
                    done.append(purge.purge(own, cutoff, batch_size=200, nice_ratio=0))
            except BaseException as exc:  # reported below
                failed.append(exc)

        workers = [threading.Thread(target=one_purge) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert failed == []
        assert sum((p.deleted for p in done), purge.Counts()) == purge.Counts(5000, 15_002)
        assert purge.expired(db, cutoff) == purge.Counts()
        left = conn.execute("SELECT uuid, replies_count FROM activities").fetchall()
        assert left == [(live, 0)]


def test_a_thread_larger_than_a_batch_goes_in_batches_of_at_most_its_size(seeded_db: str) -> None:
    # A batch took its cruds with every reply below them: a crud with 150,000 replies was
    # one statement of 150,001 rows, past the Lambda's statement timeout, every run.
    with psycopg.connect(seeded_db, autocommit=True) as conn, Db(seeded_db) as db:
        conn.execute("DELETE FROM activities")
        (crud,) = _add(conn, "big thread", "-3 days")
        replies = _add(conn, "reply", "-3 days", parent=crud, count=25)
        deeper = _add(conn, "reply to a reply", "-3 days", parent=replies[0], count=5)
        (live,) = _add(conn, "live", "1 day")
        gone_reply = _add(conn, "expired reply", "-3 days", parent=live, count=1)
        conn.execute("UPDATE activities SET replies_count = 25 WHERE uuid = %s", [crud])
        conn.execute("UPDATE activities SET replies_count = 5 WHERE uuid = %s", [replies[0]])
        conn.execute("UPDATE activities SET replies_count = 1 WHERE uuid = %s", [live])
        batches: list[purge.Counts] = []
        purged = purge.purge(
            db, purge.cutoff(db, timedelta(days=1)), batch_size=10, progress=batches.append
        )
        assert [b.total for b in batches] == [10, 10, 10, 2], batches
        assert purged.deleted == purge.Counts(1, 31)  # the big thread, and the live's reply
        assert _left(conn, [crud, *replies, *deeper, *gone_reply]) == 0
        left = conn.execute("SELECT uuid, replies_count FROM activities").fetchall()
        assert left == [(live, 0)]


def test_a_reply_chain_goes_in_full_batches(seeded_db: str) -> None:
    # Each row of a chain in the batch was also walked from every row above it: a batch
    # of 1,000 counted the same rows at each depth and deleted 44.
    with psycopg.connect(seeded_db, autocommit=True) as conn, Db(seeded_db) as db:
        conn.execute("DELETE FROM activities")
        (parent,) = chain = _add(conn, "crud", "-3 days")
        for _ in range(59):
            (parent,) = _add(conn, "reply", "-3 days", parent=parent)
            chain.append(parent)
        conn.execute("ANALYZE activities")
        batches: list[purge.Counts] = []
        purge.purge(db, purge.cutoff(db, timedelta(days=1)), batch_size=20, progress=batches.append)
        assert [b.total for b in batches] == [20, 20, 20], batches
        assert _left(conn, chain) == 0


def test_cruds_expiring_during_the_purge_are_not_touched(seeded_db: str) -> None:
    with psycopg.connect(seeded_db, autocommit=True) as conn, Db(seeded_db) as db:
        expired = _add(conn, "expired", "-1 minute", count=50)
        soon = _add(conn, "soon", "300 milliseconds", count=20)
        cutoff = purge.cutoff(db, timedelta(0))
        batches = []

        def slow_start(batch: purge.Counts) -> None:
            # After the first batch, wait until the `soon` cruds have expired too: the
            # batches that follow run when they are expired, and must still leave them.
            if not batches:
                time.sleep(0.5)
                assert conn.execute(
                    "SELECT bool_and(expires_at < now()) FROM activities WHERE uuid = ANY(%s)",
                    [soon],
                ).fetchone()[0]
            batches.append(batch)

        purged = purge.purge(db, cutoff, batch_size=10, progress=slow_start)
        assert len(batches) >= 5
        assert _left(conn, expired) == 0
        assert _left(conn, soon) == 20
        assert purged.deleted.cruds >= 50


def test_the_purge_rests_after_each_full_batch_for_its_ratio_of_the_batchs_time(
    seeded_db: str,
) -> None:
    with psycopg.connect(seeded_db, autocommit=True) as conn, Db(seeded_db) as db:
        conn.execute("DELETE FROM activities")
        _add(conn, "old", "-2 days", count=25)
        cutoff = purge.cutoff(db, timedelta(days=1))
        rests: list[float] = []
        purged = purge.purge(db, cutoff, batch_size=10, nice_ratio=3, sleep=rests.append)
        assert purged.deleted.cruds == 25 and purged.batches == 3
        assert len(rests) == 2 and all(rest > 0 for rest in rests)  # none after the last
        assert sum(rests) < 3 * purged.seconds
        _add(conn, "old", "-2 days", count=25)
        rests.clear()
        purge.purge(db, cutoff, batch_size=10, nice_ratio=0, sleep=rests.append)
        assert rests == [0, 0]


def test_a_bad_nice_ratio_is_a_usage_error(seeded_db: str) -> None:
    for ratio in ("-1", "101", "fast", "nan", "inf"):  # nan passed FloatRange, then slept
        result = cli("db-purge-expired", "--nice-ratio", ratio, env={"CONNECTION_URL": seeded_db})
        assert result.returncode == 2, result.stderr
        assert "--nice-ratio" in result.stderr and "Traceback" not in result.stderr


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_a_batch_reads_the_table_through_its_indexes_and_is_not_compiled(seeded_db: str) -> None:
    # The planner guessed a batch's replies at a hundred times their number: it hashed
    # every reply and scanned the whole table to delete 5,000 rows (a second a batch at
    # 200,000 activities, most of it growing with the table), and JIT-compiled the plan
    # (half a second more). A batch's cost must not depend on what it leaves behind.
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        cruds = _add(conn, "old", "-2 days", count=20_000)
        _reply_to_each(conn, cruds[::4])
        _add(conn, "alive", "30 days", count=20_000)
        conn.execute("ANALYZE activities")
    with Db(seeded_db) as db:  # as the purge runs a batch: its transaction, its settings
        params = {"cutoff": datetime.now(UTC), "batch_size": 5000}
        sql = f"EXPLAIN (FORMAT JSON) {template('activities', 'purge_batch')}"
        (explained,) = purge.one_row_without_jit(db, sql, params)
    plan = explained[0]
    assert "JIT" not in plan
    nodes = list(_nodes(plan["Plan"]))
    on_table = [node for node in nodes if node.get("Relation Name") == "activities"]
    assert on_table and not [node for node in on_table if node["Node Type"] == "Seq Scan"]
    # Nor a hash table of what it reads: each row is looked up by an index.
    hashed = [
        child
        for node in nodes
        if node["Node Type"] == "Hash"
        for child in _nodes(node)
        if child.get("Relation Name") == "activities"
    ]
    assert hashed == [], hashed


@pytest.mark.parametrize("name", ["purge_count", "purge_batch"])
def test_a_table_never_analyzed_is_still_read_through_its_indexes(seeded_db: str, name) -> None:
    # Until its first ANALYZE (a restored dump, a fresh copy) the planner guesses a crud's
    # replies in the tens of thousands, and looked for the replies of replies by sorting
    # the whole table, again for every expired crud: 20,000 expired rows (a quarter of
    # them cruds with 3 replies) took 17 s to count, not a second.
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        cruds = _add(conn, "old", "-2 days", count=5_000)
        _reply_to_each(conn, cruds, 3)
        analyzed = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = 'public.activities'::regclass"
        ).fetchone()[0]
        assert analyzed < 0, "the copy of the template was analyzed: the test needs it not"
    with Db(seeded_db) as db:
        params = {"cutoff": datetime.now(UTC), "batch_size": 200}
        sql = f"EXPLAIN (FORMAT JSON) {template('activities', name)}"
        (explained,) = purge.one_row_without_jit(db, sql, params)
    on_table = [n for n in _nodes(explained[0]["Plan"]) if n.get("Relation Name") == "activities"]
    assert on_table and [n for n in on_table if n["Node Type"] == "Seq Scan"] == []


def test_purge_on_production_asks_first(seeded_db: str) -> None:
    env = {"PROD_CONNECTION_URL": seeded_db}
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        old = _add(conn, "old", "-3 days", count=3)
        refused = run("db-purge-expired", "prod", env=env)
        assert refused.returncode == 1
        assert "PRODUCTION" in refused.stderr and "not confirmed" in refused.stderr
        assert _left(conn, old) == 3
        wrong = run("db-purge-expired", "prod", env=env, stdin="postgres\n")
        assert wrong.returncode == 1 and _left(conn, old) == 3
        name = conn.execute("SELECT current_database()").fetchone()[0]
        typed = run("db-purge-expired", "prod", env=env, stdin=f"{name}\n")
        assert typed.returncode == 0, typed.stderr
        assert _left(conn, old) == 0


def test_a_bad_grace_is_a_one_line_error(seeded_db: str) -> None:
    result = cli("db-purge-expired", "--grace", "tomorrow", env={"CONNECTION_URL": seeded_db})
    assert result.returncode == 2
    assert "not a duration such as 1d" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "grace", ["100000000000000000000s", "999999999d", "3651d", "9" * 5000 + "s"]
)
def test_a_grace_past_the_bound_is_a_usage_error(grace: str) -> None:
    # Never reaches the database: timedelta overflowed, or PostgreSQL's timestamps ended.
    result = cli(
        "db-purge-expired", "--grace", grace, "--dry-run",
        env={"CONNECTION_URL": "postgresql://x@127.0.0.1:9/x"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "is too long: at most 3650d" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_longest_grace_reaches_the_database(seeded_db: str) -> None:
    for grace in ("3650d", "87600h"):
        result = cli(
            "db-purge-expired", "--grace", grace, "--dry-run", env={"CONNECTION_URL": seeded_db}
        )
        assert result.returncode == 0, result.stderr


def _stopped_mid_batch(
    seeded_db: str, stop: Callable[[psycopg.Connection, subprocess.Popen, int], None]
) -> tuple[int, str, int]:
    """A purge of 30 expired cruds in batches of 10, stopped by stop(conn, the purge's
    process, its waiting backend's pid) while its second batch waits behind a lock: its
    exit status, its stderr, and the cruds left."""
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        conn.execute("DELETE FROM activities")
        _add(conn, "old", "-2 days", count=30)
        env = {k: v for k, v in os.environ.items() if k != "PROD_CONNECTION_URL"}
        env.update(NO_COLOR="1", CONNECTION_URL=seeded_db)
        purging = subprocess.Popen(
            [CRUDDUR, "db", "purge-expired", "--batch-size", "10", "--nice-ratio", "20"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a group of its own, as a shell's job is
        )
        try:
            deadline = time.monotonic() + 30
            while conn.execute("SELECT count(*) FROM activities").fetchone()[0] == 30:
                assert time.monotonic() < deadline, "no batch was deleted"
                time.sleep(0.01)
            # The next batch waits behind this lock: the stop comes in the middle of it.
            with psycopg.connect(seeded_db) as locker:
                locker.execute("LOCK TABLE activities IN SHARE MODE")
                waiting = None
                while waiting is None:
                    assert time.monotonic() < deadline, "the next batch never started"
                    waiting = conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                        " AND application_name = 'cruddur-cli' AND wait_event_type = 'Lock'"
                    ).fetchone()
                    time.sleep(0.01)
                stop(conn, purging, waiting[0])
                err = purging.communicate(timeout=30)[1]
        finally:
            if purging.poll() is None:
                purging.kill()
        left = conn.execute("SELECT count(*) FROM activities").fetchone()[0]
    return purging.returncode, err, left


def test_ctrl_c_mid_purge_says_what_was_deleted_and_exits_130(seeded_db: str) -> None:
    # It said only "Aborted!" with status 1, though whole batches had been deleted.
    status, err, left = _stopped_mid_batch(
        seeded_db, lambda conn, purging, pid: os.killpg(purging.pid, signal.SIGINT)
    )
    assert status == 130, err
    said = re.search(r"interrupted: (\d+) batch(?:es)? committed, (\d+) cruds and 0 replies", err)
    assert said, err
    batches, cruds = int(said[1]), int(said[2])
    assert cruds == 30 - left and cruds == 10 * batches and 0 < cruds < 30
    assert "Aborted!" not in err and "Traceback" not in err


def test_a_database_lost_mid_purge_says_what_was_deleted(seeded_db: str) -> None:
    # It said only the error line, though whole batches had been deleted (Ctrl-C and the
    # Lambda said both): from cron, nothing recorded what went.
    status, err, left = _stopped_mid_batch(
        seeded_db,
        lambda conn, purging, pid: conn.execute("SELECT pg_terminate_backend(%s)", [pid]),
    )
    assert status == 1, err
    said = re.search(
        r"stopped: (\d+) batch(?:es)? committed before the error, (\d+) cruds and 0 replies", err
    )
    assert said, err
    batches, cruds = int(said[1]), int(said[2])
    assert cruds == 30 - left and cruds == 10 * batches and 0 < cruds < 30
    assert "terminating connection" in err and "Traceback" not in err


def test_ctrl_c_after_a_batchs_commit_began_waits_until_it_is_counted(seeded_db: str) -> None:
    # The COMMIT cannot be cancelled: Ctrl-C there used to leave a deleted batch uncounted.
    with psycopg.connect(seeded_db, autocommit=True) as conn, Db(seeded_db) as db:
        conn.execute("DELETE FROM activities")
        _add(conn, "old", "-2 days", count=25)
        seen: list[purge.Counts] = []

        def interrupted_while_counting(batch: purge.Counts) -> None:
            signal.raise_signal(signal.SIGINT)  # as if pressed during the COMMIT
            seen.append(batch)

        with pytest.raises(KeyboardInterrupt):
            purge.purge(
                db,
                purge.cutoff(db, timedelta(days=1)),
                batch_size=10,
                progress=interrupted_while_counting,
            )
        assert seen == [purge.Counts(cruds=10)]
        assert conn.execute("SELECT count(*) FROM activities").fetchone()[0] == 15


@pytest.mark.parametrize(
    "verb", [["db", "purge-expired"], ["db", "seed", "--fake", "--users", "5", "--activities", "5"]]
)
def test_ctrl_c_while_still_connecting_exits_130_without_aborted(verb: list[str]) -> None:
    # Before the verb's own Ctrl-C handling began (connecting to a server that does not
    # answer): click's "Aborted!" and status 1.
    with silent_port() as port:
        env = {
            **os.environ,
            "CONNECTION_URL": f"postgresql://postgres@127.0.0.1:{port}/cruddur",
            "CRUDDUR_CONNECT_TIMEOUT": "20",
            "NO_COLOR": "1",
        }
        process = subprocess.Popen(
            [str(CRUDDUR), *verb], env=env, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
        time.sleep(1.5)  # started, and waiting on the connection
        os.killpg(process.pid, signal.SIGINT)
        err = process.communicate(timeout=30)[1]
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert "Aborted!" not in err and "Traceback" not in err
