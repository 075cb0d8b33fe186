"""Connection strings are parsed, not edited as text; settings fail clearly."""

from __future__ import annotations

import re
from dataclasses import replace

import psycopg
import pytest

from cruddur.config import ConfigError, ServeSettings, Settings, WebSettings
from cruddur.serving import server_command
from cruddur.targets import resolve
from cruddur.urls import (
    database_name,
    parse,
    redact,
    server_conninfo,
    with_database,
    with_user,
)


def test_database_swap_uses_the_parser_not_sed() -> None:
    # The original's `sed 's/\/cruddur//g'` broke this URL (bug B18).
    url = "postgresql://cruddurroot:pw@cruddur-db.example.com:5432/cruddur?sslmode=require"
    server = parse(server_conninfo(url))
    assert server["user"] == "cruddurroot"
    assert server["host"] == "cruddur-db.example.com"
    assert server["dbname"] == "postgres"
    assert server["sslmode"] == "require"
    assert parse(with_database(url, "other"))["dbname"] == "other"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p%40ss@h:5432/cruddur", "postgresql://u:***@h:5432/cruddur"),
        ("postgresql://u@h/cruddur", "postgresql://u@h/cruddur"),
        ("host=h port=5 user=u password=secret dbname=d", "postgresql://u:***@h:5/d"),
        ("postgresql://u:pw@h/d?sslmode=require", "postgresql://u:***@h/d?sslmode=require"),
        ("postgresql://u:pw@[::1]:5432/d", "postgresql://u:***@[::1]:5432/d"),
        ("postgresql://u@h/d?sslpassword=keyphrase", "postgresql://u@h/d?sslpassword=***"),
    ],
)
def test_redact_hides_only_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.skipif(
    psycopg.pq.version() < 180000, reason="oauth_client_secret is libpq 18's (psycopg-binary's)"
)
def test_redact_hides_oauth_client_secret() -> None:
    # libpq 18's OAuth client secret was printed in clear by db status, serve and the
    # Lambda's log: only names with "password" in them were hidden.
    url = "postgresql://u:pw@h/d?oauth_client_id=app&oauth_client_secret=TOPSECRET"
    assert redact(url) == "postgresql://u:***@h/d?oauth_client_id=app&oauth_client_secret=***"


def test_redact_never_echoes_a_malformed_url() -> None:
    assert "secret" not in redact("postgresql://u:secret@[oops/d")


def test_database_name_is_required() -> None:
    assert database_name("postgresql://u@h/cruddur") == "cruddur"
    with pytest.raises(ConfigError, match="names no database"):
        database_name("postgresql://u:secret@h/")


@pytest.mark.parametrize(
    "setting", ["CRUDDUR_API_CONNECTION_URL", "READER_CONNECTION_URL", "CRUDDUR_LISTEN_URL"]
)
@pytest.mark.parametrize("dbname", ["", "d" * 64])
def test_the_apis_other_urls_must_name_a_database_postgresql_keeps(
    setting: str, dbname: str
) -> None:
    # With none, the API connected to the user's namesake and answered schema_not_ready
    # for ever; a 64-byte name was cut to another database's. CONNECTION_URL refused both.
    from cruddur.api_urls import ApiUrls

    env = {"CONNECTION_URL": "postgresql://u@h/cruddur", setting: f"postgresql://u:pw@h/{dbname}"}
    with pytest.raises(ConfigError) as refused:
        ApiUrls.from_settings(Settings.from_env(env))
    said = str(refused.value)
    assert said.startswith(f"{setting}: ") and "pw" not in said
    assert ("names no database" if not dbname else "64 bytes long") in said


def test_a_database_name_left_to_a_service_or_pgdatabase_is_theirs(monkeypatch) -> None:
    # libpq takes the name from the service file or PGDATABASE: refused, `serve` with
    # CRUDDUR_API_CONNECTION_URL=service=… stopped, where it had served.
    from cruddur.api_urls import ApiUrls

    base = {"CONNECTION_URL": "postgresql://u@h/cruddur"}
    monkeypatch.delenv("PGDATABASE", raising=False)
    ApiUrls.from_settings(Settings.from_env({**base, "CRUDDUR_API_CONNECTION_URL": "service=x"}))
    with pytest.raises(ConfigError, match="names no database"):
        ApiUrls.from_settings(
            Settings.from_env({**base, "CRUDDUR_API_CONNECTION_URL": "postgresql://u@h"})
        )
    monkeypatch.setenv("PGDATABASE", "cruddur")
    ApiUrls.from_settings(
        Settings.from_env({**base, "CRUDDUR_API_CONNECTION_URL": "postgresql://u@h"})
    )


def test_a_production_url_without_a_database_name_does_not_stop_local_commands() -> None:
    settings = Settings.from_env(
        {"CONNECTION_URL": "postgresql://u@127.0.0.1:5432/cruddur",
         "PROD_CONNECTION_URL": "postgresql://u@prod.invalid:5432"}
    )  # fmt: skip
    assert resolve(settings, start=False).dbname == "cruddur"


def test_a_database_name_postgresql_would_cut_is_refused() -> None:
    # PostgreSQL keeps 63 bytes of a name: `db create` said it made the 70-character
    # name, and two names alike in their first 63 bytes were one database.
    for name in ("d" * 63, "é" * 31 + "d"):  # 63 bytes in UTF-8
        assert database_name(f"postgresql://u@h/{name}") == name
    for name, size in (("d" * 64, 64), ("d" * 70, 70), ("é" * 32, 64)):
        with pytest.raises(ConfigError) as refused:
            database_name(with_database("postgresql://u:secret@h/x", name))
        said = str(refused.value)
        assert f"is {size} bytes long (UTF-8)" in said and "at most 63 bytes" in said
        assert "\n" not in said and "secret" not in said


@pytest.mark.parametrize("setting", ["CONNECTION_URL", "PROD_CONNECTION_URL"])
def test_a_target_whose_database_name_is_too_long_is_refused_first(setting: str) -> None:
    settings = Settings.from_env({setting: f"postgresql://u@h/{'d' * 64}"})
    with pytest.raises(ConfigError, match="is 64 bytes long"):
        resolve(settings, prod=setting == "PROD_CONNECTION_URL", start=False)


