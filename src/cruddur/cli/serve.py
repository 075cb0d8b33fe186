"""`cruddur serve`: the API under a production WSGI server, or Flask's reloader (--dev)."""

from __future__ import annotations

import logging
import os
import re
import select
import signal
import subprocess
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from cruddur.cli.options import warn_if_moved
from cruddur.cli.output import cruddur_command, info, warn
from cruddur.config import (
    MAX_THREADS,
    MAX_WORKERS,
    SERVERS,
    ConfigError,
    Settings,
    is_loopback,
    redact_endpoint,
)
from cruddur.ops.role_names import API_ROLE, LAMBDA_ROLE
from cruddur.ports import PortTaken, bindable_host, claim, hold_port_on_this_machine, url_host
from cruddur.serving import raise_open_files_limit, server_command

# psycopg (through the ops, targets and urls), PyJWT (dev_keys), Flask (--dev only) and
# the metrics are imported where they are used: `cruddur serve --help` needs none of
# them, and the server it execs imports its own.
if TYPE_CHECKING:
    from cruddur.api_urls import ApiUrls
    from cruddur.targets import Target

EXPORTER_START_TIMEOUT = 10  # seconds for the metrics exporter to listen
# The settings that hold a database's URL, password and all (CONNECTION_URL, PROD_…,
# CRUDDUR_API_…, READER_…, CRUDDUR_LISTEN_URL).
DATABASE_URL_SUFFIXES = ("CONNECTION_URL", "CRUDDUR_LISTEN_URL")


_QUERY = re.compile(r"\?[^ ]*")  # in a request line: from ? to the space before HTTP/1.1


def _without_query(record: logging.LogRecord) -> bool:
    """werkzeug's request lines ('"GET /p?q HTTP/1.1" 200 -') without the query."""
    args = record.args
    if isinstance(args, tuple) and args and isinstance(args[0], str) and "?" in args[0]:
        record.args = (_QUERY.sub("", args[0], count=1), *args[1:])
    return True


def _check_database(target: Target, settings: Settings) -> tuple[int, bool] | None:
    """Warn (the service still starts: it answers 503 until the database is back). The
    number of the schema's tables and whether the URL's user could change the schema;
    None when the database does not answer."""
    from cruddur.db.errors import explain
    from cruddur.ops import loading, roles
    from cruddur.ops.connections import database_db

    try:
        with database_db(target, settings.pool) as db:
            tables = loading.schema_tables(db)
            powerful = roles.can_change_schema(db)
    except Exception as exc:
        explained = explain(exc)
        if explained is None:
            raise
        if explained.kind == "no-database":  # not "yet": it waits for `db setup` (a review)
            warn(f"{explained.message}: {explained.hint}")
        else:
            warn(f"the database does not answer yet: {explained.message}")
        return None
    if tables < loading.SCHEMA_TABLES:
        warn("the database has no schema: create it with `bin/db-setup` (or `bin/db-migrate`)")
    return tables, powerful


def _api_role(settings: Settings, target: Target, found: tuple[int, bool] | None) -> None:
    """Say as whom the API connects; on the embedded server, make sure its role is ready."""
    from cruddur.ops import loading, roles
    from cruddur.ops.connections import database_db, server_db
    from cruddur.targets import embedded_server
    from cruddur.urls import redact

    if settings.api_connection_url:
        info(f"API role: {redact(settings.api_connection_url)}")
        if _api_role_can_change_schema(settings, target, found):
            warn(
                "CRUDDUR_API_CONNECTION_URL's user can change the schema (it owns the "
                "database or a table, or may create there): give the API a role of its own "
                "with `cruddur db roles`"
            )
        return
    if target.embedded:
        if found and found[0] == loading.SCHEMA_TABLES:
            embedded = embedded_server(settings)
            passwords = {r: embedded.role_password(r) for r in (API_ROLE, LAMBDA_ROLE)}
            with (
                server_db(target, settings.pool) as server,
                database_db(target, settings.pool) as database,
            ):
                roles.set_up(
                    server, database, passwords=passwords,
                    api_timeouts=settings.api_timeouts.as_settings(),
                )  # fmt: skip
        info(f"API role: {API_ROLE}, on the embedded server")
        return
    if found and found[1]:
        warn(
            "the API connects as CONNECTION_URL's user, who can change the schema: make "
            "its own role with `cruddur db roles` and set CRUDDUR_API_CONNECTION_URL"
        )


