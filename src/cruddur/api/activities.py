"""The activities endpoints. Bodies come from PostgreSQL as JSON text and go out as is."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote
from uuid import UUID

from flask import Blueprint, Response, current_app, request

from cruddur.api.auth import as_caller, signed_in
from cruddur.api.bodies import UnreadableJson, json_body, require_json
from cruddur.api.errors import ApiError
from cruddur.api.read_after import InvalidReadAfter
from cruddur.api.reads import READ_AFTER_HEADER, ReadRouter
from cruddur.limits import HANDLE_MAX_CHARS, HANDLE_PATTERN
from cruddur.services import activities
from cruddur.services.activities import IdempotencyKey, KeyReused, Written
from cruddur.services.feed_cache import etag_of
from cruddur.services.paging import START, Cursor, Page, PageRequest, RepliesRequest
from cruddur.services.validation import parse_uuid, validate_crud, validate_reply
from cruddur.telemetry.requests import ROUTE_KEY

bp = Blueprint("activities", __name__, url_prefix="/api/activities")

# In the WSGI environ: what failed while FirstHomePage or NewCrud (new_crud.py) answered
# without Flask, once it could not hand the request over as it came (a read or a write
# had begun). The app raises it before any view runs, so the error's answer, log line
# and metrics are its own, and nothing is done twice.
FAILED_WITHOUT_FLASK_KEY = "cruddur.failed_without_flask"


@bp.before_request
def _raise_what_failed_without_flask() -> None:
    failed = request.environ.pop(FAILED_WITHOUT_FLASK_KEY, None)
    if failed is not None:
        raise failed


T = TypeVar("T")


def _read(use_case: Callable[..., T], *args: Any) -> T:
    """A read, on the replica when it is fresh enough (X-Read-After: fresh enough to hold
    the caller's own write), else on the primary."""
    extensions, environ = current_app.extensions, request.environ
    return _read_in(extensions, use_case, *args, read_after=_read_after(extensions, environ))


def _read_in(
    extensions: dict[str, Any], use_case: Callable[..., T], *args: Any, read_after: int | None
) -> T:
    """_read, given the app's extensions and the request's X-Read-After position (the home
    feed reads each once a request: through Flask's context proxies each read is a lookup
    chain)."""
    router: ReadRouter = extensions["cruddur.reads"]
    return router.read(use_case, *args, read_after=read_after)


def _read_after(extensions: dict[str, Any], environ: dict[str, Any]) -> int | None:
    """The WAL position the read must see, from X-Read-After: None without the header,
    without a replica (every read is the primary's) or once its window has passed; a 400
    for a value this service did not sign (api/read_after.py)."""
    sent = environ.get(READ_AFTER_KEY)
    router: ReadRouter = extensions["cruddur.reads"]
    if sent is None or router.reader is None:
        return None
    try:
        return router.signer.position(sent)
    except InvalidReadAfter:
        raise ApiError(
            400,
            "invalid_read_after",
            f"{READ_AFTER_HEADER} must be sent back as a write's response gave it: a WAL "
            "position, its expiry and this service's signature of both",
        ) from None


# A new row's JSON begins with its uuid (columns.sql lists it first, row_to_json writes
# no spaces): the write path slices it out rather than parsing the body again.
_UUID_KEY = '{"uuid":"'
_UUID_END = len(_UUID_KEY) + 36


def _location(body: str) -> str:
    """The new crud's own URL (the `show` route below), for the 201's Location."""
    if body.startswith(_UUID_KEY) and body[_UUID_END : _UUID_END + 1] == '"':
        uuid = body[len(_UUID_KEY) : _UUID_END]
    else:  # columns.sql changed its order: slower, still right
        uuid = json.loads(body)["uuid"]
    return f"{bp.url_prefix}/{uuid}"


def _written(body: str) -> Response:
    """A write's 201 (signed in, so Cache-Control: no-store: edge.py)."""
    return JsonPage(body, after_write(current_app.extensions, body), 201)


def after_write(extensions: dict[str, Any], body: str) -> list[tuple[str, str]]:
    """What follows a write of the new crud or reply `body`: the feed has changed (this
    worker's kept pages go now, the other workers' when the NOTIFY reaches them); and
    the 201's own headers: Location names the new crud, X-Read-After the primary's WAL
    position when a replica serves reads."""
    extensions["cruddur.feed_cache"].changed()
    return _created_headers(extensions, body)


def _written_once(written: Written) -> Response:
    """A keyed write's 201: as _written when it wrote now; the first attempt's answer,
    marked Idempotent-Replayed, when the key had been used (nothing changed now). The
    kept pages go all the same: the first attempt may have committed without dropping
    them (its answer lost on a worker that died, or on a server with the cache off)."""
    if not written.replayed:
        return _written(written.body)
    headers = after_write(current_app.extensions, written.body)
    return JsonPage(written.body, [*headers, (REPLAYED_HEADER, "true")], 201)


def _created_headers(extensions: dict[str, Any], body: str) -> list[tuple[str, str]]:
    headers = [("Location", _location(body))]
    position = extensions["cruddur.reads"].write_position()
    if position is not None:
        headers.append((READ_AFTER_HEADER, position))
    return headers


JSON = "application/json"  # a content type as is: werkzeug adds no charset to it


def _json(body: str | bytes, status: int = 200) -> Response:
    return Response(body, status, content_type=JSON)


# Read from the WSGI environ: werkzeug's header and query-string views cost more than
# the lookups they do, on the feed's every request.
READ_AFTER_KEY = "HTTP_" + READ_AFTER_HEADER.upper().replace("-", "_")
FIRST_PAGE = PageRequest()


def _page_request(environ: dict[str, Any]) -> PageRequest:
    if not environ.get("QUERY_STRING"):
        return FIRST_PAGE  # the common case: no limit, no cursor
    return PageRequest.from_query(request.args.get("limit"), request.args.get("before"))


# The public first page of the home feed: a CDN may hold it a second, no longer. Not
# stale-while-revalidate: with it a CDN answers with a copy up to max-age + its seconds
# old, once after each quiet spell, while it fetches the next: cruds that expired, and,
# without a replica (no X-Read-After, so nothing to vary on), a writer's reload without
# the post just made. The server answers this page from its kept copy in well under a
# millisecond, so there is little latency for it to hide. Other pages are public too, but
# are checked each time (their ETag makes that a 304). Answers to signed-in requests
# (writes) are the caller's: edge.py makes them no-store.
FIRST_PAGE_MAX_AGE = 1
FIRST_PAGE_CACHE_CONTROL = f"public, max-age={FIRST_PAGE_MAX_AGE}"
PAGE_CACHE_CONTROL = "public, no-cache"
_VARY_READ_AFTER = ("Vary", READ_AFTER_HEADER)  # beside the edge's Vary: Origin


def _not_modified(etag: str, environ: dict[str, Any]) -> bool:
    """Whether the request's If-None-Match names this ETag (or is *)."""
    given = environ.get("HTTP_IF_NONE_MATCH")
    if not given:
        return False
    return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in given.split(","))