def test_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "CONNECTION_URL": "postgresql://a@b/c",
            "CRUDDUR_POOL_MIN_SIZE": "2",
            "CRUDDUR_POOL_MAX_SIZE": "4",
            "CRUDDUR_HOME": "/tmp/somewhere",
        }
    )
    assert settings.connection_url == "postgresql://a@b/c"
    assert settings.prod_connection_url is None
    assert (settings.pool.min_size, settings.pool.max_size) == (2, 4)
    assert str(settings.home) == "/tmp/somewhere"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CRUDDUR_POOL_MAX_SIZE": "ten"}, "whole number"),
        ({"CRUDDUR_POOL_MAX_SIZE": "0"}, "at least 1"),
        # A review: 10**20 was taken, and the worker's memory grew until killed.
        ({"CRUDDUR_POOL_MAX_SIZE": "100000000000000000000"}, "at most 1000"),
        ({"CRUDDUR_POOL_MIN_SIZE": "1001"}, "at most 1000"),
        ({"CRUDDUR_POOL_MIN_SIZE": "5", "CRUDDUR_POOL_MAX_SIZE": "2"}, "larger than"),
        ({"CRUDDUR_POOL_TIMEOUT": "soon"}, "must be a number"),
        ({"CRUDDUR_POOL_TIMEOUT": "0"}, "at least 0.1"),
        # Past a thread timeout's range: an "unexpected OverflowError" from every command.
        ({"CRUDDUR_POOL_TIMEOUT": "1e10"}, "at most 3600"),
        ({"CRUDDUR_CONNECT_TIMEOUT": "99999999999"}, "at most 3600"),
        # Accepted, it made every write's X-Read-After a 400 on the next read.
        ({"CRUDDUR_REPLICA_MAX_LAG": "1e12"}, "CRUDDUR_REPLICA_MAX_LAG must be at most 86400"),
        # Accepted, it kept the replica out of use for ever (a look vouches for less).
        ({"CRUDDUR_REPLICA_MAX_LAG": "0"}, "CRUDDUR_REPLICA_MAX_LAG must be at least 1"),
        # A bound as people write it: it said "at least 0.0" (a review).
        ({"CRUDDUR_MIGRATION_LOCK_WAIT": "-3"}, "CRUDDUR_MIGRATION_LOCK_WAIT must be at least 0,"),
    ],
)
def test_bad_settings_say_which_and_why(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_auth_defaults_to_the_dev_key_pair(tmp_path) -> None:
    auth = Settings.from_env({"CRUDDUR_HOME": str(tmp_path)}).auth
    assert auth.dev and auth.jwks_url == (tmp_path / "auth" / "jwks.json").as_uri()


def test_auth_from_a_cognito_pool() -> None:
    auth = Settings.from_env(
        {"AWS_COGNITO_USER_POOL_ID": "ca-central-1_AbC123", "AWS_COGNITO_USER_POOL_CLIENT_ID": "c1"}
    ).auth
    assert not auth.dev
    assert auth.issuer == "https://cognito-idp.ca-central-1.amazonaws.com/ca-central-1_AbC123"
    assert auth.jwks_url == auth.issuer + "/.well-known/jwks.json"
    assert auth.client_id == "c1"


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"CRUDDUR_SERVER": "uwsgi"}, "gunicorn, granian"),
        ({"PORT": "http"}, "PORT must be a whole number"),
        ({"CRUDDUR_WORKERS": "0"}, "at least 1"),
        ({"CRUDDUR_WORKERS": "3000"}, "CRUDDUR_WORKERS must be at most 64, not 3000"),
        ({"CRUDDUR_THREADS": "100000"}, "CRUDDUR_THREADS must be at most 256"),
        ({"PORT": "99999"}, "PORT must be at most 65535, not 99999"),
        ({"CRUDDUR_METRICS_PORT": "70000"}, "CRUDDUR_METRICS_PORT must be at most 65535"),
    ],
)
def test_bad_service_settings_say_which_and_why(env: dict[str, str], said: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(said)):
        settings = Settings.from_env(env)
        # The serving settings are read when used (`cruddur serve`), not before.
        assert settings.serve and settings.telemetry


def test_serving_settings_are_checked_on_first_use_only() -> None:
    settings = Settings.from_env({"CRUDDUR_WORKERS": "abc"})
    assert settings.pool.max_size  # what the db commands read is there
    with pytest.raises(ConfigError, match="CRUDDUR_WORKERS must be a whole number"):
        assert settings.serve
    fixed = replace(settings, serve=ServeSettings(workers=3))
    assert fixed.serve.workers == 3 and fixed.pool == settings.pool


@pytest.mark.parametrize("given", ["https://x;script-src *", "javascript:x", "https://x y"])
def test_the_cognito_url_the_page_is_given_is_checked_like_the_api_url(given: str) -> None:
    # Both go into the page's CSP (connect-src): a ';' there began a directive of its own.
    env = {
        "AWS_COGNITO_USER_POOL_ID": "ca-central-1_AbC123",
        "AWS_COGNITO_USER_POOL_CLIENT_ID": "c1",
        "CRUDDUR_COGNITO_URL": given,
    }
    with pytest.raises(ConfigError, match="CRUDDUR_COGNITO_URL must be an http:// or https://"):
        assert Settings.from_env(env).web
    env["CRUDDUR_COGNITO_URL"] = "http://127.0.0.1:5000/"
    assert Settings.from_env(env).web.cognito_url == "http://127.0.0.1:5000"
    # Without a user pool (dev sign-in) it is not used yet, but checked all the same, as
    # the README says: serve started with it as if it were fine.
    with pytest.raises(ConfigError, match="CRUDDUR_COGNITO_URL must be an http:// or https://"):
        assert Settings.from_env({"CRUDDUR_COGNITO_URL": given}).web


@pytest.mark.parametrize("setting", ["CRUDDUR_API_URL", "CRUDDUR_COGNITO_URL"])
@pytest.mark.parametrize(
    "given",
    [
        "http://[::1",  # every worker failed as it started; `web build` said "unexpected"
        "http://[foo]:80",
        "http:///x",  # the page's CSP got connect-src 'self' http://
        "https://api.example.com:99999",
        "https://api.example.com?x=1",
        "https://user:secret@api.example.com",
        # A review: a wildcard, and a name outside ASCII, went into the page's CSP: the
        # first let it reach every subdomain, the second voided connect-src, and the page
        # reached nothing (an underscore is no CSP host character either).
        "https://*.example.com",
        "https://api_1.example.com",
        "http://тест.localhost:4567",
        # A review of that: a CSP source cannot be an IPv6 address (Chromium dropped it,
        # and blocked the page's requests); two dots in a row.
        "http://[::1]:4567",
        "http://[v1.foo]:4567",  # IPvFuture: urlsplit drops its brackets too
        "https://api..example.com",
    ],
)
def test_a_web_url_the_page_cannot_use_is_refused_in_one_line(setting: str, given: str) -> None:
    with pytest.raises(ConfigError) as refused:
        assert Settings.from_env({setting: given}).web
    said = str(refused.value)
    assert said.startswith(f"{setting} must be an http:// or https:// URL")
    assert "secret" not in said and "\n" not in said


def test_a_web_url_outside_ascii_is_refused_with_its_ascii_form() -> None:
    with pytest.raises(ConfigError, match=r"write it as xn--e1afmkfd\.xn--p1ai"):
        assert Settings.from_env({"CRUDDUR_API_URL": "https://пример.рф"}).web
    # As browsers map it (UTS #46): Python's own codec gave fass.de, another domain.
    with pytest.raises(ConfigError, match=r"write it as xn--fa-hia\.de"):
        assert Settings.from_env({"CRUDDUR_API_URL": "https://faß.de"}).web
    taken = Settings.from_env({"CRUDDUR_API_URL": "https://xn--e1afmkfd.xn--p1ai"})
    assert taken.web.api_url == "https://xn--e1afmkfd.xn--p1ai"


