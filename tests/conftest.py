"""Shared fixtures: a real PostgreSQL server and throwaway databases on it.

The server is CRUDDUR_TEST_URL's (or CONNECTION_URL's) when one is given, otherwise
the project's embedded server, started on demand. Every database a test makes is
named cruddur_test_… and dropped afterwards.

A seeded database is a copy of one template (CREATE DATABASE … TEMPLATE), which the
run's main process builds once with build_template() and drops at the end: a copy
takes about a fifth of the time of loading the schema and seed again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from cruddur.config import ApiTimeouts, Settings
from cruddur.db import Db
from cruddur.embedded import SHARED_ROOT, THROWAWAY_VARIABLE, EmbeddedPostgres
from cruddur.ops import loading, roles
from cruddur.ops.migrations import runner
from cruddur.ops.role_names import API_ROLE, LAMBDA_ROLE
from cruddur.targets import embedded_server
from cruddur.urls import with_database, with_user

_STARTED_HERE = pytest.StashKey[bool]()
_TEMPLATE_MADE_HERE = pytest.StashKey[str]()
_DEFAULT_ROLES_THERE = pytest.StashKey[frozenset[str]]()  # before the run, on a given server
# The template's name travels to pytest-xdist's workers in their environment.
_TEMPLATE_VARIABLE = "CRUDDUR_TEST_TEMPLATE_DB"
# So do the run's application roles (the API's, the Lambda's): names and passwords.
_ROLES_VARIABLE = "CRUDDUR_TEST_ROLES"
# How the run starts the embedded server when it is not running: without fsync, every
# test's CREATE and DROP DATABASE stop waiting on the disk (a drop took ~1.4 s, now ~0.05
# s). Safe for this throwaway use: only an operating-system crash can lose what fsync
# protects, and a server started by the run is stopped at its end.
TEST_SERVER_SETTINGS = {"fsync": "off", "full_page_writes": "off"}


def _given_url() -> str | None:
    return os.environ.get("CRUDDUR_TEST_URL") or os.environ.get("CONNECTION_URL")


def _embedded() -> EmbeddedPostgres:
    return embedded_server(Settings.from_env())


def _server_url() -> str:
    given = _given_url()
    if given:
        return with_database(given, "postgres")
    return with_database(_embedded().start(), "postgres")


def build_template(url: str, app_roles: dict[str, list[str]] | None = None) -> None:
    """Give the empty database at url what every seeded test database starts with:
    migrated and seeded, what `db setup` makes, and the application roles' privileges
    on its tables."""
    runner.migrate_url(url)
    with Db(url) as db:
        loading.load(db, loading.SEED)
        app_roles = app_roles or json.loads(os.environ.get(_ROLES_VARIABLE, "null"))
        if app_roles:  # this run's roles (other callers: the grants are the same)
            roles.grant(db, api=app_roles["api"][0], lambda_=app_roles["lambda"][0])


def _make_roles(url: str) -> dict[str, list[str]]:
    """This run's own API and Lambda roles, as `db setup` makes them (other runs and the
    embedded default keep theirs)."""
    suffix = uuid.uuid4().hex[:8]
    made = {}
    with Db(url) as server:
        for kind in ("api", "lambda"):
            ensured = roles.ensure(server, f"cruddur_test_{kind}_{suffix}")
            made[kind] = [ensured.role, str(ensured.password)]
        # As `db setup`: the API role's own timeouts, which hold behind PgBouncer too.
        roles.bound(server, made["api"][0], ApiTimeouts().as_settings())
    return made


# Per server (host, port): whether FILE_COPY is the cheaper copy, asked once a process.
_FILE_COPY_CHEAP: dict[tuple[str, int], bool] = {}


def _files_copied_cheaply(admin: psycopg.Connection) -> bool:
    """Whether CREATE DATABASE … STRATEGY FILE_COPY is the cheaper copy: PostgreSQL 15 or
    later, running without fsync (the run's embedded server). With fsync on (a server
    given by CRUDDUR_TEST_URL), each such copy checkpoints the whole cluster and syncs
    the files: slower than the default there, and a load on everyone sharing it."""
    server = (admin.info.host, admin.info.port)
    if server not in _FILE_COPY_CHEAP:
        _FILE_COPY_CHEAP[server] = (
            admin.info.server_version >= 150000
            and admin.execute("SHOW fsync").fetchone()[0] == "off"
        )
    return _FILE_COPY_CHEAP[server]


def _create(admin: psycopg.Connection, name: str, template: str | None = None) -> None:
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    if _files_copied_cheaply(admin):
        # PostgreSQL 15's default copies the template page by page through the WAL (~8
        # MB of it a database); copying its files costs the server about half the CPU.
        query += sql.SQL(" STRATEGY FILE_COPY")
    admin.execute(query)


def _drop(admin: psycopg.Connection, name: str, *, template: bool = False) -> None:
    if template:  # PostgreSQL drops no database marked as a template
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(name))
        )
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def pytest_configure(config: pytest.Config) -> None:
    # No test may fetch the RDS CA bundle from AWS (this machine cannot reach it, and a
    # test must not try): everything that needs one gets a test CA's, unless a test
    # sets its own.
    if not os.environ.get("CRUDDUR_RDS_CA_BUNDLE"):
        import shutil
        import tempfile

        from tls_support import make_ca

        folder = tempfile.mkdtemp(prefix="cruddur-test-rds-ca-")
        path = os.path.join(folder, "test-rds-ca.pem")
        with open(path, "wb") as handle:
            handle.write(make_ca(unit="Amazon RDS").cert_pem)
        os.environ["CRUDDUR_RDS_CA_BUNDLE"] = path
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


# Modules whose module-scoped fixtures are costly (a replica pair made by initdb and
# pg_basebackup, a served API with its OTLP receiver, a PgBouncer, TLS servers, one
# cfn-lint run of every template, a cluster behind a network namespace): one test worker
# runs each whole module (see pytest_xdist_make_scheduler), so that its fixtures are
# built once, not once per worker.
ONE_WORKER_MODULES = (
    "test_replicas.py", "test_telemetry.py", "test_pooler.py", "test_rds_tls.py",
    "test_deploy_template.py", "test_blackhole.py",
)  # fmt: skip
# The longest tests (pytest --durations), started first: the run then never ends with
# one of them running alone on one worker while the other has nothing left to do.
LONGEST_FIRST = (
    "test_serve_hardening.py::test_one_signal_always_stops",
    "test_api_contract.py::test_schemathesis",
    "test_outages.py::",
    "test_feed_cache_serve.py::",
    "test_lambda_package.py::",
    "test_embedded.py::test_setup_starts_the_embedded_server",
    "test_rds.py::test_no_password_in_any_output_or_log",
    "test_deploy_template.py::test_the_template_passes_cfn_lint",
    "test_purge_lambda.py::test_the_template_passes_cfn_lint",
    "test_root_state.py::",
)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """--dist loadgroup that keeps its groups: pytest-xdist 3.8 marks a group by renaming
    the test (`…@browser`), which pytest 9 no longer takes, so every xdist_group was
    spread over the workers (a browser each). Here the controller, which sees no marks,
    groups by module: test_web.py's tests are all in the "browser" group."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0].rpartition("/")[2]
            if module in (*ONE_WORKER_MODULES, "test_web.py"):
                return module
            return super()._split_scope(nodeid)

    return ModuleGroups(config, log)