def _page_response(
    page: Page,
    limit: int,
    cursor_param: str = "before",
    *,
    etag: str | None = None,
    cache_control: str = PAGE_CACHE_CONTROL,
    path: str | None = None,
    environ: dict[str, Any] | None = None,
) -> Response:
    """`path`: the request's path, quoted, when the caller knows it (the home feed's);
    `environ`: the request's, when the caller has it."""
    etag = etag or etag_of(page)
    # X-Read-After picks the database (a replica behind a write, or the primary), so a
    # shared cache must not hand the answer without the write to the writer.
    headers = [("ETag", etag), ("Cache-Control", cache_control), _VARY_READ_AFTER]
    if _not_modified(etag, environ or request.environ):
        return Response(status=304, headers=headers)
    if page.next is not None:
        # The path is URL-safe for handles the schema admits, but a header must never
        # carry raw non-ASCII, so it is quoted (a no-op for ASCII-safe text).
        _add_next(headers, page.next, limit, cursor_param, path or quote(request.path, safe="/@"))
    return JsonPage(page.body, headers)


def _add_next(
    headers: list[tuple[str, str]], next: Cursor, limit: int, cursor_param: str, path: str
) -> None:
    """The next page's Link and X-Next-Cursor (the limit and the cursor are URL-safe by
    construction: digits, digits_uuid)."""
    cursor = next.encode()
    next_url = f"{path}?limit={limit}&{cursor_param}={cursor}"
    headers += [("Link", f'<{next_url}>; rel="next"'), ("X-Next-Cursor", cursor)]


class JsonPage(Response):
    """A page's 200 (or a write's 201): the body as PostgreSQL built it, and its own
    headers (ETag, Cache-Control, Vary, paging; a write's Location and X-Read-After)
    put on the WSGI header list as they are.

    Through werkzeug's Headers each header is checked for newlines and copied twice (in
    the response, then in get_wsgi_headers), and a Location goes through iri_to_uri: for
    these few, as much work again as the rest of the Response. Their values cannot hold
    a newline or anything iri_to_uri would change: a digest, constants, a cursor of
    digits and a uuid, a quoted path, an API path ending in a uuid, a WAL position. They
    are not in `.headers`; nothing after the view reads them there.
    """

    def __init__(
        self, body: bytes | str, page_headers: list[tuple[str, str]], status: int = 200
    ) -> None:
        super().__init__(body, status, content_type=JSON)
        self.page_headers = page_headers

    def get_wsgi_response(self, environ: dict[str, Any]) -> tuple[Any, str, list]:
        app_iter, status, headers = super().get_wsgi_response(environ)
        headers += self.page_headers
        return app_iter, status, headers