@pytest.mark.parametrize(
    "given", ["https://api..example.com", "https://example.com..", "https://пример..рф"]
)
def test_a_web_url_with_an_empty_label_says_so(given: str) -> None:
    with pytest.raises(ConfigError, match="its host has an empty label"):
        assert Settings.from_env({"CRUDDUR_API_URL": given}).web


def test_a_web_url_with_a_port_or_a_path_is_taken() -> None:
    for given in (
        "http://127.0.0.1:4567",
        "https://api.example.com/prefix",
        "http://localhost:4567/",
    ):
        assert Settings.from_env({"CRUDDUR_API_URL": given}).web.api_url == given.rstrip("/")


def test_the_web_settings_are_checked_on_first_use_and_but_keeps_them_unread() -> None:
    settings = Settings.from_env({"CRUDDUR_API_URL": "ftp://x", "PORT": "http"})
    assert settings.pool.max_size  # `db` commands read nothing of the page's settings
    # A copy with a change reads no other field (dataclasses.replace reads them all).
    fixed = settings.but(web=WebSettings(api_url="https://api.example"))
    assert fixed.web.api_url == "https://api.example"
    with pytest.raises(ConfigError, match="PORT must be a whole number"):
        assert fixed.serve
    with pytest.raises(ConfigError, match="CRUDDUR_API_URL must be an http"):
        assert settings.web


def test_cors_origins_are_kept_as_browsers_send_them() -> None:
    # Compared as text with what the browser sends: upper case and a default port never
    # matched, without a word.
    serve = Settings.from_env(
        {"FRONTEND_URL": "https://Cruddur.example, https://app.example:443, http://[::1]:3000"}
    ).serve
    assert serve.cors_origins == (
        "https://cruddur.example",
        "https://app.example",
        "http://[::1]:3000",
    )


@pytest.mark.parametrize(
    "given", ["https://www.example/app", "cruddur.org", "*", "https://x.example?a"]
)
def test_an_origin_no_browser_sends_is_refused_naming_the_setting(given: str) -> None:
    with pytest.raises(ConfigError, match=r"^FRONTEND_URL lists origins such as"):
        assert Settings.from_env({"FRONTEND_URL": given}).serve


def test_cors_origins_from_the_original_variables() -> None:
    serve = Settings.from_env(
        {"FRONTEND_URL": "https://cruddur.example/, https://www.cruddur.example"}
    ).serve
    assert serve.cors_origins == ("https://cruddur.example", "https://www.cruddur.example")
    assert Settings.from_env({}).serve.cors_origins == ("http://localhost:3000",)
    # BACKEND_URL alone adds its origin; the front end's default stays.
    backend = Settings.from_env({"BACKEND_URL": "http://localhost:4567"}).serve
    assert backend.cors_origins == ("http://localhost:3000", "http://localhost:4567")
    # "none": no other origin (production's template admitted localhost:3000 by default).
    assert Settings.from_env({"FRONTEND_URL": "none"}).serve.cors_origins == ()


@pytest.mark.parametrize(
    ("env", "said"),
    [
        (
            {"AWS_COGNITO_USER_POOL_ID": "AbC123", "AWS_COGNITO_USER_POOL_CLIENT_ID": "c"},
            "<region>",
        ),
        ({"AWS_COGNITO_USER_POOL_ID": "us-east-1_AbC123"}, "AWS_COGNITO_USER_POOL_CLIENT_ID"),
        # The finding: the client id alone fell back to the dev key pair.
        ({"AWS_COGNITO_USER_POOL_CLIENT_ID": "c"}, "AWS_COGNITO_USER_POOL_ID is not set"),
        (
            {"AWS_COGNITO_USER_POOL_ID": " ", "AWS_COGNITO_USER_POOL_CLIENT_ID": "c"},
            "AWS_COGNITO_USER_POOL_ID is blank",
        ),
        (
            {"AWS_COGNITO_USERPOOL_ID": "us-east-1_AbC123", "AWS_COGNITO_USER_POOL_CLIENT_ID": "c"},
            "did you mean AWS_COGNITO_USER_POOL_ID?",
        ),
        ({"CRUDDUR_JWKS_URL": "http://127.0.0.1:9/jwks.json"}, "AWS_COGNITO_USER_POOL_ID"),
        # Taken as it was, every signed-in request got a 503 ("unknown url type").
        (
            {
                "AWS_COGNITO_USER_POOL_ID": "us-east-1_AbC123",
                "AWS_COGNITO_USER_POOL_CLIENT_ID": "c",
                "CRUDDUR_JWKS_URL": "not a url",
            },
            "CRUDDUR_JWKS_URL must be an https://, http:// or file:// URL",
        ),
        # urllib took user:password@ as part of the host name: every sign-in got a 503.
        (
            {
                "AWS_COGNITO_USER_POOL_ID": "us-east-1_AbC123",
                "AWS_COGNITO_USER_POOL_CLIENT_ID": "c",
                "CRUDDUR_JWKS_URL": "https://user:pw@keys.example.com/jwks.json",
            },
            "CRUDDUR_JWKS_URL must not hold a user or password",
        ),
        # urllib refused it at each fetch: every sign-in got a 503.
        (
            {
                "AWS_COGNITO_USER_POOL_ID": "us-east-1_AbC123",
                "AWS_COGNITO_USER_POOL_CLIENT_ID": "c",
                "CRUDDUR_JWKS_URL": "https://keys.example.com/jwks.json?sig=a b",
            },
            "with no space or control character",
        ),
        # A zero-width space pasted in: urllib failed every fetch on its ASCII request line.
        (
            {
                "AWS_COGNITO_USER_POOL_ID": "us-east-1_AbC123",
                "AWS_COGNITO_USER_POOL_CLIENT_ID": "c",
                "CRUDDUR_JWKS_URL": "https://keys.example.com/jwks.json\u200b",
            },
            "in ASCII",
        ),
        (
            {
                "AWS_COGNITO_USER_POOL_ID": "us-east-1_AbC123",
                "AWS_COGNITO_USER_POOL_CLIENT_ID": "c",
                "CRUDDUR_JWKS_URL": "https://keys.example.com\ufeff/jwks.json",
            },
            "in ASCII",
        ),
        ({"CRUDDUR_AUTH": "cognito"}, "CRUDDUR_AUTH=cognito given"),
        ({"CRUDDUR_AUTH": "none"}, "CRUDDUR_AUTH must be cognito or dev"),
    ],
)
def test_incomplete_cognito_settings_stop_the_api_only(env: dict[str, str], said: str) -> None:
    settings = Settings.from_env(env)  # other commands (users sync-cognito) still work
    assert not settings.auth.dev  # never the dev key pair in their place
    with pytest.raises(ConfigError, match=re.escape(said)):
        settings.auth.checked()


