"""The activities endpoints. Bodies come from PostgreSQL as JSON text and go out as is."""

from __future__ import annotations

from urllib.parse import quote
from uuid import UUID

from flask import Blueprint, Response, current_app, g, request

from cruddur.api.auth import signed_in
from cruddur.api.bodies import UnreadableJson, json_body
from cruddur.api.errors import ApiError
from cruddur.db import Db
from cruddur.services import activities
from cruddur.services.paging import Page, PageRequest, RepliesRequest
from cruddur.services.validation import parse_uuid, validate_crud, validate_reply

bp = Blueprint("activities", __name__, url_prefix="/api/activities")

HANDLE_MAX_CHARS = 64  # the schema's limit: longer cannot exist


def _db() -> Db:
    return current_app.extensions["cruddur.db"].get()


def _json(body: str, status: int = 200) -> Response:
    return Response(body, status, mimetype="application/json")


def _page_request() -> PageRequest:
    return PageRequest.from_query(request.args.get("limit"), request.args.get("before"))


def _page_response(page: Page, limit: int, cursor_param: str = "before") -> Response:
    response = _json(page.body)
    if page.next is not None:
        cursor = page.next.encode()
        # The limit and the cursor are URL-safe by construction (digits, digits_uuid); the
        # path is too, for handles the schema admits, but a header must never carry raw
        # non-ASCII, so it is quoted (a no-op for ASCII-safe text).
        next_url = f"{quote(request.path, safe='/@')}?limit={limit}&{cursor_param}={cursor}"
        response.headers["Link"] = f'<{next_url}>; rel="next"'
        response.headers["X-Next-Cursor"] = cursor
    return response


def _uuid(text: str, what: str) -> UUID:
    parsed = parse_uuid(text)
    if parsed is None:
        raise ApiError(400, f"invalid_{what}", f"{what} must be a UUID, not {text[:64]!r}")
    return parsed


def _json_object() -> dict:
    """The request body as a JSON object, or 415/413/400 saying what is wrong with it."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        body = json_body()
    except UnreadableJson as exc:
        raise ApiError(400, "invalid_json", str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


@bp.get("/home")
def home() -> Response:
    wanted = _page_request()
    return _page_response(activities.home_feed(_db(), wanted), wanted.limit)


@bp.get("/@<handle>")
def user_feed(handle: str) -> Response:
    wanted = _page_request()
    page = activities.user_feed(_db(), handle, wanted) if len(handle) <= HANDLE_MAX_CHARS else None
    if page is None:
        raise ApiError(404, "user_not_found", f"no user has the handle {handle[:64]!r}")
    return _page_response(page, wanted.limit)


@bp.get("/<activity_uuid>")
def show(activity_uuid: str) -> Response:
    parent = _uuid(activity_uuid, "activity_uuid")
    replies = RepliesRequest.from_query(request.args.get("limit"), request.args.get("after"))
    found = activities.show_activity(_db(), parent, replies)
    if found is None:
        raise ApiError(404, "activity_not_found", "no such crud (or it has expired)")
    return _page_response(found, replies.limit, "after")


@bp.post("")
@signed_in
def create() -> Response:
    message, ttl = validate_crud(_json_object())
    return _json(activities.create_activity(_db(), g.user_uuid, message, ttl), 201)


@bp.post("/<activity_uuid>/reply")
@signed_in
def reply(activity_uuid: str) -> Response:
    parent = _uuid(activity_uuid, "activity_uuid")
    message = validate_reply(_json_object())
    created = activities.create_reply(_db(), g.user_uuid, parent, message)
    if created is None:
        raise ApiError(404, "activity_not_found", "no such crud to reply to (or it has expired)")
    return _json(created, 201)