def _uuid(text: str, what: str) -> UUID:
    parsed = parse_uuid(text)
    if parsed is None:
        raise ApiError(400, f"invalid_{what}", f"{what} must be a UUID, not {text[:64]!r}")
    return parsed


def _json_object() -> dict:
    """The request body as a JSON object, or 415/413/400 saying what is wrong with it."""
    req = request._get_current_object()  # read through the proxy once
    require_json(req)
    try:
        body = json_body(req)
    except UnreadableJson as exc:
        raise ApiError(400, "invalid_json", str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


HOME_PATH = f"{bp.url_prefix}/home"


@bp.get("/home")
def home() -> Response:
    environ = request.environ
    extensions = current_app.extensions
    wanted = _page_request(environ)
    read_after = _read_after(extensions, environ)
    # The first page comes from this worker's copy (services/feed_cache.py), unless the
    # caller asks to read after its own write (X-Read-After, within its window) and a
    # replica, which may be behind it, serves reads: that reads the database. Without a
    # replica no write gives the header and it means nothing (openapi.yaml): no way
    # around the copy.
    if wanted.before is START and read_after is None:
        first_pages = extensions["cruddur.feed_cache"].pages()
        if first_pages is not None:
            kept = first_pages.get(
                wanted.limit,
                lambda: _read_in(
                    extensions, activities.home_first_page, wanted.limit, read_after=None
                ),
            )
            return _page_response(
                kept.page,
                wanted.limit,
                etag=kept.etag,
                cache_control=FIRST_PAGE_CACHE_CONTROL,
                path=HOME_PATH,
                environ=environ,
            )
    page = _read_in(extensions, activities.home_feed, wanted, read_after=read_after)
    cache_control = FIRST_PAGE_CACHE_CONTROL if wanted.before is START else PAGE_CACHE_CONTROL
    return _page_response(
        page, wanted.limit, cache_control=cache_control, path=HOME_PATH, environ=environ
    )


class FirstHomePage:
    """WSGI middleware: `GET /api/activities/home`, the feed's first page (the API's
    most common request), answered without Flask; every other request goes to the app.

    The same page (the worker's kept copy, or the same read through the replica
    router when the cache is off) and the same answer, 200 or 304, byte for byte and
    header for header, as the `home` view's (tests/test_api_feeds.py compares the two).
    Through Flask, its request context, URL matching, hooks and Response were ~2,800 of
    the uncached request's ~5,000 Python bytecodes; here it runs ~1,700 in all (README,
    "Measured"). Only the plainest request comes here: no query string, no X-Read-After
    (`answers`); sampled for a trace, in the WSGI instrumentation's server span
    (tracing.Shortcut). A read that fails goes to the app under FAILED_WITHOUT_FLASK_KEY:
    the error's answer, log line and metrics are the app's own.
    """

    def __init__(self, app: Any, extensions: dict[str, Any]) -> None:
        self.app = app
        self.router: ReadRouter = extensions["cruddur.reads"]
        self.feed_cache = extensions["cruddur.feed_cache"]

    def _read_first_page(self) -> tuple[Page, Any]:
        return self.router.read(activities.home_first_page, FIRST_PAGE.limit)

    @staticmethod
    def answers(environ: dict[str, Any]) -> bool:
        """Whether the request is the plain first page this answers (any other goes on)."""
        return (
            environ.get("PATH_INFO") == HOME_PATH
            and environ.get("REQUEST_METHOD") == "GET"
            and not environ.get("QUERY_STRING")
            and READ_AFTER_KEY not in environ
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.answers(environ):
            return self.app(environ, start_response)
        environ[ROUTE_KEY] = HOME_PATH  # the route's template too, for the request log
        try:
            first_pages = self.feed_cache.pages()
            if first_pages is not None:
                kept = first_pages.get(FIRST_PAGE.limit, self._read_first_page)
                page, etag = kept.page, kept.etag
            else:
                page = self.router.read(activities.home_feed, FIRST_PAGE)
                etag = etag_of(page)
        except Exception as exc:
            environ[FAILED_WITHOUT_FLASK_KEY] = exc
            return self.app(environ, start_response)
        headers = [("ETag", etag), ("Cache-Control", FIRST_PAGE_CACHE_CONTROL), _VARY_READ_AFTER]
        if _not_modified(etag, environ):
            start_response("304 NOT MODIFIED", headers)
            return []
        body = page.body
        headers[:0] = [("Content-Type", JSON), ("Content-Length", str(len(body)))]
        if page.next is not None:
            _add_next(headers, page.next, FIRST_PAGE.limit, "before", HOME_PATH)
        start_response("200 OK", headers)
        return [body]


@bp.get("/@<handle>")
def user_feed(handle: str) -> Response:
    wanted = _page_request(request.environ)
    # A handle the schema would refuse (too long, a NUL, a space) names nobody: no query.
    page = _read(activities.user_feed, handle, wanted) if HANDLE_PATTERN.fullmatch(handle) else None
    if page is None:
        shown = handle[:HANDLE_MAX_CHARS]
        raise ApiError(404, "user_not_found", f"no user has the handle {shown!r}")
    return _page_response(page, wanted.limit)


@bp.get("/<activity_uuid>")
def show(activity_uuid: str) -> Response:
    if activity_uuid == "@":  # /@<handle> with no handle
        raise ApiError(404, "user_not_found", "no user has the handle ''")
    parent = _uuid(activity_uuid, "activity_uuid")
    replies = RepliesRequest.from_query(request.args.get("limit"), request.args.get("after"))
    found = _read(activities.show_activity, parent, replies)
    if found is None:
        raise ApiError(404, "activity_not_found", "no such crud (or it has expired)")
    return _page_response(found, replies.limit, "after")


CREATE_PATH = bp.url_prefix  # the create route's path, as NewCrud matches it

# Idempotency-Key (IETF httpapi-idempotency-key-header, as Stripe reads it): a write sent
# with one is stored at most once per (caller, key) for 24 hours; a retry of the same
# request is answered as the first was, with Idempotent-Replayed: true.
IDEMPOTENCY_KEY = "HTTP_IDEMPOTENCY_KEY"  # in the WSGI environ (NewCrud reads it too)
REPLAYED_HEADER = "Idempotent-Replayed"
# Printable ASCII but the comma (within the schema's CHECK on idempotency_keys.key): the
# server joins a header sent twice with one, so "a,b" was stored as a key of its own, and
# a retry that sent only one of them stored the write again. Not beginning or ending
# with a space: HTTP servers strip those from a header's value (a key of spaces reached
# the app as "", and " a" as "a"), so no client could send them as they are.
_KEY_PATTERN = re.compile(r"[!-+\--~](?:[ -+\--~]{0,253}[!-+\--~])?")


def _sent_key() -> str | None:
    """The request's Idempotency-Key, or None without one; 400 for one that is not 1 to
    255 printable ASCII characters other than a comma (the header sent twice), not beginning
    or ending with a space."""
    sent = request.environ.get(IDEMPOTENCY_KEY)
    if sent is not None and not _KEY_PATTERN.fullmatch(sent):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be one header of 1 to 255 printable ASCII characters, no "
            "comma (a UUID will do)",
        )
    return sent


def _key_reused() -> ApiError:
    return ApiError(
        422,
        "idempotency_key_reused",
        "this Idempotency-Key was sent with another request (another body or endpoint); "
        "nothing was stored: send a new key for a new request",
    )


@bp.post("")
@signed_in
def create() -> Response:
    sent = _sent_key()
    message, ttl = validate_crud(_json_object())
    if sent is None:
        created = as_caller(lambda db, author: activities.create_activity(db, author, message, ttl))
        return _written(created)
    key = IdempotencyKey.of(sent, "POST", CREATE_PATH, message, ttl.total_seconds())
    try:
        written = as_caller(
            lambda db, author: activities.create_activity_once(db, author, message, ttl, key)
        )
    except KeyReused:
        raise _key_reused() from None
    return _written_once(written)


@bp.post("/<activity_uuid>/reply")
@signed_in
def reply(activity_uuid: str) -> Response:
    sent = _sent_key()
    parent = _uuid(activity_uuid, "activity_uuid")
    message = validate_reply(_json_object())
    if sent is None:
        created = as_caller(lambda db, author: activities.create_reply(db, author, parent, message))
        if created is None:
            raise _no_parent()
        return _written(created)
    path = f"{CREATE_PATH}/{parent}/reply"  # the uuid as parsed: any case is one request
    key = IdempotencyKey.of(sent, "POST", path, message)
    try:
        written = as_caller(
            lambda db, author: activities.create_reply_once(db, author, parent, message, key)
        )
    except KeyReused:
        raise _key_reused() from None
    if written is None:
        raise _no_parent()
    return _written_once(written)


def _no_parent() -> ApiError:
    return ApiError(404, "activity_not_found", "no such crud to reply to (or it has expired)")