def _longest_first_rank(item: pytest.Item) -> int:
    name = item.nodeid.rpartition("/")[2]
    ranks = (rank for rank, prefix in enumerate(LONGEST_FIRST) if name.startswith(prefix))
    return next(ranks, len(LONGEST_FIRST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # --dist loadgroup hands out groups (largest first), then single tests in this order.
    items.sort(key=_longest_first_rank)


def pytest_sessionstart(session: pytest.Session) -> None:
    # In the main process only (not in xdist workers, which inherit its environment):
    # start the embedded server if the run needs it, remember to stop it at the end if
    # this run started it, and build the template the workers copy.
    if hasattr(session.config, "workerinput"):
        return
    if not _given_url():
        server = _embedded()
        session.config.stash[_STARTED_HERE] = not server.running()
        server.start(TEST_SERVER_SETTINGS)
    # Every cluster made from here on (the tests' own, in scratch folders, in this process,
    # the workers and the commands they run) is thrown away: initdb skips its final sync
    # and the server runs without fsync. The checkout's server above is kept, and made (on
    # a first run) with both.
    os.environ[THROWAWAY_VARIABLE] = "1"
    url = _server_url()
    if _given_url():  # a server of the developer's: its default roles are theirs
        session.config.stash[_DEFAULT_ROLES_THERE] = _default_roles_there(url)
    app_roles = _make_roles(url)
    os.environ[_ROLES_VARIABLE] = json.dumps(app_roles)
    name = f"cruddur_test_template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        _create(admin, name)
        try:
            build_template(with_database(url, name), app_roles)
            # No session may hold the template while it is copied: refuse them all.
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                    sql.Identifier(name)
                )
            )
        except BaseException:
            _drop(admin, name)
            raise
    session.config.stash[_TEMPLATE_MADE_HERE] = name
    os.environ[_TEMPLATE_VARIABLE] = name


