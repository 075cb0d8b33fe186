"""TLS to RDS is verified: real PostgreSQL servers presenting a certificate from a test CA
(accepted), a self-signed one and one for another name (both refused), reached through an
RDS endpoint's name by the API, the CLI's `prod` and the Lambda."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
import tls_support
from helpers import ROOT, cli, run
from tls_support import (
    PROXY_CERT_NAME,
    PROXY_HOST,
    RDS_HOST,
    make_ca,
    make_server_cert,
    rds_url,
    tls_postgres,
)

from cruddur.api.db import primary_db
from cruddur.api_urls import ApiUrls
from cruddur.config import ConfigError, Settings
from cruddur.lambdas import post_confirmation
from cruddur.rds_tls import AMAZON_ROOTS, PROXY_ROOTS_SETTING, secured
from cruddur.urls import parse

CRUDDUR = ROOT / ".venv/bin/cruddur"
SSL_IN_USE = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory):
    issued = make_ca()
    path = tmp_path_factory.mktemp("rds-ca") / "test-rds-ca.pem"
    path.write_bytes(issued.cert_pem)
    return issued, path


@pytest.fixture(scope="module")
def servers(ca):
    """Ports of three servers: the genuine RDS instance (a certificate for its name from
    the CA), and two men in the middle: self-signed for that name (the issue's
    reproduction), and the CA's certificate for another name."""
    issued, _ = ca
    genuine = make_server_cert([RDS_HOST], issued)
    self_signed = make_server_cert([RDS_HOST], None)
    other_name = make_server_cert(["attacker-mitm.example"], issued)
    with (
        tls_postgres(genuine) as genuine_port,
        tls_postgres(self_signed) as self_signed_port,
        tls_postgres(other_name) as other_name_port,
    ):
        yield {"genuine": genuine_port, "self-signed": self_signed_port, "other": other_name_port}


@pytest.fixture
def bundle(ca, monkeypatch: pytest.MonkeyPatch) -> Path:
    _, path = ca
    monkeypatch.setenv("CRUDDUR_RDS_CA_BUNDLE", str(path))
    return path


def test_without_verification_a_man_in_the_middle_is_accepted(servers) -> None:
    # What libpq does with no sslmode (`prefer`), as every URL did before: it encrypts,
    # to whoever answers.
    with psycopg.connect(rds_url(servers["self-signed"])) as conn:
        assert conn.execute(SSL_IN_USE).fetchone() == (True,)


def test_the_api_connects_only_to_the_genuine_server(servers, bundle, tmp_path) -> None:
    from cruddur.api import create_app

    def reached(port: int) -> bool:
        """Whether /api/health says the API reached the database (these servers have no
        Cruddur schema, so even the genuine one is a 503 `schema_not_ready`)."""
        settings = Settings.from_env(
            {"CONNECTION_URL": rds_url(port), "CRUDDUR_HOME": str(tmp_path)}
        )
        app = create_app(settings)
        try:
            answer = app.test_client().get("/api/health")
        finally:
            app.extensions["cruddur.db"].close()
        assert answer.status_code == 503, answer.get_data(as_text=True)
        return answer.get_json()["database"]["reachable"]

    assert reached(servers["genuine"]) is True
    assert reached(servers["self-signed"]) is False
    assert reached(servers["other"]) is False
    settings = Settings.from_env(
        {"CONNECTION_URL": rds_url(servers["genuine"]), "CRUDDUR_HOME": str(tmp_path)}
    )
    with primary_db(settings) as db:
        assert db.query_value(SSL_IN_USE) is True
        assert parse(db.conninfo)["sslmode"] == "verify-full"
        assert parse(db.conninfo)["sslrootcert"] == str(bundle)


def test_the_cli_on_prod_refuses_a_man_in_the_middle(servers, bundle) -> None:
    env = {"CRUDDUR_RDS_CA_BUNDLE": str(bundle)}
    genuine = run(
        CRUDDUR, "db", "connect", "--prod", "--", "-Atc", SSL_IN_USE,
        env={**env, "PROD_CONNECTION_URL": rds_url(servers["genuine"])},
    )  # fmt: skip
    assert genuine.returncode == 0, genuine.stderr
    assert genuine.stdout.strip() == "t"  # psql too verifies, with the same bundle
    for name, said in (("self-signed", "certificate verify failed"), ("other", "does not match")):
        refused = cli(
            CRUDDUR, "db", "status", "--prod",
            env={**env, "PROD_CONNECTION_URL": rds_url(servers[name])},
        )  # fmt: skip
        shown = refused.stdout + refused.stderr
        assert refused.returncode == 1, shown
        assert said in shown and "ca-bundle --refresh" in shown
        assert "Traceback" not in shown


