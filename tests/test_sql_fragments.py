"""SQL fragments: a query takes in a shared piece of SQL by name (db/templates.py), so
the columns of a crud are written once for every query that answers with cruds."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from cruddur.db import Db, template, templates
from cruddur.db.templates import TemplateNotFound
from cruddur.services import activities
from cruddur.services.paging import PageRequest, RepliesRequest
from cruddur.services.users import Author

ANSWERING_WITH_CRUDS = ("home", "user_feed", "show", "create", "reply")
# The JSON keys of a crud, in order (README, "The API").
CRUD_KEYS = [
    "uuid", "display_name", "handle", "message", "replies_count", "reposts_count",
    "likes_count", "reply_to_activity_uuid", "expires_at", "created_at",
]  # fmt: skip


@pytest.mark.parametrize("name", ANSWERING_WITH_CRUDS)
def test_each_query_takes_the_columns_in_and_names_no_fragment_left(name: str) -> None:
    text = template("activities", name)
    assert "{{" not in text and "}}" not in text
    columns = templates._without_header(templates._text(("activities", "columns")))
    assert columns.strip() in re.sub(r"\n +", "\n", text)  # at its own indentation


def test_a_fragment_stands_at_the_line_it_is_named_on(monkeypatch) -> None:
    texts = {
        ("q",): "-- a query\nSELECT\n    {{f}}\nFROM t;\n",
        ("f",): "-- a fragment\na,\n\nb\n",
    }
    monkeypatch.setattr(templates, "_text", lambda parts: texts[parts])
    assert templates._inlined(texts[("q",)]) == "-- a query\nSELECT\n    a,\n\n    b\nFROM t;\n"
    texts[("f",)] = "{{f}}\n"
    with pytest.raises(TemplateNotFound, match="takes in itself"):
        templates._inlined(texts[("q",)])
    texts[("q",)] = "SELECT {{nope}}"  # not on a line of its own: left alone, and fails in SQL
    assert templates._inlined(texts[("q",)]) == "SELECT {{nope}}"


def test_a_missing_fragment_is_named() -> None:
    with pytest.raises(TemplateNotFound, match="activities/nope"):
        templates._inlined("  {{activities/nope}}\n")


def test_every_answer_has_the_crud_columns_in_order(seeded_db: str) -> None:
    with Db(seeded_db, autocommit=True) as db:
        user = Author(*db.query_row("SELECT uuid, cognito_user_id FROM users ORDER BY handle"))
        handle = db.query_value("SELECT handle FROM users WHERE uuid = %s", [user.uuid])
        created = json.loads(activities.create_activity(db, user, "one shape", timedelta(days=1)))
        reply = json.loads(activities.create_reply(db, user, created["uuid"], "the same"))
        home = json.loads(activities.home_feed(db, PageRequest()).body)
        mine = json.loads(activities.user_feed(db, handle, PageRequest()).body)
        shown = json.loads(activities.show_activity(db, created["uuid"], RepliesRequest()).body)
    for crud in (created, reply, home[0], mine[0], shown["activity"], shown["replies"][0]):
        assert list(crud) == CRUD_KEYS
    assert shown["activity"]["replies_count"] == 1


@pytest.mark.parametrize(
    ("name", "own"), [("home", "first_expiry"), ("user_feed", "user_found"), ("show", None)]
)
def test_page_queries_give_the_page_columns_first(seeded_db: str, name: str, own) -> None:
    """services/activities.py reads a page's row by position."""
    params = {
        **PageRequest().params(),
        **RepliesRequest().params(),
        "handle": "andrewbrown",
        "uuid": "00000000-0000-0000-0000-000000000000",
    }
    with Db(seeded_db, autocommit=True) as db, db.connection() as conn:
        cursor = conn.execute(template("activities", name), params)
        names = [column.name for column in cursor.description]
    assert tuple(names[: activities.OWN_COLUMN]) == activities.PAGE_COLUMNS
    assert names[activities.OWN_COLUMN :] == ([own] if own else [])