def pytest_sessionfinish(session: pytest.Session) -> None:
    template = session.config.stash.get(_TEMPLATE_MADE_HERE, None)
    if template:
        os.environ.pop(_TEMPLATE_VARIABLE, None)
        with psycopg.connect(_server_url(), autocommit=True) as admin:
            _drop(admin, template, template=True)
            for name, _ in json.loads(os.environ.pop(_ROLES_VARIABLE, "{}")).values():
                with contextlib.suppress(psycopg.Error):  # a database left behind holds it
                    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    there = session.config.stash.get(_DEFAULT_ROLES_THERE, None)
    if there is not None:
        # `db setup` and `db roles` in the tests make the default roles (server-wide);
        # those the server did not have before the run go, once their databases have.
        with psycopg.connect(_server_url(), autocommit=True) as admin:
            for name in _default_roles_there(_server_url()) - there:
                with contextlib.suppress(psycopg.Error):  # a database left behind holds it
                    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    if session.config.stash.get(_STARTED_HERE, False):
        _embedded().stop()


def _default_roles_there(url: str) -> frozenset[str]:
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [[API_ROLE, LAMBDA_ROLE]]
        ).fetchall()
    return frozenset(name for (name,) in rows)


@pytest.fixture(scope="session", autouse=True)
def _shared_data_removed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run as root, an embedded server whose home the server's user cannot reach (pytest's
    0700 temporary folders) keeps its data under SHARED_ROOT (/var/lib/cruddur) instead.
    Its home goes with pytest's folders; its data stayed, ~20 MB a server (566 MB after
    one day's runs here). Removed when this worker's session ends, once stopped."""
    yield
    if os.geteuid() != 0:
        return
    for state in tmp_path_factory.getbasetemp().rglob("postgres.json"):
        try:
            cluster = Path(json.loads(state.read_text())["cluster_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        shared = cluster.parent
        ours = (
            shared.parent == SHARED_ROOT
            and shared.name.startswith("data-")
            and ".." not in cluster.parts
            and cluster.name == "cluster"
        )
        if ours and not (cluster / "data" / "postmaster.pid").exists():
            shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url() -> str:
    """A URL for the test server's maintenance database."""
    return _server_url()


