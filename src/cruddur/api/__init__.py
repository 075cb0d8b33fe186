"""The Cruddur JSON API: `create_app()` builds the Flask app (gunicorn and granian call it
in each worker, so each opens its own pool after the fork)."""

from __future__ import annotations

import functools
import gc
import logging
import signal
from dataclasses import replace
from importlib.resources import files
from typing import Any

from flask import Flask, Response
from flask.sessions import NullSession, SessionInterface

from cruddur import telemetry, web
from cruddur.api import activities, dev_sign_in, errors, health
from cruddur.api.auth import TokenVerifier
from cruddur.api.bodies import BODY_READERS_KEY, BodyReaders
from cruddur.api.db import PRIMARY_KEY, ApiUrls, AppDatabase, primary_db, reader_db
from cruddur.api.edge import REQUEST_ID_KEY, Edge
from cruddur.api.feed_pages import AppFeedCache
from cruddur.api.new_crud import NewCrud
from cruddur.api.reads import ReadRouter
from cruddur.api_urls import api_url_and_setting
from cruddur.config import Settings
from cruddur.db import Db
from cruddur.dev_keys import DevKeys
from cruddur.services.last_write import LastWrite
from cruddur.services.users import Authors
from cruddur.telemetry import logs, metrics, requests, tracing

# Werkzeug's URL matcher leaves a small reference cycle per request, so with Python's
# default first generation (700) the collector runs every few dozen requests.
WORKER_GC_THRESHOLD = 50_000

# Room for the longest reply (1,024 characters, each up to 12 bytes as JSON escapes).
MAX_BODY_BYTES = 16 * 1024

OPENAPI = files("cruddur.api").joinpath("openapi.yaml")


class NoSessions(SessionInterface):
    """The API keeps no cookie session (no secret key; a token says who calls). Flask's
    default interface still looks for a key and makes an empty session on every request;
    this hands out one shared empty session, which refuses writes all the same."""

    _none = NullSession()

    def open_session(self, app: Flask, request: object) -> NullSession:  # type: ignore[override]
        return self._none

    def save_session(self, app: Flask, session: object, response: object) -> None:  # type: ignore[override]
        return None