def test_the_dev_key_pair_when_asked_for_and_only_on_loopback(tmp_path) -> None:
    asked = Settings.from_env({"CRUDDUR_AUTH": "dev", "AWS_COGNITO_USER_POOL_CLIENT_ID": "c"}).auth
    assert asked.dev and asked.ignored == ("AWS_COGNITO_USER_POOL_CLIENT_ID",)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert asked.checked_for(host) is asked
    for host in ("0.0.0.0", "::", "192.0.2.10", "cruddur.example"):
        with pytest.raises(ConfigError, match=r"CRUDDUR_AUTH=dev: .* only on a loopback address"):
            asked.checked_for(host)
    cognito = Settings.from_env(
        {"AWS_COGNITO_USER_POOL_ID": "us-east-1_AbC123", "AWS_COGNITO_USER_POOL_CLIENT_ID": "c"}
    ).auth
    assert cognito.checked_for("0.0.0.0") is cognito


def test_no_cognito_setting_off_loopback_means_nobody_signs_in(tmp_path) -> None:
    # A compose file passes unset variables on as blank ones: no setting, not a partial one.
    blank = {"AWS_COGNITO_USER_POOL_ID": "", "AWS_COGNITO_USER_POOL_CLIENT_ID": " "}
    auth = Settings.from_env({"CRUDDUR_HOME": str(tmp_path), **blank}).auth
    assert auth.dev and auth.checked_for("127.0.0.1") is auth
    served = auth.checked_for("0.0.0.0")  # a container: reads work, no token signs in
    assert not served.dev and "sign-in is not set up" in served.disabled