def _api_role_can_change_schema(
    settings: Settings, target: Target, found: tuple[int, bool] | None
) -> bool:
    """Whether CRUDDUR_API_CONNECTION_URL's user could change the schema; False when the
    database does not answer (`_check_database` said so)."""
    from cruddur.db import Db
    from cruddur.db.dead_peer import with_cli_bounds
    from cruddur.db.errors import explain
    from cruddur.ops import roles
    from cruddur.ops.connections import admin_pool
    from cruddur.targets import api_url

    if found is None:
        return False
    if target.source == "CRUDDUR_API_CONNECTION_URL":  # _check_database connected as it
        return found[1]
    try:
        with Db(
            with_cli_bounds(api_url(settings, target)),
            admin_pool(settings.pool),
            application_name="cruddur-cli",
            behind_pooler=target.behind_pooler,
        ) as db:
            return roles.can_change_schema(db)
    except Exception as exc:
        if explain(exc) is None:
            raise
        warn(f"the API's role could not be checked: {explain(exc).message}")
        return False


def start_metrics_exporter(host: str, port: int) -> None:
    """The process serving /metrics for all workers (telemetry/exporter.py), started before
    this process becomes the server, which is then its parent: it ends with the server."""
    from cruddur.telemetry.counts_folder import make_counts_folder, remove_counts_folder

    folder = make_counts_folder()  # the workers count into it
    exporter = subprocess.Popen(
        [sys.executable, "-m", "cruddur.telemetry.exporter", "--dir", folder,
         "--port", str(port), "--host", host, "--parent", str(os.getpid())],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
        # No database URL: it reads the workers' counts, and lives as long as they do.
        env={k: v for k, v in os.environ.items() if not k.endswith(DATABASE_URL_SUFFIXES)},
    )  # fmt: skip
    ready, _, _ = select.select([exporter.stdout], [], [], EXPORTER_START_TIMEOUT)
    said = exporter.stdout.readline().strip() if ready else ""
    exporter.stdout.close()
    if said != "ready":
        exporter.kill()
        remove_counts_folder(folder)
        raise click.ClickException(
            f"metrics: {said or 'the exporter did not start'} (CRUDDUR_METRICS_HOST, "
            "CRUDDUR_METRICS_PORT)"
        )


def _share_last_write(env: dict[str, str]) -> None:
    """The file of 8 bytes the workers share (services/last_write.py), named in `env`: a
    write there drops the other workers' kept first pages before its 201 goes out. The
    server's main process (this one, after the exec) removes it as it ends."""
    from cruddur.services import last_write

    try:
        env[last_write.ENV] = last_write.make()
    except OSError as exc:
        env.pop(last_write.ENV, None)
        warn(f"a write may miss the next home page of another worker for a few ms: {exc}")


def _stops_heard() -> None:
    """An ignored SIGINT or SIGTERM (a background job of a script: `cruddur serve &`
    without job control ignores SIGINT) heard from here on: a stop while serve checked
    the database and its settings, before the exec below, was lost, and the server went
    on to serve. Ctrl-C's KeyboardInterrupt then ends it as any verb ends; SIGTERM's
    default action ends it. (Only while Python itself starts can a stop still be lost.)"""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@click.command()
