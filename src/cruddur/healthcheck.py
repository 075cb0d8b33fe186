"""`python -m cruddur.healthcheck`: exit 0 when the API on this host is alive.

The container's HEALTHCHECK (and ECS's task health check) run it: the image has no curl,
and the standard library is enough. It asks 127.0.0.1 on PORT (default 4567), never
through a proxy (HTTP_PROXY set for the task's egress sent it to the proxy, and every
task was called unhealthy).

Alive is the API answering /api/health: 200, or its own 503 while the database is away.
A container health check decides whether to replace the task; an outage of the database
(an RDS failover) made every task unhealthy within 30 s, ECS replaced them all, and
serving waited on new tasks starting instead of resuming within a second of the
database. The load balancer asks /api/health itself, and sends no traffic on a 503.
`--ready`: 200 only (the database answers too).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.error
import urllib.request

# Each read; the whole check at most OVERALL_SECONDS, under the containers' own timeout
# for it (5 s: Dockerfile, compose.yaml, deploy/ecs-service.yaml). Well past
# api/health.py's own bound (2 s) on a database gone silent, which a pool reconnecting
# can stretch: at 2.0 s the check gave up just before the API's 503 came, and each
# worker's first check in an outage failed.
TIMEOUT_SECONDS = 4.0
OVERALL_SECONDS = 4.5
# The API's own answers while the database is away, or too busy to answer in time
# (api/health.py): the process is alive, and replacing it would not help.
_AWAY = {"database_unavailable", "schema_not_ready", "database_busy"}


def main(argv: list[str] | None = None) -> int:
    # A socket timeout bounds each read only: an answer dripping a byte a second kept the
    # check running for as long as it liked.
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_REAL, OVERALL_SECONDS)
    try:
        return _check("--ready" in (sys.argv[1:] if argv is None else argv))
    except TimeoutError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _out_of_time(_signum: int, _frame: object) -> None:
    raise TimeoutError(f"no whole answer within {OVERALL_SECONDS:g} s")


def _check(ready: bool) -> int:
    port = os.environ.get("PORT", "4567").strip() or "4567"
    url = f"http://127.0.0.1:{port}/api/health"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with direct.open(url, timeout=TIMEOUT_SECONDS) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        if exc.code == 503 and not ready and _the_apis_own(exc):
            print(f"alive: {url} answers 503 (the database is away)", file=sys.stderr)
            return 0
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


def _the_apis_own(answer: urllib.error.HTTPError) -> bool:
    """The API's health document, not another program's 503 on the port."""
    try:
        body = json.loads(answer.read(65_536))
    except (ValueError, OSError):  # not JSON, or cut off (a socket timeout is an OSError)
        return False
    return (
        isinstance(body, dict)
        and body.get("error") in _AWAY
        and isinstance(body.get("database"), dict)
        and "request_id" in body
    )


if __name__ == "__main__":
    sys.exit(main())
