"""GET /api/health: is the database reachable and migrated, and (to a caller on this
machine or a signed-in one) how is the pool doing. A load balancer sends traffic only
to a 200: a task whose database has no schema yet would answer every feed with a 503."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, json

from cruddur.api.auth import verified_claims
from cruddur.api.db import get_db
from cruddur.api.dev_sign_in import local_caller
from cruddur.api.errors import (
    busy_error,
    database_busy,
    database_unavailable,
    error_response,
    schema_not_ready_error,
    unavailable_error,
)
from cruddur.db.replication import NOT_LOOKED_AT
from cruddur.telemetry import metrics

bp = Blueprint("health", __name__, url_prefix="/api")

# Health's look at the database: a connection and one catalog lookup (no table lock to
# wait on) take milliseconds. A server that takes the query and never answers (RDS Proxy
# in a failover, a stopped server) held health for as long as it was silent, then a 200;
# cut after this, it is a 503, and the probe it starts finds the outage for every request.
HEALTH_SECONDS = 2.0


@bp.get("/health")
def health() -> Response:
    started = time.perf_counter()
    try:
        db = get_db().bounded(HEALTH_SECONDS)
        # In the same round trip: whether this session may write (off on a database set
        # default_transaction_read_only, a hot standby, RDS in read-only mode).
        migrated, writable = db.query_row(
            "SELECT to_regclass('public.activities') IS NOT NULL,"
            " NOT current_setting('transaction_read_only')::boolean"
        )
        if migrated and not writable:
            # A pooled session keeps the default_transaction_read_only its start saw: a
            # new one says whether the database was made writable since (at most one a
            # second; the pool's sessions are then replaced).
            writable = db.writable_again()
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        # Counted as every request's database errors are: during an outage health checks
        # may be nearly all a task is asked, and an alert on class 08 must still fire.
        metrics.count_db_error(exc)
        if database_busy(exc):  # no pooled connection free in time: busy, not away
            extra = {"status": "unavailable", "database": {"reachable": True}}
            return error_response(busy_error(extra=extra))
        extra = {"status": "unavailable", "database": {"reachable": False}}
        return error_response(unavailable_error("the database is not reachable", extra=extra))
    if not migrated:
        return error_response(
            schema_not_ready_error(
                extra={"status": "unavailable", "database": {"reachable": True, "schema": False}}
            )
        )
    # A read-only database is still a 200 with "writable": false: every instance shares
    # the database, so a 503 here would take them all out of the load balancer, and the
    # reads that still work with them; writes get their own 503 (database_read_only).
    if not _may_see_details():
        # A load balancer needs only the status; pool figures tell others how loaded we are.
        body: dict = {"status": "ok", "database": {"reachable": True, "writable": writable}}
        return Response(json.dumps(body), 200, mimetype="application/json")
    stats = db.pool.get_stats()
    body = {
        "status": "ok",
        "database": {
            "reachable": True,
            "writable": writable,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "pool": {
                "min_size": stats.get("pool_min", 0),
                "max_size": stats.get("pool_max", 0),
                "size": stats.get("pool_size", 0),
                "available": stats.get("pool_available", 0),
                "waiting": stats.get("requests_waiting", 0),
            },
        },
    }
    router = current_app.extensions["cruddur.reads"]
    if router.reader is not None:
        # Reads go to the primary while the replica is behind or away: still a 200.
        state = router.state
        body["replica"] = {
            # Not known yet (a worker's first look is under way): not "unreachable", which
            # raised a false alarm on every worker after each deploy.
            "reachable": None if state is NOT_LOOKED_AT else state.reachable,
            "lag_seconds": None if state.lag_seconds is None else round(state.lag_seconds, 3),
            "max_lag_seconds": router.max_lag,
            "in_use": state.fresh(router.max_lag, time.monotonic()),
            # False: it holds WAL the primary has not written (a history the primary, restored
            # from a backup, no longer has) or is another cluster's replica: never in use.
            "following": state.following,
        }
    return Response(json.dumps(body), 200, mimetype="application/json")


def _may_see_details() -> bool:
    """A caller on this machine through no proxy (an operator, a local probe), or a
    signed-in one."""
    return local_caller() or verified_claims() is not None
