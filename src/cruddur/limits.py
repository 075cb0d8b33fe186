"""The product's limits, defined here once for the Python side.

Other places state the same numbers in their own language and say they come from here:
the schema's CHECKs (db/schema.sql), the API document (api/openapi.yaml) and the web
page (web/static/views.js). tests/test_limits.py holds them together.
"""

from __future__ import annotations

import re
from datetime import timedelta

CRUD_MAX_CHARS = 280  # the API's limit for a crud (the schema allows a reply's length)
REPLY_MAX_CHARS = 1024  # a reply's, and the schema's for any message
HANDLE_MAX_CHARS = 64  # the schema's users_handle_check: a longer handle cannot exist
# The same check's whole rule: a handle that does not match cannot exist either.
HANDLE_PATTERN = re.compile(rf"[A-Za-z0-9_.+-]{{1,{HANDLE_MAX_CHARS}}}")

# A crud's lifetimes, as the front end names them, longest first.
TTLS: dict[str, timedelta] = {
    "30-days": timedelta(days=30),
    "7-days": timedelta(days=7),
    "3-days": timedelta(days=3),
    "1-day": timedelta(days=1),
    "12-hours": timedelta(hours=12),
    "3-hours": timedelta(hours=3),
    "1-hour": timedelta(hours=1),
}