@click.option("--host", help="Address to listen on [CRUDDUR_HOST; default 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [PORT; default 4567].")
@click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    help="Processes [CRUDDUR_WORKERS; default 2].",
)
@click.option(
    "--threads",
    type=click.IntRange(1, MAX_THREADS),
    help="Threads per process [CRUDDUR_THREADS; default 4].",
)
@click.option(
    "--server",
    type=click.Choice(SERVERS),
    help="WSGI server [CRUDDUR_SERVER; default granian]. README: why, with measurements.",
)
@click.option(
    "--dev",
    is_flag=True,
    help="Flask's development server with its debugger, reloading on changes "
    "(loopback addresses only).",
)
def serve(
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
    server: str | None,
    dev: bool,
) -> None:
    """Serve the Cruddur API over HTTP.

    By default on http://127.0.0.1:4567 (the home feed: /api/activities/home).
    Uses CONNECTION_URL's database, or the embedded server, which it starts; with
    CRUDDUR_API_CONNECTION_URL alone, that role's database. Load the schema first
    (`bin/db-setup`; `bin/run` does it all). The OpenAPI document is at
    /api/openapi.yaml.

    Each request logs one JSON line on stdout (CRUDDUR_LOG_FORMAT=text for people; --dev
    does that). Traces go over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set;
    Prometheus metrics, summed over the workers, when CRUDDUR_METRICS_PORT is.
    """
    from cruddur.api_urls import ApiUrls
    from cruddur.targets import api_url, serve_target

    _stops_heard()
    settings = Settings.from_env()
    config = settings.serve
    settings.web  # noqa: B018 - checked here once, not in each worker as it starts
    port = port or config.port
    try:
        host = bindable_host(host or config.host)
    except PortTaken as exc:
        raise click.ClickException(str(exc)) from None
    if dev and not is_loopback(host):
        # Werkzeug's debugger runs any Python a visitor types into an error page.
        raise ConfigError(
            f"--dev serves Flask's debugger, which runs code for whoever reaches it: "
            f"only on a loopback address (127.0.0.1), not {host}"
        )
    auth = settings.auth.checked_for(host)
    if settings.telemetry.metrics_port == port:
        # The exporter would take it first, and the server fail with a traceback.
        raise ConfigError(
            f"CRUDDUR_METRICS_PORT is {port}, the port the API serves on: give the "
            "metrics another port"
        )
    # At once, before anything slow: a second server must not start at all. (Flask's
    # reloader runs this command again in a child that serves the socket it made.)
    held = None
    if not os.environ.get("WERKZEUG_RUN_MAIN"):
        try:
            claim(host, port, settings.home)
            held = hold_port_on_this_machine(host, port)  # kept to the exec below
        except PortTaken as exc:
            raise click.ClickException(str(exc)) from None
    if settings.telemetry.metrics and not dev:
        # Before anything is said of serving: a metrics port that is taken stops it here,
        # in one line (it came after the banner, which said the API was serving).
        start_metrics_exporter(settings.telemetry.metrics_host, settings.telemetry.metrics_port)
    target = serve_target(settings)  # starts the embedded server, once, before the workers
    info(f"database: {target.describe()}")
    warn_if_moved(target)
    _api_role(settings, target, _check_database(target, settings))
    # Worked out here once; the workers take them as they are (ApiUrls.environ).
    api_urls = ApiUrls.from_settings(settings, api_url(settings, target))
    if auth.dev:
        from cruddur.dev_keys import DevKeys

        DevKeys(settings.home).ensure()
        ignored = f" (CRUDDUR_AUTH=dev: {', '.join(auth.ignored)} set, not used)"
        warn(
            f"auth: development key pair{ignored if auth.ignored else ''}; "
            f"`{cruddur_command()} dev token --handle andrewbrown` mints tokens"
        )
    elif auth.disabled:
        warn(f"auth: nobody can sign in (reads work): {auth.disabled}")
    else:
        info(f"auth: tokens from {auth.issuer}")
    info(
        f"serving http://{url_host(host)}:{port}/ (the web page) and /api/activities/home (the API)"
    )
    if target.embedded:
        info(
            "the embedded PostgreSQL keeps running after the API stops; "
            f"`{cruddur_command()} db down` stops it"
        )
    telemetry = settings.telemetry
    info(
        "traces: "
        + (
            f"OTLP/HTTP to {redact_endpoint(telemetry.traces_endpoint)}"
            if telemetry.traces
            else "off"
        )
        + "; metrics: "
        + (
            f"http://{url_host(telemetry.metrics_host)}:{telemetry.metrics_port}/metrics"
            if telemetry.metrics
            else "off"
        )
    )
    if dev:
        from cruddur import telemetry as process_telemetry
        from cruddur.api import create_app

        # The reloader's parent only watches files; its child serves (WERKZEUG_RUN_MAIN).
        # Metrics and traces are the child's: the parent held the metrics port, and the
        # child's counts, on a port it could not have, were never seen.
        serving = bool(os.environ.get("WERKZEUG_RUN_MAIN"))
        if serving:
            _end_with_the_reloader()
        else:
            os.environ[_RELOADER_PID] = str(os.getpid())  # for its child, which serves
        watching = replace(telemetry, metrics_port=None, traces_endpoint=None)
        process_telemetry.start_process(  # no exporter
            telemetry if serving else watching, dev=True, server=True
        )
        # The address served, as the workers below are told (CRUDDUR_HOST): the app's
        # sign-in rule read CRUDDUR_HOST's instead, and refused the dev key pair on
        # 127.0.0.1 when that said 0.0.0.0.
        served = replace(settings, serve=replace(settings.serve, host=host))
        app = create_app(served, urls=api_urls)
        from cruddur.web.assets import STATIC

        # Its request lines without their query (an access_token sent there by mistake):
        # Cruddur's own line beside each never has one.
        logging.getLogger("werkzeug").addFilter(_without_query)
        # The page's files too: they are read once, when the app is made, so an edit to
        # them went unseen until a restart by hand.
        static = sorted(str(entry) for entry in STATIC.iterdir() if entry.is_file())
        app.run(host=host, port=port, debug=True, use_reloader=True, extra_files=static)
        return
    server = server or config.server
    workers, threads = workers or config.workers, threads or config.threads
    command = server_command(
        server,
        host,
        port,
        workers,
        threads,
        header_timeout=config.header_timeout,
        open_files=raise_open_files_limit(),
    )
    # The server's workers get the URLs worked out above (the embedded server's as the
    # API's role; never printed), and the address chosen here: each worker's create_app
    # checks it (the dev key pair only on loopback), and the threads it has (the app
    # keeps one free of request bodies: api/bodies.py).
    env = {
        **os.environ, **api_urls.environ(), "CRUDDUR_HOST": host, "CRUDDUR_THREADS": str(threads)
    }  # fmt: skip
    _without_owners_urls(env, settings, api_urls)
    if not settings.replica.read_after_key:
        from cruddur.api.read_after import KEY_SETTING as READ_AFTER_KEY_SETTING
        from cruddur.api.read_after import new_key

        # One key for all the workers: a write's X-Read-After, signed by one, is read back
        # by another (api/read_after.py). Other instances need CRUDDUR_READ_AFTER_KEY.
        env[READ_AFTER_KEY_SETTING] = new_key()
    _share_last_write(env)
    info(f"server: {server}, {workers} workers, {threads} threads each")
    sys.stdout.flush()
    sys.stderr.flush()
    # An ignored SIGINT or SIGTERM (a background job of a script: `cruddur serve &` without
    # job control ignores SIGINT) goes through exec, and granian only handles them once
    # its own handlers are in: a stop in its first moments was lost, and the server went
    # on to serve. The default action stops it at any moment.
    for stop in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(stop) == signal.SIG_IGN:
            signal.signal(stop, signal.SIG_DFL)
    if held is not None:
        os.set_inheritable(held.fileno(), True)  # the server's processes hold it from here
    # A Ctrl-C from here until the server's main process takes it (main_process.py) is
    # held, not a KeyboardInterrupt in Python's start-up or imports: a signal mask goes
    # through exec.
    from cruddur.main_process import hold_ctrl_c

    hold_ctrl_c()
    os.execve(command[0], command, env)