@pytest.mark.parametrize(
    "verb",
    [
        ("db", "migrations", "--prod"),
        ("db", "migrate", "--prod", "--dry-run"),
        ("db", "rollback", "--prod", "--dry-run"),
        ("db", "wait", "--prod", "--timeout", "0"),
    ],
)
def test_migrations_and_wait_on_prod_refuse_a_man_in_the_middle(servers, bundle, verb) -> None:
    # They connected with the URL as given (libpq's `prefer`), not verified like the rest.
    # (Cruddur's own database: the system one, postgres, is refused before connecting.)
    env = {"CRUDDUR_RDS_CA_BUNDLE": str(bundle)}

    def rds_url(port: int) -> str:
        return tls_support.rds_url(port, "cruddur")

    for name, said in (("self-signed", "certificate verify failed"), ("other", "does not match")):
        refused = cli(CRUDDUR, *verb, env={**env, "PROD_CONNECTION_URL": rds_url(servers[name])})
        shown = refused.stdout + refused.stderr
        assert refused.returncode == 1, shown
        assert said in shown and "Traceback" not in shown
    # Through PROD_MIGRATION_CONNECTION_URL (the instance's own endpoint) just the same.
    if verb[1] != "wait":
        refused = cli(
            CRUDDUR, *verb,
            env={
                **env,
                "PROD_CONNECTION_URL": rds_url(servers["genuine"]),
                "PROD_MIGRATION_CONNECTION_URL": rds_url(servers["self-signed"]),
            },
        )  # fmt: skip
        assert refused.returncode == 1, refused.stderr
        assert "certificate verify failed" in refused.stdout + refused.stderr


def test_db_status_checks_the_replica_over_verified_tls(servers, bundle) -> None:
    # Its look at READER_CONNECTION_URL went with the URL as given (libpq's `prefer`).
    env = {"CRUDDUR_RDS_CA_BUNDLE": str(bundle), "CONNECTION_URL": rds_url(servers["genuine"])}
    for name, reachable in (("genuine", True), ("self-signed", False), ("other", False)):
        shown = run(
            CRUDDUR, "db", "status", env={**env, "READER_CONNECTION_URL": rds_url(servers[name])}
        ).stdout
        assert ("replica   unreachable" not in shown) == reachable, (name, shown)
        if not reachable:
            assert "certificate" in shown or "does not match" in shown, shown