def create_app(
    settings: Settings | None = None,
    *,
    urls: ApiUrls | None = None,
    database: Db | None = None,
    verifier: TokenVerifier | None = None,
) -> Flask:
    """The app over `urls` (what `cruddur serve` worked out), else the settings' URLs;
    `database` stands in for the primary's pool (tests)."""
    settings = settings or Settings.from_env()
    logs.configure(settings.telemetry)
    app = Flask("cruddur")
    # `/api/activities//home` is a 404, not a redirect built from the Host header.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.session_interface = NoSessions()
    app.extensions[BODY_READERS_KEY] = BodyReaders(settings.serve.threads)

    # Worked out on first use, as the pools are opened: a URL that cannot be used (an RDS
    # endpoint whose CA bundle cannot be fetched) costs 5xx answers, not a dead worker.
    @functools.cache
    def api_urls() -> ApiUrls:
        return urls or ApiUrls.from_settings(settings)

    @functools.cache
    def primary() -> Db:
        return database or primary_db(settings, api_urls().primary)

    app.extensions[PRIMARY_KEY] = holder = AppDatabase(primary)
    replica = settings.replica
    has_reader = bool(urls.reader if urls else replica.reader_url)

    def reader() -> Db:
        url = api_urls().reader
        assert url is not None  # asked for only when there is a replica
        return reader_db(settings, url)

    reader_holder = AppDatabase(reader) if has_reader else None
    app.extensions["cruddur.reads"] = ReadRouter(
        holder, reader_holder, replica, settings.pool.connect_timeout,
        web.read_after_seconds(replica),
    )  # fmt: skip
    if verifier is None:
        # Partial Cognito settings stop the app here, and the dev key pair never signs in
        # on an address others can reach: signing in must never fail open.
        settings = replace(settings, auth=settings.auth.checked_for(settings.serve.host))
        log = logging.getLogger("cruddur.api")
        if settings.auth.dev:
            DevKeys(settings.home).ensure()
            log.warning(
                "auth: accepting tokens from the local development key pair, from this "
                "machine only (%s)",
                _dev_auth_why(settings.auth),
            )
        elif settings.auth.disabled:
            log.warning("auth: nobody can sign in: %s", settings.auth.disabled)
        verifier = TokenVerifier(settings.auth)
    app.extensions["cruddur.verifier"] = verifier
    app.extensions["cruddur.authors"] = Authors()
    serve = settings.serve

    def listen_conninfo() -> str:
        return api_urls().listen or primary().conninfo

    # LISTEN through a transaction pooler hears nothing: without a direct URL for it, the
    # copies would go stale for their whole second after each write. Then keep none. The
    # URL judged is the one the API's pool uses (as primary_db judges it), not
    # CONNECTION_URL, which an API given CRUDDUR_API_CONNECTION_URL may not have.
    cache_on = serve.feed_cache
    api_url, api_url_setting = api_url_and_setting(settings, urls)
    pooled = bool(api_url) and settings.replica.behind_pooler(api_url)
    if cache_on and pooled and not serve.listen_url:
        logging.getLogger("cruddur.api").warning(
            "feed cache off: %s goes through a transaction pooler, where LISTEN hears "
            "nothing; set CRUDDUR_LISTEN_URL to the primary's own endpoint",
            api_url_setting,
        )
        cache_on = False
    app.extensions["cruddur.feed_cache"] = AppFeedCache(
        listen_conninfo,
        enabled=cache_on,
        last_write=LastWrite.from_env() if cache_on else None,  # serve's workers share it
    )

    # The home feed's first page and a new crud without Flask (activities.FirstHomePage,
    # new_crud.NewCrud), for every request that is not traced; a traced first page too,
    # in the WSGI instrumentation's span (tracing.Shortcut), any other traced request
    # through Flask's instrumentation.
    def without_flask(untraced: Any) -> Any:
        new_crud = NewCrud(untraced, app.extensions, MAX_BODY_BYTES)
        return activities.FirstHomePage(new_crud, app.extensions)

    if tracing.enabled():
        # Inside the edge (its log line has the ids); behind the gate, for untraced ones.
        home = tracing.Shortcut(
            activities.HOME_PATH,
            activities.FirstHomePage.answers,
            lambda rest: activities.FirstHomePage(rest, app.extensions),
        )
        tracing.instrument_app(app, untraced=without_flask, shortcut=home)
    # Request ids, CORS, and (when on) the request's log line and metrics.
    observe = requests.observer(REQUEST_ID_KEY)
    if observe is not None:
        app.request_class = requests.RememberedRequest
    inner = app.wsgi_app if tracing.enabled() else without_flask(app.wsgi_app)
    app.wsgi_app = Edge(inner, settings.serve.cors_origins, observe=observe)
    metrics.watch_pools(
        {"primary": holder.pool_stats}
        | ({"reader": reader_holder.pool_stats} if reader_holder is not None else {})
    )
    errors.install(app)
    app.register_blueprint(activities.bp)
    app.register_blueprint(health.bp)
    if settings.auth.dev:  # with a Cognito pool, "sign in as" does not exist
        app.register_blueprint(dev_sign_in.make_blueprint(settings))
        app.extensions[errors.HIDDEN_ROUTES_KEY] = ("/api/dev/", dev_sign_in.local_caller)
    openapi_text = OPENAPI.read_text()
    app.add_url_rule(
        "/api/openapi.yaml",
        "openapi",
        lambda: Response(openapi_text, mimetype="application/yaml"),
    )
    web.install(app, settings)  # the browser front end, at / and /assets/
    return app


def create_worker_app() -> Flask:
    """The app for one worker process of a WSGI server (`cruddur serve` names this factory).

    Objects from start-up (modules, the app) are frozen out of the collector's scans and
    its first generation is larger: together about 20 µs of a feed request's ~350 µs of
    Python (README, "Measured").
    """
    # granian installs a worker's signal handlers only after this factory returns; until
    # then a forked worker has the master's, which would swallow a stop sent while it
    # starts (the worker would outlive the server). The default ends it instead.
    if getattr(signal.getsignal(signal.SIGTERM), "__module__", "").startswith("granian"):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    settings = Settings.from_env()
    # Per worker, after the server's fork or spawn: threads and sockets do not survive one.
    telemetry.start_process(settings.telemetry, server=True)
    app = create_app(settings)
    gc.freeze()
    gc.set_threshold(WORKER_GC_THRESHOLD, *gc.get_threshold()[1:])
    return app


def _dev_auth_why(auth: Any) -> str:
    """Why the dev key pair signs in, and what would change it. With CRUDDUR_AUTH=dev
    beside Cognito's settings it said to set those settings, which were set."""
    if auth.ignored:
        return f"CRUDDUR_AUTH=dev: {', '.join(auth.ignored)} set, not used"
    return "set AWS_COGNITO_USER_POOL_ID and AWS_COGNITO_USER_POOL_CLIENT_ID for Cognito"