# The URLs (passwords and all) of roles that may change the schema or reach production:
# the workers log in with the API's URL alone.
OWNERS_URLS = ("PROD_CONNECTION_URL", "MIGRATION_CONNECTION_URL", "PROD_MIGRATION_CONNECTION_URL")


def _without_owners_urls(env: dict[str, str], settings: Settings, api_urls: ApiUrls) -> None:
    """The workers' environment without the owner's and production's URLs, which any
    code in a worker could read back (/proc/PID/environ): an API that served as its own
    role still held the master password. CONNECTION_URL stays when it is the API's own
    login (no role of its own: the owner serves)."""
    from cruddur.api_urls import api_url_and_setting

    for name in OWNERS_URLS:
        env.pop(name, None)
    if api_url_and_setting(settings, api_urls)[1] != "CONNECTION_URL":
        env.pop("CONNECTION_URL", None)


_RELOADER_PID = "CRUDDUR_RELOADER_PID"  # in the environment of --dev's serving child


def _end_with_the_reloader() -> None:
    """--dev's serving child ends with the reloader that started it, however that ends:
    killed outright (kill -9, the OOM killer), it left the child serving on the port
    under init, holding the port's lock, and no command stopped it."""
    import signal

    from cruddur.parent_death import signal_on_parent_death

    reloader = os.environ.get(_RELOADER_PID, "")
    if not signal_on_parent_death(signal.SIGTERM):
        return
    if reloader.isdigit() and os.getppid() != int(reloader):  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)