@pytest.fixture(scope="session")
def admin(server_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(server_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def new_db_name(admin: psycopg.Connection) -> Iterator[Callable[[], str]]:
    """Names for databases a test may create; whatever exists of them is dropped after."""
    names: list[str] = []

    def make() -> str:
        names.append(f"cruddur_test_{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield make
    for name in names:
        _drop(admin, name)


@pytest.fixture(scope="session")
def passwords_checked(server_url: str) -> bool:
    """Whether the test server refuses a wrong password. A server given by
    CRUDDUR_TEST_URL may trust every local login (this machine's 127.0.0.1:5432 does):
    a test of what a wrong password does skips there, saying why, instead of failing."""
    role = f"cruddur_test_pw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'right'").format(sql.Identifier(role)))
        try:
            with psycopg.connect(with_user(server_url, role, "wrong"), connect_timeout=5):
                return False
        except psycopg.OperationalError:
            return True
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def needs_password_checks(passwords_checked: bool) -> None:
    if not passwords_checked:
        pytest.skip("the test server lets a wrong password in (trust authentication)")


@pytest.fixture
def login_role(admin: psycopg.Connection) -> Iterator[str]:
    """A role with the password 'right-password' and no privileges beyond logging in."""
    name = f"cruddur_test_role_{uuid.uuid4().hex[:8]}"
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'right-password'").format(sql.Identifier(name))
    )
    yield name
    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


class _Databases:
    """A test worker's databases for empty_db and seeded_db, made one test ahead and
    dropped behind it, in threads of the worker's own: a test finds its new database
    ready (a CREATE DATABASE here takes 0.05-0.25 s, and PostgreSQL 15 checkpoints at
    each DROP DATABASE), and its drop does not hold up the next test. Each test still
    gets a database made for it alone and dropped after it. A failed make fails the test
    that asked for it; a failed drop, the end of the worker's session."""

    def __init__(self, url: str) -> None:
        self._url = url
        # Makes and drops in threads of their own: a drop's checkpoint never holds up
        # the next make. Each thread has its own connection.
        self._makes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-db-make")
        self._drops = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-db-drop")
        self._local = threading.local()
        self._conns: list[psycopg.Connection] = []
        self._ahead: dict[str, Future[str]] = {}
        self._dropped: list[Future[None]] = []

    def _admin(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = psycopg.connect(self._url, autocommit=True)
            self._conns.append(conn)
        return conn

    def _make(self, kind: str) -> str:
        name = f"cruddur_test_{uuid.uuid4().hex[:12]}"
        admin = self._admin()
        if kind == "empty":
            _create(admin, name)
            return name
        _create(admin, name, template=os.environ[_TEMPLATE_VARIABLE])
        # What grant.sql does to the database itself: kept in the server's catalog, so
        # not copied with the template (the tables' privileges are).
        database = sql.Identifier(name)
        api, lambda_ = (sql.Identifier(role) for role, _ in _app_roles().values())
        try:
            admin.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(database))
            admin.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(database, api, lambda_)
            )
        except BaseException:
            with contextlib.suppress(Exception):  # made, but no test will have it
                _drop(admin, name)
            raise
        return name

    def take(self, kind: str) -> str:
        """A new database of this kind ("empty" or "seeded"), the next one begun."""
        ahead = self._ahead.pop(kind, None) or self._makes.submit(self._make, kind)
        self._ahead[kind] = self._makes.submit(self._make, kind)
        return ahead.result()

    def drop(self, name: str) -> None:
        self._dropped.append(self._drops.submit(lambda: _drop(self._admin(), name)))

    def close(self) -> None:
        for ahead in self._ahead.values():
            with contextlib.suppress(Exception):  # its error was no test's
                self.drop(ahead.result())
        self._makes.shutdown(wait=True)
        self._drops.shutdown(wait=True)
        for conn in self._conns:
            conn.close()
        for dropped in self._dropped:
            dropped.result()


@pytest.fixture(scope="session")
def databases_ahead(server_url: str) -> Iterator[_Databases]:
    made = _Databases(server_url)
    yield made
    made.close()


@pytest.fixture
def empty_db(server_url: str, databases_ahead: _Databases) -> Iterator[str]:
    """The URL of a new, empty database."""
    name = databases_ahead.take("empty")
    yield with_database(server_url, name)
    databases_ahead.drop(name)


@pytest.fixture
def seeded_db(server_url: str, databases_ahead: _Databases) -> Iterator[str]:
    """The URL of a new database migrated and seeded (a copy of the template), with the
    run's API and Lambda roles allowed in."""
    name = databases_ahead.take("seeded")
    yield with_database(server_url, name)
    databases_ahead.drop(name)


