"""The limits in cruddur/limits.py are the ones the schema, the API document and the web
page state in their own languages."""

from __future__ import annotations

import re
from importlib.resources import files

import yaml

from cruddur.api import OPENAPI
from cruddur.limits import CRUD_MAX_CHARS, HANDLE_MAX_CHARS, HANDLE_PATTERN, REPLY_MAX_CHARS, TTLS

DOCUMENT = yaml.safe_load(OPENAPI.read_text())
SCHEMAS = DOCUMENT["components"]["schemas"]


def test_the_api_document_states_the_limits() -> None:
    assert SCHEMAS["NewActivity"]["properties"]["message"]["maxLength"] == CRUD_MAX_CHARS
    assert SCHEMAS["NewActivity"]["properties"]["ttl"]["enum"] == list(TTLS)
    assert SCHEMAS["NewReply"]["properties"]["message"]["maxLength"] == REPLY_MAX_CHARS
    assert SCHEMAS["Activity"]["properties"]["message"]["maxLength"] == REPLY_MAX_CHARS
    sign_in = DOCUMENT["paths"]["/api/dev/sign-in"]["post"]["requestBody"]["content"]
    handle = sign_in["application/json"]["schema"]["properties"]["handle"]
    assert handle["maxLength"] == HANDLE_MAX_CHARS
    assert handle["pattern"] == f"^{HANDLE_PATTERN.pattern}$"


def test_the_schema_states_the_limits() -> None:
    schema = files("cruddur.db").joinpath("schema.sql").read_text()
    assert f"handle ~ '^{HANDLE_PATTERN.pattern}$'" in schema  # users_handle_check
    assert f"char_length(message) <= {REPLY_MAX_CHARS}" in schema


def test_the_web_page_states_the_limits() -> None:
    views = files("cruddur.web").joinpath("static/views.js").read_text()
    assert re.search(rf"\bMESSAGE_MAX = {CRUD_MAX_CHARS};", views)
    assert re.search(rf"\bREPLY_MAX = {REPLY_MAX_CHARS};", views)
    ttls = re.search(r"\bTTLS = \[(.*?)\];", views)
    assert ttls is not None and re.findall(r'"([^"]+)"', ttls.group(1)) == list(TTLS)
    assert f"maxlength: {HANDLE_MAX_CHARS}" in views
