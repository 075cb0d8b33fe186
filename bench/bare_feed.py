"""The floor for the feed benchmark: the same page from Flask and psycopg, and nothing else.

One route, one connection and one cursor per thread, the same SQL file and parameters
as GET /api/activities/home, the body passed on as PostgreSQL built it. No pool, no
paging headers, no request ids, no CORS, no error handling: what the API would cost if
it did only the part every Flask + psycopg service must do. bench/feed.py runs it under
granian beside `cruddur serve` (`--servers …,bare`); it is not part of the product.

Run by itself: CONNECTION_URL=… granian --interface wsgi --working-dir bench bare_feed:app
"""

from __future__ import annotations

import os
import threading

import psycopg
from flask import Flask, Response

from cruddur.db import template
from cruddur.services.paging import PageRequest

HOME = template("activities", "home")
FIRST_PAGE = PageRequest().params()

_local = threading.local()
app = Flask("bare_feed")


def _cursor() -> psycopg.Cursor:
    cursor = getattr(_local, "cursor", None)
    if cursor is None:
        connection = psycopg.connect(
            os.environ["CONNECTION_URL"],
            autocommit=True,
            options="-c TimeZone=UTC -c plan_cache_mode=force_generic_plan",  # as the API's
        )
        cursor = _local.cursor = connection.cursor()
    return cursor


@app.get("/api/activities/home")
def home() -> Response:
    cursor = _cursor()
    cursor.execute(HOME, FIRST_PAGE)
    return Response(cursor.fetchone()[0], mimetype="application/json")