def _app_roles() -> dict[str, list[str]]:
    return json.loads(os.environ[_ROLES_VARIABLE])


@pytest.fixture(scope="session")
def app_roles() -> dict[str, tuple[str, str]]:
    """This run's API and Lambda roles: {"api": (name, password), "lambda": (…)}."""
    return {kind: (role, password) for kind, (role, password) in _app_roles().items()}


@pytest.fixture
def api_url(seeded_db: str, app_roles) -> str:
    """The seeded database, as the API's role."""
    return with_user(seeded_db, *app_roles["api"])


@pytest.fixture
def lambda_url(seeded_db: str, app_roles) -> str:
    """The seeded database, as the sign-up Lambda's role."""
    return with_user(seeded_db, *app_roles["lambda"])


@pytest.fixture
def db(seeded_db: str) -> Iterator[Db]:
    with Db(seeded_db) as opened:
        yield opened


# -- AWS, through moto's server mode --------------------------------------------------


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's standalone HTTP server on 127.0.0.1 (one per test worker)."""
    from moto.server import ThreadedMotoServer

    # No test uses EC2's public images; loading moto's list of them on each reset of the
    # account was ~25 s of CPU over a run (EC2Backend.__init__, for RDS's default VPC).
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh emulated AWS account: boto3 in this process and in commands run with the
    returned environment talks to moto's server, never to AWS."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"))
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


# -- the API, on a seeded database, with the dev key pair --------------------------------


@pytest.fixture(scope="session")
def api_home(tmp_path_factory: pytest.TempPathFactory):
    """A CRUDDUR_HOME for the API tests' dev key pair (one pair per test worker)."""
    return tmp_path_factory.mktemp("cruddur-home")


@pytest.fixture(scope="session")
def api_route(server_url: str, app_roles):
    """How the API under test reaches its database: directly, or through a real PgBouncer
    when CRUDDUR_TEST_POOLER=pgbouncer (tests/pooler_mode.py)."""
    from pooler_mode import api_route as route

    with route(server_url, dict(app_roles.values())) as made:
        yield made


@pytest.fixture
def api_settings(api_home, seeded_db: str, api_url: str, api_route) -> Settings:
    """The API's settings: the owner's URL for the CLI, the API's own role for the app."""
    return Settings.from_env(
        {
            "CRUDDUR_HOME": str(api_home),
            "CONNECTION_URL": seeded_db,
            "CRUDDUR_API_CONNECTION_URL": api_url,
            **api_route.env(api_url),
        }
    )


@pytest.fixture
def app(api_settings: Settings):
    from cruddur.api import create_app

    app = create_app(api_settings)
    yield app
    app.extensions["cruddur.feed_cache"].close()
    app.extensions["cruddur.db"].close()


@pytest.fixture
def api(app):
    from api_support import CheckedClient

    return CheckedClient(app)


@pytest.fixture
def mint(api_settings: Settings) -> Callable[..., str]:
    """mint(sub=…, **options): a dev access token; mint(handle="bayko") for a seed user."""
    from cruddur.dev_keys import DevKeys

    def make(handle: str | None = "andrewbrown", *, sub: str | None = None, **options) -> str:
        return DevKeys(api_settings.home).mint(
            api_settings.auth, sub or f"MOCK-{handle}", **options
        )

    return make


# -- `cruddur serve` over real HTTP -------------------------------------------------------


@pytest.fixture(scope="session")
def served(
    admin: psycopg.Connection,
    server_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    api_route,
    app_roles,
):
    """One `cruddur serve` (granian, 1 worker) per test worker, on its own seeded copy.

    Tests share it: each may write, none may rely on another's rows."""
    from served import serve

    name = f"cruddur_test_served_{uuid.uuid4().hex[:12]}"
    _create(admin, name, template=os.environ[_TEMPLATE_VARIABLE])
    url = with_database(server_url, name)
    route = api_route.env(with_user(url, *app_roles["api"]))
    try:
        with serve(url, tmp_path_factory.mktemp("served"), env=route) as server:
            yield server
    finally:
        _drop(admin, name)