def _own_addresses() -> list[str]:
    """This machine's address on its way out (no packet is sent), if it has one besides
    loopback: a tunnel or a published port may be reached through it."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
    except OSError:
        return []
    return [] if address.startswith("127.") else [address]


@pytest.mark.parametrize("dbname", ["cruddur%20", "%09cruddur", "cruddur%C2%A0"])
def test_a_database_name_with_spaces_around_it_is_refused(dbname: str) -> None:
    # Stripped here, it was another database than production's to the production check,
    # while `db drop` dropped production's without a question.
    with pytest.raises(ConfigError, match="begins or ends with a space"):
        database_name(f"postgresql://u@127.0.0.1:5432/{dbname}")
    settings = Settings.from_env({"CONNECTION_URL": f"postgresql://u@127.0.0.1:5432/{dbname}"})
    with pytest.raises(ConfigError, match="begins or ends with a space"):
        assert resolve(settings, start=False).dbname  # what db drop and kill-all act on


def test_production_is_recognised_behind_connection_url() -> None:
    from cruddur.urls import looks_like_rds, same_database

    rds = "postgresql://root:pw@cruddur-db-instance.abc123.us-east-1.rds.amazonaws.com:5432/cruddur"
    assert looks_like_rds(rds)
    assert not looks_like_rds("postgresql://postgres:pw@db:5432/cruddur")  # docker-compose
    assert not looks_like_rds("postgresql://u@rds.amazonaws.com.evil.example/cruddur")
    assert same_database(rds, rds.replace("root:pw", "other:secret"))  # another user
    assert same_database("postgresql://u@DB.example/cruddur", "host=db.example dbname=cruddur")
    assert not same_database(rds, rds.replace("/cruddur", "/cruddur_test"))
    assert not same_database(rds, rds.replace(":5432", ":5433"))
    # One server, spelled otherwise: a tunnel's localhost, a socket, a trailing dot, a
    # multi-host list, a name for its address. Never a different database name.
    local = "postgresql://u@127.0.0.1:5432/cruddur"
    for other in (
        "postgresql://u@localhost:5432/cruddur",
        "postgresql://u@localhost.:5432/cruddur",
        "host=/var/run/postgresql port=5432 dbname=cruddur",
        "postgresql://u@[::1]:5432/cruddur",
        "host=db.example,127.0.0.2 port=5432 dbname=cruddur",
        # libpq reads 05432 as 5432: compared as text, `db drop` asked nothing.
        "postgresql://u@127.0.0.1:05432/cruddur",
        "host=127.0.0.1 port=' 005432' dbname=cruddur",
        # 0.0.0.0 and :: reach a local listener: they were another server.
        "postgresql://u@0.0.0.0:5432/cruddur",
        "postgresql://u@0:5432/cruddur",
        "postgresql://u@[::]:5432/cruddur",
        *(f"host={own} port=5432 dbname=cruddur" for own in _own_addresses()),
    ):
        assert same_database(local, other), other
    assert same_database("postgresql://u@db.example./cruddur", "postgresql://u@DB.example/cruddur")
    assert not same_database(local, "postgresql://u@localhost:5432/cruddur_test")
    assert not same_database(local, "postgresql://u@localhost:5433/cruddur")
    assert not same_database(local, "postgresql://u@db.example:5432/cruddur")


@pytest.mark.parametrize(
    ("host", "bind"), [("127.0.0.1", "127.0.0.1:4567"), ("::1", "[::1]:4567"), ("::", "[::]:4567")]
)
def test_gunicorn_is_told_an_ipv6_address_in_brackets(host: str, bind: str) -> None:
    command = server_command("gunicorn", host, 4567, workers=1, threads=1)
    assert command[command.index("--bind") + 1] == bind


def test_one_name_is_one_server_whatever_its_lookups_return(monkeypatch) -> None:
    # A name with rotating records (or one lookup failing) must not make the same
    # server two: that would drop production without the question.
    import socket

    from cruddur.urls import same_database

    answers = iter([[(0, 0, 0, "", ("10.0.0.1", 0))], OSError("temporary failure")])

    def rotating(host: str, *args: object) -> list:
        answer = next(answers)
        if isinstance(answer, OSError):
            raise answer
        return answer

    monkeypatch.setattr(socket, "getaddrinfo", rotating)
    assert same_database(
        "postgresql://app@db.example/cruddur", "postgresql://root:pw@db.example/cruddur"
    )


def test_otlp_headers_the_sdk_reads_pass_and_others_never_show_their_text() -> None:
    from cruddur.config import ConfigError, check_otlp_headers

    for fine in ("x-honeycomb-team=KEY", "a=\tb", " ", "a=b, ,c=d", "Authorization=Basic YWJj"):
        check_otlp_headers("OTEL_EXPORTER_OTLP_HEADERS", fine)
    for bad in (
        "x-honeycomb-team:KEY", "a=b,team KEY", 'a="KEY"',
        # A review: read by the exporter, these broke every export, whose error quoted
        # the value whole.
        "x-honeycomb-team=hc%0D%0AKEY", "x-honeycomb-team=%E2%82%ACKEY", "a=KEY%00",
        # and names, which the exporter %-decodes too
        "x%0Ateam=KEY", "x%C3%A9=KEY", "x-honeycomb-team=KEY, x%0D%0Ainjected=1",
    ):  # fmt: skip
        with pytest.raises(ConfigError) as refused:
            check_otlp_headers("OTEL_EXPORTER_OTLP_HEADERS", bad)
        assert "KEY" not in str(refused.value).replace("YOUR_KEY", "")


# Passwords as AWS Secrets Manager makes them (any printable ASCII but a few), and worse.
# Their letters are ones no URL below and no error message holds: a letter of one in
# what is printed is a part of the password shown.
MARKERS = "QXZJKV"
NASTY_PASSWORDS = [
    "Xk9/Qm2@Zp7",  # the reviewer's: "/" made libpq read user:pass as host:port
    "pQ@ss",  # "@": libpq split at the password's own "@"
    "Q/",
    "/Q",
    "@Q",
    "Q@",
    "Q?Z@X",
    "Q:Z/X",
    "Q%zzX",
    "Q%2FX",  # a raw "%" and two hex digits: libpq decodes it
    "Q%00X",
    "Q#Z[X]",
    "Q&sslmode=disable",
    "Q Z\tX",
    "Q'Z\"X\\",
    "Q/Z?host=X&port=1@",
    "Qé中Z",
]


def _generated_passwords(count: int = 400) -> list[str]:
    """Passwords from a seeded generator (the same each run), mostly punctuation."""
    import random

    rng = random.Random(20261205)
    alphabet = MARKERS * 3 + "/@:?#&=%+,;[]'\"\\ !$~-_."
    return ["".join(rng.choices(alphabet, k=rng.randint(1, 24))) for _ in range(count)]


def _shows_no_part_of_the_password(text: str) -> bool:
    return not any(letter in text for letter in MARKERS)


def test_no_part_of_a_password_is_ever_shown_and_encoded_ones_work() -> None:
    from urllib.parse import quote, unquote

    from cruddur.urls import MalformedUrl, as_url, check, without_password

    for password in NASTY_PASSWORDS + _generated_passwords():
        encoded = f"postgresql://cruddurroot:{quote(password, safe='')}@db.example:5432/cruddur"
        params = parse(encoded)
        assert params["password"] == password and params["host"] == "db.example", password
        assert redact(encoded) == "postgresql://cruddurroot:***@db.example:5432/cruddur"
        assert parse(as_url(encoded))["password"] == password
        assert without_password(encoded) == (
            "user=cruddurroot dbname=cruddur host=db.example port=5432",
            password,
        )

        raw = f"postgresql://cruddurroot:{password}@db.example:5432/cruddur"
        assert _shows_no_part_of_the_password(redact(raw)), (password, redact(raw))
        try:
            params = parse(raw)
        except MalformedUrl as refused:
            said = str(refused)
            assert _shows_no_part_of_the_password(said), (password, said)
            assert "\n" not in said and "percent-encode" in said
            with pytest.raises(ConfigError) as named:
                check("CONNECTION_URL", raw)
            assert str(named.value).startswith("CONNECTION_URL is malformed: ")
            assert _shows_no_part_of_the_password(str(named.value))
        else:  # read as written, %XX decoded, spaces trimmed: never a part as another field
            written = {password, unquote(password)}
            assert params["password"] in written | {w.strip(" ") for w in written}, password
            assert (params["user"], params["host"], params["port"], params["dbname"]) == (
                "cruddurroot",
                "db.example",
                "5432",
                "cruddur",
            )
            assert database_name(raw) == "cruddur"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://cruddurroot:Xk9/Qm2@Zp7@127.0.0.1:5432/cruddur",
        "postgresql://cruddurroot:p@ss@127.0.0.1:5432/cruddur",
        "postgresql://cruddurroot:pw@b/c@127.0.0.1:5432/cruddur",
        "postgres://me@corp:pw@127.0.0.1/cruddur",
        "postgresql://127.0.0.1?user=me&password=a@b",  # no "/": libpq reads a user "127…"
    ],
)
def test_a_password_libpq_would_misread_is_refused_with_the_fix(url: str) -> None:
    from cruddur.urls import without_password

    for reads in (parse, database_name, without_password):
        with pytest.raises(ConfigError) as refused:
            reads(url)
        said = str(refused.value)
        assert '"/" as %2F, "@" as %40' in said
        for part in ("Xk9", "Qm2", "Zp7", "ss@", "a?b", "pw"):
            assert part not in said
    assert redact(url) == "<malformed connection URL>"


@pytest.mark.parametrize(
    ("url", "read"),
    [
        # Azure's user@server names and Cloud SQL's IAM users (their "@" as %40 where no
        # user comes before the host), a path with an "@", a password given as a query
        # parameter, a "?" in a password: libpq reads each as meant, and so must we.
        ("postgresql://db.example/cruddur?user=admin%40srv", {"user": "admin@srv"}),
        ("postgresql://db.example:5432/cruddur?user=sa%40proj.iam", {"user": "sa@proj.iam"}),
        ("postgresql://admin%40srv:pw@db.example/cruddur", {"user": "admin@srv"}),
        ("postgresql://u:p@db.example/cruddur?sslrootcert=/home/me@x/ca.pem",
         {"sslrootcert": "/home/me@x/ca.pem"}),
        ("postgresql://u@db.example/cruddur?password=a@b", {"password": "a@b"}),
        ("postgresql://u:pa?ss@db.example/cruddur", {"user": "u", "password": "pa?ss"}),
    ],
)  # fmt: skip
def test_an_at_sign_or_question_mark_libpq_reads_as_meant_is_accepted(url: str, read) -> None:
    params = parse(url)
    assert params["host"] == "db.example" and database_name(url) == "cruddur"
    assert {k: params[k] for k in read} == read
    for secret in ("pa?ss", "a@b"):
        assert secret not in redact(url)


def test_a_passwords_piece_read_as_a_query_parameter_is_not_named() -> None:
    # "u:a/b?c@h/x": libpq reads host u, port a, database b and a query "c@h/x".
    with pytest.raises(ConfigError) as refused:
        parse("postgresql://u:a/b?c@h/x")
    assert "c@h" not in str(refused.value)


def test_a_port_libpq_takes_is_taken() -> None:
    # libpq reads a port with blanks around it: so does the check (it refused ' 5432').
    for conninfo in ("host=h port=' 5432' dbname=d", "postgresql://u@h1,h2:5433/d"):
        assert parse(conninfo)["port"].strip(" ,") in ("5432", "5433")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://u:secret@h/x?foo=1", 'unknown connection parameter "foo"'),
        ("postgresql://u:secret@h/x?sslmod=require", 'unknown connection parameter "sslmod"'),
        ("host=h user=secret foo=1", 'unknown connection parameter "foo"'),
        ("postgresql://u:secret@h/x?sslmode", 'a query parameter ("sslmode") has no "="'),
        ("postgresql://u:secret@[::1/x", "an IPv6 address in [brackets]"),
        # No "@": libpq reads `user:password` as `host:port`; the "port" is not shown.
        ("postgresql://cruddur_api:Hunter2secret/cruddur", "a port is not a number from 1"),
        # An sslmode whose value runs on into a password is not shown.
        ("postgresql://u@h/x?sslmode=x%26password%3Dsecret", "sslmode must be one of disable,"),
        ("postgresql://u:sec%zzret@h/x", 'it has a "%" not followed by two hex digits'),
        # Latin-1's é: the decoder's own message named the byte and where it was.
        ("postgresql://u:sec%E9ret@h/x", "a percent-encoded part is not UTF-8 text"),
        ("postgresql://u@h/x?password=sec%E9ret", "a percent-encoded part is not UTF-8 text"),
        # A password that spills into another parameter: that one's name is not shown.
        ("host=h password=sec ret=1", "an unknown connection parameter (its name not shown"),
        ("postgresql://u@h/x?sslpassword=sec&ret=1", "an unknown connection parameter (its"),
        ("host=h password='secret", "a quoted value has no closing quote"),
        ("postgresql://u:sec ret@h/x", "it has a space inside a part"),
        # libpq reads these only as it connects: serve took them for an outage, for ever.
        ("postgresql://u:secret@h:99999/x", "the port '99999' is not a number from 1 to 65535"),
        ("postgresql://u:secret@h1:5432,h2:0/x", "the port '0' is not a number from 1 to"),
        ("postgresql://u:secret@h/x?sslmode=bogus", "sslmode must be one of disable, allow,"),
        # Another database's URL: it was "a parameter has no '='".
        ("mysql://u:secret@h/x", "mysql:// is not a PostgreSQL URL; expected postgresql://"),
        # "://" mistyped: libpq read key=value pairs, and the message spoke of quoting.
        ("postgresql:/u:secret@h/x", 'it starts as a URL but not with "postgresql://"'),
        ("postgresql//u:secret@h/x", 'it starts as a URL but not with "postgresql://"'),
        # Quotes kept as part of the value: it said `"postgresql:// is not a PostgreSQL URL`.
        ('"postgresql://u:secret@h/x"', 'it has quotes around it ("…): give the URL without'),
        ("'postgres://u:secret@h/x'", "it has quotes around it ('…): give the URL without"),
    ],
)
def test_a_malformed_url_says_why_and_never_quotes_it(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(url)
    said = str(refused.value)
    assert said.startswith(f"the connection URL is malformed: {reason}"), said
    assert "sec" not in said and "\n" not in said


def test_a_connect_timeout_libpq_would_refuse_is_refused_first() -> None:
    # psycopg took `abc` for its default: every verb but `db connect` (psql) accepted it.
    assert parse("postgresql://u@h/x?connect_timeout=10")["connect_timeout"] == "10"
    with pytest.raises(ConfigError, match="connect_timeout must be a whole number of seconds"):
        parse("postgresql://u:hunter2@h/x?connect_timeout=abc")


def test_a_password_of_digits_read_as_a_port_is_not_shown() -> None:
    with pytest.raises(ConfigError) as refused:
        parse("postgresql://u:987654/x")
    assert "987654" not in str(refused.value)


@pytest.mark.parametrize(
    "setting",
    [
        "CONNECTION_URL",
        "PROD_CONNECTION_URL",
        "CRUDDUR_API_CONNECTION_URL",
        "READER_CONNECTION_URL",
        "CRUDDUR_LISTEN_URL",
    ],
)
def test_a_malformed_url_setting_is_named_with_the_reason(setting: str) -> None:
    from cruddur.api_urls import ApiUrls
    from cruddur.targets import api_url

    good = "postgresql://u:pw@127.0.0.1/cruddur"
    settings = Settings.from_env({"CONNECTION_URL": good, setting: "postgresql://u:pw@h/x?foo=1"})
    expected = f'{setting} is malformed: unknown connection parameter "foo"'
    with pytest.raises(ConfigError) as refused:
        target = resolve(settings, start=False)
        api_url(settings, target)
        ApiUrls.from_settings(settings)
    assert str(refused.value) == expected
    assert "pw" not in str(refused.value)


def test_production_is_recognised_by_hostaddr_pg_variables_and_mapped_addresses(
    monkeypatch,
) -> None:
    from pathlib import Path

    from cruddur.rds_tls import secured
    from cruddur.urls import looks_like_rds, same_database

    for variable in ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"):
        monkeypatch.delenv(variable, raising=False)
    prod = "postgresql://postgres:pw@127.0.0.1:5432/cruddur_x"
    # libpq connects to hostaddr and checks TLS against host: either may be production.
    tunnel = "postgresql://postgres@db.internal.invalid:5432/cruddur_x?hostaddr=127.0.0.1"
    assert same_database(tunnel, prod)
    assert same_database(prod.replace("127.0.0.1", "[::ffff:127.0.0.1]"), prod)
    assert same_database("postgresql://u@[::ffff:10.0.0.5]/d", "postgresql://u@10.0.0.5/d")
    assert same_database("postgresql://u@h.invalid/d?hostaddr=10.0.0.5", "host=10.0.0.5 dbname=d")
    assert not same_database(tunnel.replace("hostaddr=127.0.0.1", "hostaddr=10.0.0.5"), prod)
    assert not same_database("postgresql://postgres@db.internal.invalid/cruddur_x", prod)
    assert looks_like_rds("postgresql://u@127.0.0.1/d?host=x.ca-central-1.rds.amazonaws.com")

    # The PG* variables fill in what the URL leaves out, as libpq does.
    monkeypatch.setenv("PGHOSTADDR", "127.0.0.1")
    assert same_database("postgresql://postgres@db.internal.invalid/cruddur_x", prod)
    monkeypatch.setenv("PGHOST", "x.ca-central-1.rds.amazonaws.com")
    local = "postgresql://postgres@/cruddur_x"
    assert looks_like_rds(local)
    assert "sslmode=verify-full" in secured(local, lambda: Path("/rds-ca.pem"))
    monkeypatch.delenv("PGHOST")
    monkeypatch.delenv("PGHOSTADDR")
    monkeypatch.setenv("PGDATABASE", "cruddur_x")
    assert same_database("postgresql://postgres@127.0.0.1:5432", prod)
    # A service's host and database are in pg_service.conf: not read, so production.
    assert same_database("postgresql://postgres@127.0.0.2/cruddur_x?service=other", prod)
    assert not same_database("postgresql://postgres@10.0.0.5/cruddur_x", prod)
    # What the URL itself says, a service cannot change (libpq lets it win): a developer
    # with PGSERVICE set for psql is not asked on every local command.
    monkeypatch.setenv("PGSERVICE", "mysvc")
    assert not same_database("postgresql://me@10.0.0.5:5432/cruddur_x", prod)
    assert not same_database(prod.replace("/cruddur_x", "/cruddur_dev"), prod)
    assert same_database("postgresql://me@10.0.0.5/cruddur_x", prod)  # its port: the file's
    assert same_database("postgresql://me@127.0.0.1:5432", prod)  # its database: the file's


def test_ipv4_mapped_loopback_is_loopback_where_plain_loopback_is(tmp_path) -> None:
    from cruddur.config import is_loopback

    for address in ("::ffff:127.0.0.1", "[::ffff:127.0.0.2]", "::FFFF:7f00:1"):
        assert is_loopback(address), address
    for address in ("::ffff:10.0.0.1", "::ffff:0.0.0.0", "::127.0.0.1"):
        assert not is_loopback(address), address
    auth = Settings.from_env({"CRUDDUR_HOME": str(tmp_path)}).auth
    assert auth.checked_for("::ffff:127.0.0.1") is auth
    assert not auth.checked_for("::ffff:10.0.0.1").dev


def test_a_settings_repr_shows_no_password_and_no_otlp_key(tmp_path) -> None:
    # A settings object ends up in tracebacks, debuggers and debug lines: every URL in it
    # keeps its host and loses its password; the OTLP endpoint its query and credentials.
    env = {
        name: f"postgresql://app:pw-{name}@{name.lower()}.example.com/cruddur"
        for name in (
            "CONNECTION_URL",
            "PROD_CONNECTION_URL",
            "MIGRATION_CONNECTION_URL",
            "PROD_MIGRATION_CONNECTION_URL",
            "CRUDDUR_API_CONNECTION_URL",
            "READER_CONNECTION_URL",
            "CRUDDUR_LISTEN_URL",
        )
    }
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = (
        "https://team:otlp-user-pw@otlp.example.com/v1/traces?key=otlp-key"
    )
    env["CRUDDUR_HOME"] = str(tmp_path)
    env["CRUDDUR_READ_AFTER_KEY"] = "read-after-key-" + "x" * 32
    env["AWS_COGNITO_USER_POOL_ID"] = "us-east-1_AbC123"
    env["AWS_COGNITO_USER_POOL_CLIENT_ID"] = "client"
    env["CRUDDUR_JWKS_URL"] = "https://keys.example.com/jwks.json?X-Amz-Signature=jwks-sig"
    settings = Settings.from_env(env)
    assert settings.replica.read_after_key == env["CRUDDUR_READ_AFTER_KEY"]
    before_serve_is_read = repr(settings)
    assert "serve=<not read yet>" in before_serve_is_read
    assert settings.serve.listen_url  # read: shown from now on
    shown = repr(settings)
    assert "serve=ServeSettings(" in shown
    for url_setting in env:
        if url_setting.endswith("_URL") and url_setting != "CRUDDUR_JWKS_URL":
            assert f"pw-{url_setting}" not in shown
            assert f"{url_setting.lower()}.example.com" in shown
    assert "otlp-user-pw" not in shown and "otlp-key" not in shown
    assert "read-after-key" not in shown
    assert "traces_endpoint='https://otlp.example.com/v1/traces'" in shown
    assert "jwks-sig" not in shown and "https://keys.example.com/jwks.json" in shown


@pytest.mark.parametrize("key", ["short", "x" * 31])
def test_a_read_after_key_too_short_to_be_secret_is_refused(tmp_path, key: str) -> None:
    env = {"CRUDDUR_HOME": str(tmp_path), "CRUDDUR_READ_AFTER_KEY": key}
    with pytest.raises(ConfigError, match="CRUDDUR_READ_AFTER_KEY must be 32 characters"):
        Settings.from_env(env).replica  # noqa: B018
    env["CRUDDUR_READ_AFTER_KEY"] = "x" * 32
    assert Settings.from_env(env).replica.read_after_key == "x" * 32


def test_a_settings_repr_does_not_check_what_is_not_read_yet(tmp_path) -> None:
    settings = Settings.from_env({"CRUDDUR_WORKERS": "lots", "CRUDDUR_HOME": str(tmp_path)})
    assert "serve=<not read yet>" in repr(settings)  # not a ConfigError
    with pytest.raises(ConfigError):
        settings.serve  # noqa: B018


def test_a_settings_repr_never_raises_on_a_value_it_cannot_read(tmp_path) -> None:
    # Bytes that are not UTF-8 in the environment reach Python as surrogates, which
    # psycopg cannot parse; an endpoint built by hand may not parse either. A repr in a
    # traceback must still print, and without the value.
    settings = Settings.from_env(
        {"CONNECTION_URL": "postgresql://u:se\udcffcret@h/db", "CRUDDUR_HOME": str(tmp_path)}
    )
    assert "connection_url='<malformed connection URL>'" in repr(settings)
    shown = repr(replace(settings.telemetry, traces_endpoint="http://[::1?key=secret"))
    assert "secret" not in shown and "<malformed endpoint>" in shown


SERVICE_RDS_HOST = "cruddur.abc.ca-central-1.rds.amazonaws.com"


@pytest.fixture
def no_pg_variables(monkeypatch) -> None:
    """No PG* variable of this environment decides what a service test reads."""
    for variable in ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE", "PGSYSCONFDIR"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.usefixtures("no_pg_variables")
def test_a_connection_service_is_read_as_libpq_reads_it(tmp_path, monkeypatch) -> None:
    # `service=NAME` (or PGSERVICE) takes what the string leaves out from pg_service.conf:
    # an RDS endpoint there is production, and TLS to it is verified.
    from pathlib import Path

    from cruddur.rds_tls import secured
    from cruddur.urls import connection_params, looks_like_rds, same_database

    rds = SERVICE_RDS_HOST
    user_file = tmp_path / "services.conf"
    user_file.write_text(
        f"# the team's services\n[prod]\nhost={rds}\nport=5432\ndbname=cruddur\n\n"
        "[local]\nhost=127.0.0.1\ndbname=cruddur_dev\n"
    )
    monkeypatch.setenv("PGSERVICEFILE", str(user_file))
    assert looks_like_rds("service=prod") and looks_like_rds("postgresql:///?service=prod")
    assert not looks_like_rds("service=local")
    secured_url = secured("service=prod user=app", lambda: Path("/rds-ca.pem"))
    assert "sslmode=verify-full" in secured_url and "sslrootcert=/rds-ca.pem" in secured_url
    # The string's own parameters win over the service's; the service's over PG* variables.
    assert not looks_like_rds("host=127.0.0.1 service=prod")
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    assert connection_params("service=prod")["host"] == rds
    monkeypatch.delenv("PGHOST")
    monkeypatch.setenv("PGSERVICE", "prod")
    assert looks_like_rds("dbname=cruddur")
    monkeypatch.delenv("PGSERVICE")
    # A service found is known: one on another server is not production's database.
    prod = "postgresql://postgres:pw@127.0.0.1:5432/cruddur"
    assert not same_database("service=prod", prod)
    assert same_database("service=local dbname=cruddur", prod)
    # PGSYSCONFDIR's file is read when the user's file lacks the service.
    system = tmp_path / "etc"
    system.mkdir()
    (system / "pg_service.conf").write_text(f"[shared]\nhost={rds}\n")
    monkeypatch.setenv("PGSYSCONFDIR", str(system))
    assert looks_like_rds("service=shared")
    # Defined in no file read here (libpq's compiled-in folder, say): unknown, so it
    # counts as production's database, as before.
    assert same_database("service=elsewhere dbname=cruddur", prod)
    assert not looks_like_rds("service=elsewhere")


@pytest.mark.usefixtures("no_pg_variables")
def test_a_service_file_is_parsed_line_by_line_as_libpq_parses_it(tmp_path, monkeypatch) -> None:
    # Where configparser and libpq differ, reading it otherwise would fail open: a
    # production database taken for another one, an RDS host not verified.
    from cruddur.urls import looks_like_rds, same_database

    rds = SERVICE_RDS_HOST
    services = tmp_path / "services.conf"
    services.write_bytes(
        b"stray line before any section\n# caf\xe9, not UTF-8\n"
        b"[first]\nhost=127.0.0.1\nport=5432\nport=1\ndbname=postgres\n"  # the first port
        + f"[dup]\nhost={rds}\n[dup]\nhost=127.0.0.1\n".encode()  # the first [dup]
        + f"[indented]\ndbname=cruddur\n   host={rds}   \r\n".encode()
        + b"[broken]\nhost=127.0.0.1\ndbname=cruddur\nno equals sign here\n"
        + b"[other]\nno equals sign: outside the wanted section, ignored\n"
    )
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    assert same_database("service=first user=postgres", "postgresql://u@127.0.0.1:5432/postgres")
    assert looks_like_rds("service=dup")
    assert looks_like_rds("service=indented")
    # A section libpq refuses: it would not connect; here it is unknown, so it counts as
    # production's database, and the system file is not read instead.
    system = tmp_path / "etc"
    system.mkdir()
    (system / "pg_service.conf").write_text("[broken]\nhost=10.9.9.9\ndbname=cruddur\n")
    monkeypatch.setenv("PGSYSCONFDIR", str(system))
    assert same_database("service=broken", "postgresql://u@127.0.0.1:5432/cruddur")
    assert not same_database("service=first user=postgres", "postgresql://u@10.9.9.9/postgres")


def test_api_urls_and_made_roles_show_no_password_in_their_reprs() -> None:
    from cruddur.api_urls import ApiUrls
    from cruddur.ops.roles import Ensured

    urls = ApiUrls("postgresql://api:S3cret@h/db", "host=r password=R3ader dbname=db")
    assert "S3cret" not in repr(urls) and "R3ader" not in repr(urls)
    assert repr(urls).startswith("ApiUrls(primary='postgresql://api:***@h/db', reader=")
    assert "N3w" not in repr(Ensured("cruddur_api", created=True, password="N3wPassw0rd"))


def test_a_targets_repr_shows_no_password() -> None:
    from cruddur.targets import Target

    target = Target("postgresql://app:S3cret%2Fpw@db.example.com:5432/cruddur", "CONNECTION_URL")
    assert "S3cret" not in repr(target)
    assert repr(target) == (
        "Target(url='postgresql://app:***@db.example.com:5432/cruddur', "
        "source='CONNECTION_URL', production=False, behind_pooler=False, migrations_through='')"
    )


def test_a_duration_takes_ascii_digits_and_says_a_bare_number_is_milliseconds() -> None:
    # \d took a full-width 5, which the server then refused in the middle of a migration.
    from cruddur.config import duration

    assert duration("CRUDDUR_MIGRATION_LOCK_TIMEOUT", "5s") == "5s"
    with pytest.raises(ConfigError) as refused:
        duration("CRUDDUR_MIGRATION_LOCK_TIMEOUT", "\uff15s")
    assert "a bare number is milliseconds" in str(refused.value)
    # Days, as PostgreSQL reads them; too many of them is said to be too long.
    assert duration("CRUDDUR_MIGRATION_LOCK_TIMEOUT", "1d") == "1d"
    with pytest.raises(ConfigError, match="too long: at most 596h"):
        duration("CRUDDUR_MIGRATION_LOCK_TIMEOUT", "1000000d")


def test_a_durations_spaces_and_leading_zeros_are_read_as_postgresql_reads_them() -> None:
    # A review: spaces inside the number were dropped ('1 0s' was 10 s; PostgreSQL
    # refuses it), and over 4,300 digits, zeros included, was "unexpected ValueError"
    # from int() in every command.
    from cruddur.config import duration

    name = "CRUDDUR_API_LOCK_TIMEOUT"
    assert duration(name, " 2 d ") == "2d"
    assert duration(name, "0" * 5000 + "1d") == "1d"
    assert duration(name, "000") == "0"
    with pytest.raises(ConfigError, match="must be a duration"):
        duration(name, "1 0s")
    with pytest.raises(ConfigError, match="too long"):
        duration(name, "9" * 5000)


def test_a_lambda_statement_timeout_over_postgresqls_limit_is_refused_naming_it() -> None:
    # 99999999999999999999 reached the server, and the log blamed the database.
    from cruddur.config import LambdaSettings

    defaults = LambdaSettings()
    assert LambdaSettings.from_env({"CRUDDUR_STATEMENT_TIMEOUT": "2147483647"}, defaults)
    with pytest.raises(ConfigError, match="CRUDDUR_STATEMENT_TIMEOUT"):
        LambdaSettings.from_env({"CRUDDUR_STATEMENT_TIMEOUT": "2147483648"}, defaults)


@pytest.mark.parametrize(
    ("given", "on"),
    [("1", True), ("yes", True), ("false", False), ("no", False), ("OFF", False), ("0", False)],
)
def test_cruddur_debug_is_off_when_spelled_as_the_other_flags_are_off(
    monkeypatch: pytest.MonkeyPatch, given: str, on: bool
) -> None:
    # CRUDDUR_DEBUG=false turned tracebacks on.
    from cruddur.config import debug_enabled

    monkeypatch.setenv("CRUDDUR_DEBUG", given)
    assert debug_enabled() is on


def test_a_cruddur_home_under_tilde_is_in_the_users_home(tmp_path, monkeypatch) -> None:
    # From a .env (no shell to expand it) it made a folder named ~ where the command ran.
    from cruddur.config import home_from_env

    monkeypatch.setenv("HOME", str(tmp_path))
    assert home_from_env({"CRUDDUR_HOME": "~/state"}) == tmp_path.resolve() / "state"


def test_sampler_settings_are_read_only_with_tracing_on() -> None:
    # A review: with tracing off (no endpoint), a malformed sampler setting stopped every
    # command, serve and the CLI's verbs alike.
    from cruddur.config import TelemetrySettings

    odd = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "abc"}
    assert TelemetrySettings.from_env(odd).sampler == TelemetrySettings.sampler
    assert (
        TelemetrySettings.from_env({"OTEL_TRACES_SAMPLER": "jaeger_remote"}).traces_endpoint is None
    )
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER_ARG must be a number"):
        TelemetrySettings.from_env({**odd, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})


def test_another_roles_url_carries_none_of_the_first_roles_own_credentials() -> None:
    # A review: the application roles' URLs, made from the owner's, kept its client key
    # and the key's passphrase (and its password file, its application name): written
    # where whoever reads the Lambda's configuration reads them.
    owner = (
        "postgresql://postgres:pw@db.example:5432/cruddur?sslmode=verify-full"
        "&sslrootcert=/ca.pem&sslcert=/owner.crt&sslkey=/owner.key"
        "&sslpassword=OWNER-PASSPHRASE&passfile=/owner.pgpass&application_name=owner-tool"
    )
    params = parse(with_user(owner, "cruddur_api", "secret"))
    assert params == {
        "host": "db.example", "port": "5432", "dbname": "cruddur", "user": "cruddur_api",
        "password": "secret", "sslmode": "verify-full", "sslrootcert": "/ca.pem",
    }  # fmt: skip


@pytest.mark.parametrize("given", ["/dev/null", "/etc/passwd"])
def test_a_home_that_is_not_a_folder_is_said_of_the_setting(given: str) -> None:
    # "…should be a folder but is a link or a file: remove it", of /dev/null.
    with pytest.raises(ConfigError, match=f"CRUDDUR_HOME names {given}, which is not a folder"):
        Settings.from_env({"CRUDDUR_HOME": given})