def test_the_lambda_connects_only_to_the_genuine_server(
    servers, bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    _lambda_connects(
        monkeypatch,
        {
            rds_url(servers["genuine"]): True,
            rds_url(servers["self-signed"]): False,
            rds_url(servers["other"]): False,
        },
    )


def _lambda_connects(
    monkeypatch: pytest.MonkeyPatch, accepted: dict[str, bool], refused: str | None = None
) -> None:
    """The sign-up Lambda's connect to each URL: over TLS where accepted, else refused
    (with `refused` in the error)."""
    monkeypatch.delenv("CONNECTION_SECRET_ARN", raising=False)
    for url, taken in accepted.items():
        post_confirmation.close()
        monkeypatch.setenv("CONNECTION_URL", url)
        try:
            if taken:
                conn = post_confirmation._connect(time.monotonic() + 5)
                assert conn.execute(SSL_IN_USE).fetchone() == (True,)
                conn.close()
            else:
                with pytest.raises(psycopg.OperationalError, match=refused):
                    post_confirmation._connect(time.monotonic() + 5)
        finally:
            post_confirmation.close()


RDS = f"postgresql://u:pw@{RDS_HOST}:5432/cruddur"


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca"])
def test_a_url_asking_rds_for_less_is_refused(mode: str) -> None:
    with pytest.raises(ConfigError, match=f"sslmode={mode}; .* only with sslmode=verify-full"):
        secured(f"{RDS}?sslmode={mode}", lambda: Path("/bundle.pem"))


def test_only_rds_endpoints_are_changed() -> None:
    local = "postgresql://u:pw@127.0.0.1:5432/cruddur"
    assert secured(local, lambda: pytest.fail("no bundle needed")) == local
    own = parse(secured(f"{RDS}?sslrootcert=/mine.pem", lambda: Path("/bundle.pem")))
    assert (own["sslmode"], own["sslrootcert"]) == ("verify-full", "/mine.pem")
    made = parse(secured(RDS, lambda: Path("/bundle.pem")))
    assert (made["sslmode"], made["sslrootcert"]) == ("verify-full", "/bundle.pem")
    # An endpoint of AWS's China regions is RDS too: it was left on libpq's `prefer`.
    china = "postgresql://u:pw@db.abc.cn-north-1.rds.amazonaws.com.cn:5432/cruddur"
    made = parse(secured(china, lambda: Path("/bundle.pem")))
    assert (made["sslmode"], made["sslrootcert"]) == ("verify-full", "/bundle.pem")
    with pytest.raises(ConfigError, match="sslmode=prefer"):
        secured(f"{china}?sslmode=prefer", lambda: Path("/bundle.pem"))


# RDS Proxy: its certificate comes from AWS Certificate Manager and chains to Amazon
# Trust Services' roots, not to an RDS CA. Here a test "Amazon" CA stands for those roots.


@pytest.fixture(scope="module")
def amazon_ca(tmp_path_factory: pytest.TempPathFactory):
    issued = make_ca("Cruddur Test Amazon Root CA")
    path = tmp_path_factory.mktemp("amazon-ca") / "test-amazon-roots.pem"
    path.write_bytes(issued.cert_pem)
    return issued, path


@pytest.fixture(scope="module")
def proxies(ca, amazon_ca):
    """Ports of two servers answering for the proxy's name: the genuine proxy (the
    Amazon CA's certificate), and one holding the RDS CA's certificate for that name
    (RDS CAs sign DB instances only: it is not the proxy)."""
    genuine = make_server_cert([PROXY_CERT_NAME], amazon_ca[0])
    rds_signed = make_server_cert([PROXY_CERT_NAME], ca[0])
    with tls_postgres(genuine) as genuine_port, tls_postgres(rds_signed) as rds_signed_port:
        yield {"genuine": genuine_port, "rds-signed": rds_signed_port}


@pytest.fixture
def proxy_roots(amazon_ca, bundle, monkeypatch: pytest.MonkeyPatch) -> Path:
    _, path = amazon_ca
    monkeypatch.setenv(PROXY_ROOTS_SETTING, str(path))
    return path


def proxy_url(port: int) -> str:
    return rds_url(port, host=PROXY_HOST)


def test_the_api_verifies_an_rds_proxy_with_amazons_roots(proxies, proxy_roots, tmp_path) -> None:
    # It gave the proxy the RDS CA bundle, which does not vouch for the proxy's
    # certificate: every connection through a real RDS Proxy failed verification.
    def settings(port: int) -> Settings:
        return Settings.from_env({"CONNECTION_URL": proxy_url(port), "CRUDDUR_HOME": str(tmp_path)})

    with primary_db(settings(proxies["genuine"])) as db:
        assert db.query_value(SSL_IN_USE) is True
        assert parse(db.conninfo)["sslrootcert"] == str(proxy_roots)
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(ApiUrls.from_settings(settings(proxies["rds-signed"])).primary).close()


def test_the_cli_and_the_lambda_verify_an_rds_proxy_with_amazons_roots(
    proxies, proxy_roots, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both settings are in this process's environment (the fixtures), which they inherit.
    genuine = run(
        CRUDDUR, "db", "connect", "--prod", "--", "-Atc", SSL_IN_USE,
        env={"PROD_CONNECTION_URL": proxy_url(proxies["genuine"])},
    )  # fmt: skip
    assert (genuine.returncode, genuine.stdout.strip()) == (0, "t"), genuine.stderr  # psql too
    refused = cli(
        CRUDDUR, "db", "status", "--prod",
        env={"PROD_CONNECTION_URL": proxy_url(proxies["rds-signed"])},
    )  # fmt: skip
    assert refused.returncode == 1
    assert "certificate verify failed" in refused.stdout + refused.stderr
    _lambda_connects(
        monkeypatch,
        {proxy_url(proxies["genuine"]): True, proxy_url(proxies["rds-signed"]): False},
        refused="certificate verify failed",
    )


PROXY = f"postgresql://u:pw@{PROXY_HOST}:5432/cruddur"


def test_a_proxy_gets_amazons_roots_and_a_mix_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROXY_ROOTS_SETTING, raising=False)
    made = parse(secured(PROXY, lambda: pytest.fail("the RDS bundle is not for a proxy")))
    assert (made["sslmode"], made["sslrootcert"]) == ("verify-full", str(AMAZON_ROOTS))
    own = parse(secured(f"{PROXY}?sslrootcert=/mine.pem", lambda: Path("/bundle.pem")))
    assert own["sslrootcert"] == "/mine.pem"
    # libpq takes one sslrootcert for all the hosts of a URL.
    both = f"postgresql://u:pw@{PROXY_HOST}:5432,{RDS_HOST}:5432/cruddur"
    with pytest.raises(ConfigError, match="both an RDS Proxy endpoint and a DB instance"):
        secured(both, lambda: Path("/bundle.pem"))
    mine = parse(secured(f"{both}?sslrootcert=/both.pem", lambda: Path("/bundle.pem")))
    assert mine["sslrootcert"] == "/both.pem"


def test_a_proxy_roots_file_is_checked_as_the_rds_bundle_is(
    amazon_ca, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was used as given: a file others could write (whoever plants roots there gets
    # the password), or junk that libpq then refused with the RDS bundle's hint.
    def refusal(path: Path) -> str:
        monkeypatch.setenv(PROXY_ROOTS_SETTING, str(path))
        with pytest.raises(ConfigError) as refused:
            secured(PROXY, lambda: pytest.fail("the RDS bundle is not for a proxy"))
        said = str(refused.value)
        assert said.startswith(f"{PROXY_ROOTS_SETTING} ({path}) "), said
        return said

    assert "cannot be read: No such file" in refusal(tmp_path / "absent.pem")
    assert "is not a file" in refusal(tmp_path)
    for name, content in (("empty.pem", b""), ("junk.pem", b"junk\n")):
        (tmp_path / name).write_bytes(content)
        assert "holds no PEM certificates" in refusal(tmp_path / name)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(make_server_cert([PROXY_CERT_NAME], amazon_ca[0]).cert_pem)
    assert "holds no certificate authority" in refusal(leaf)
    planted = tmp_path / "planted.pem"
    planted.write_bytes(amazon_ca[0].cert_pem)
    planted.chmod(0o666)
    assert "others may write it" in refusal(planted)
    planted.chmod(0o644)
    # A sound file in a folder anyone may write: libpq reads it by path at each new
    # connection, long after the check, and the folder's writers could swap it.
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    (open_folder / "roots.pem").write_bytes(amazon_ca[0].cert_pem)
    assert f"is in {open_folder}, a folder" in refusal(open_folder / "roots.pem")
    # One of this user's own that its group may write is taken (a checkout cloned under
    # umask 002): refused, it stopped every RDS connection from such a checkout.
    open_folder.chmod(0o775)
    monkeypatch.setenv(PROXY_ROOTS_SETTING, str(open_folder / "roots.pem"))
    assert parse(secured(PROXY, lambda: Path("/b.pem")))["sslrootcert"].endswith("roots.pem")
    monkeypatch.setenv(PROXY_ROOTS_SETTING, str(planted))
    assert parse(secured(PROXY, lambda: Path("/bundle.pem")))["sslrootcert"] == str(planted)


def test_the_cli_names_a_bad_proxy_roots_setting_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("junk\n")
    env = {
        "PROD_CONNECTION_URL": f"{PROXY}?hostaddr=127.0.0.1",
        PROXY_ROOTS_SETTING: str(tmp_path / "junk.pem"),
    }
    refused = cli(CRUDDUR, "db", "status", "--prod", env=env)
    shown = refused.stdout + refused.stderr
    assert refused.returncode == 1, shown
    assert f"{PROXY_ROOTS_SETTING} ({tmp_path}/junk.pem) holds no PEM certificates" in shown
    assert "ca-bundle --refresh" not in shown and "Traceback" not in shown
    assert ":pw@" not in shown


def test_the_shipped_roots_are_amazons_as_in_certifi() -> None:
    # Each certificate in the file is one of Mozilla's roots (certifi's copy), byte for
    # byte, and is Amazon Root CA 1 to 4: nothing else is trusted for a proxy.
    import certifi
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    shipped = x509.load_pem_x509_certificates(AMAZON_ROOTS.read_bytes())
    mozilla = Path(certifi.where()).read_text()
    names = set()
    for root in shipped:
        assert root.public_bytes(Encoding.PEM).decode().strip() in mozilla
        assert root.subject == root.issuer
        names.add(root.subject.rfc4514_string())
    assert names == {f"CN=Amazon Root CA {n},O=Amazon,C=US" for n in range(1, 5)}
