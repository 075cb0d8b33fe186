"""Hooks for the Schemathesis run of tests/test_api_contract.py (SCHEMATHESIS_HOOKS).

Schemathesis takes each request for an independent one, but sends the few Idempotency-Key
values it generates with many bodies: the API rightly answers a key reused for another
request with a 422 (test_idempotency_keys.py), which the run counted as valid data
refused. A client sends one key per message, so each request here gets a fresh key of
its own; a key the document calls invalid is sent as generated (the API's 400).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis

VALID_KEY = re.compile(r"[ -~]{1,255}")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    headers = case.headers
    # A case that leaves a header out on purpose (Authorization, to see the 401) is sent
    # as it is: changed, it was sent with the header put back.
    data = case.meta.phase.data if case.meta is not None else None
    if not headers or getattr(data, "scenario", None) == "missing_parameter":
        return
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and VALID_KEY.fullmatch(key):
        headers["Idempotency-Key"] = str(uuid.uuid4())
