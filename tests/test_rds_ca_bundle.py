"""The RDS CA bundle: fetched over HTTPS on first use, checked, kept, refused when planted.

AWS's trust store is out of reach here: a local HTTPS server (its certificate from a test
CA the client is told to trust) serves the bundles instead, through the same code.
"""

from __future__ import annotations

import http.server
import os
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, cli, run
from tls_support import Issued, make_ca, make_server_cert

from cruddur.aws.ca_bundle import BundleError, bundle_path, cache_path, refresh
from cruddur.rds_tls import AMAZON_ROOTS

CRUDDUR = ROOT / ".venv/bin/cruddur"


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ssl.SSLContext, dict]]:
    """(base URL, a client context trusting the server, {path: body} the server answers)."""
    folder = tmp_path_factory.mktemp("https")
    web_ca = make_ca("Cruddur Test Web CA")
    leaf = make_server_cert(["127.0.0.1"], web_ca)
    (folder / "cert.pem").write_bytes(leaf.cert_pem)
    (folder / "key.pem").write_bytes(leaf.key_pem)
    bodies: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = ssl.create_default_context(cadata=web_ca.cert_pem.decode())
    yield f"https://127.0.0.1:{server.server_address[1]}", client, bodies
    server.shutdown()
    server.server_close()


def _rds_ca() -> Issued:
    return make_ca("Amazon RDS test-region-1 Root CA RSA2048 G1", unit="Amazon RDS")


def test_the_bundle_is_fetched_checked_and_kept(https, tmp_path: Path) -> None:
    base, client, bodies = https
    good = _rds_ca().cert_pem + _rds_ca().cert_pem
    bodies["/global/global-bundle.pem"] = good
    fetched = refresh(tmp_path, url=f"{base}/global/global-bundle.pem", context=client)
    assert fetched.path == cache_path(tmp_path) and fetched.path.read_bytes() == good
    assert fetched.certificates == 2 and fetched.source.endswith("/global/global-bundle.pem")
    assert fetched.fetched_at is not None
    assert oct(fetched.path.parent.stat().st_mode & 0o777) == "0o700"
    # Kept: the next use reads it, no fetch (an empty environment: no copy of one's own).
    assert bundle_path(tmp_path, {}) == fetched.path
    # A home this makes gets the home's mode whatever the umask (under 002 it was 0775,
    # which the next command refused as a state folder others could write).
    home = tmp_path / "new-home"
    before = os.umask(0o002)
    try:
        refresh(home, url=f"{base}/global/global-bundle.pem", context=client)
    finally:
        os.umask(before)
    assert oct(home.stat().st_mode & 0o777) == "0o755"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"<html>captive portal</html>", "holds no PEM certificates"),
        (make_server_cert(["x.example"], None).cert_pem, "is not a certificate authority"),
        (make_ca("Someone Else's CA").cert_pem, "is not an Amazon RDS CA"),
        (b"-----BEGIN CERTIFICATE-----\n" + b"A" * 1_100_000, "more than an RDS CA bundle"),
    ],
)
def test_a_bundle_that_is_not_rds_is_refused_and_the_kept_one_stays(
    https, tmp_path: Path, body: bytes, said: str
) -> None:
    base, client, bodies = https
    bodies["/good.pem"] = _rds_ca().cert_pem
    kept = refresh(tmp_path, url=f"{base}/good.pem", context=client).path.read_bytes()
    bodies["/bad.pem"] = body
    with pytest.raises(BundleError, match=said):
        refresh(tmp_path, url=f"{base}/bad.pem", context=client)
    assert cache_path(tmp_path).read_bytes() == kept


def test_a_server_the_system_does_not_trust_gives_no_bundle(https, tmp_path: Path) -> None:
    base, _, bodies = https
    bodies["/good.pem"] = _rds_ca().cert_pem
    with pytest.raises(BundleError, match="cannot fetch the RDS CA bundle"):
        refresh(tmp_path, url=f"{base}/good.pem")  # the system's CAs: not the test web CA
    assert not cache_path(tmp_path).exists()


def test_a_bundle_with_a_private_key_in_it_is_refused(tmp_path: Path) -> None:
    # A review: the loader skips what is not a certificate, so a combined key-and-CA
    # file passed, and its key went into the Lambda's zip.
    ca = make_ca("Own CA")
    path = tmp_path / "ca.pem"
    path.write_bytes(ca.key_pem + ca.cert_pem)
    path.chmod(0o600)
    with pytest.raises(BundleError, match="holds a PRIVATE KEY block: a CA bundle holds"):
        bundle_path(tmp_path, {"CRUDDUR_RDS_CA_BUNDLE": str(path)})
    path.write_bytes(ca.cert_pem)
    assert bundle_path(tmp_path, {"CRUDDUR_RDS_CA_BUNDLE": str(path)}) == path


def test_a_planted_or_shared_bundle_is_refused(tmp_path: Path) -> None:
    path = cache_path(tmp_path)
    path.parent.mkdir(mode=0o700)
    path.write_bytes(_rds_ca().cert_pem)
    path.chmod(0o666)  # anyone could have swapped in their own CA
    with pytest.raises(BundleError, match="others may write it"):
        bundle_path(tmp_path, {})
    path.chmod(0o644)
    assert bundle_path(tmp_path, {}) == path
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)  # another user's file
        with pytest.raises(BundleError, match="neither this user's own nor root's"):
            bundle_path(tmp_path, {})
        path.unlink()
    link = tmp_path / "elsewhere.pem"
    link.write_bytes(_rds_ca().cert_pem)
    path.unlink(missing_ok=True)
    path.symlink_to(link)  # the kept copy, which Cruddur writes itself, is never a link
    with pytest.raises(BundleError, match=r"cannot read .*: it is a link, not the file kept"):
        bundle_path(tmp_path, {})


def test_a_bundle_given_through_a_link_of_ones_own_is_taken(tmp_path: Path) -> None:
    # A review: a link to it was refused ("Too many levels of symbolic links"), though a
    # link in a folder on the way was taken; Debian's /etc/ssl/certs/*.pem are links.
    own = tmp_path / "ca.pem"
    own.write_bytes(_rds_ca().cert_pem)
    link = tmp_path / "link.pem"
    link.symlink_to(own.name)
    assert bundle_path(tmp_path, {"CRUDDUR_RDS_CA_BUNDLE": str(link)}) == link
    shown = run(CRUDDUR, "rds", "ca-bundle", env={"CRUDDUR_RDS_CA_BUNDLE": str(link)})
    assert shown.returncode == 0, shown.stderr
    if os.geteuid() == 0:  # a link another user owns still is not
        os.lchown(link, 65534, 65534)
        with pytest.raises(BundleError, match="a link another user owns"):
            bundle_path(tmp_path, {"CRUDDUR_RDS_CA_BUNDLE": str(link)})


def test_a_bundle_root_owns_is_taken_by_another_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A review: the README's image recipe (COPY global-bundle.pem, owned by root; the
    # service runs as its own user) was refused, and the API could not reach RDS. Root is
    # trusted, as with .env files; only the owner and the mode count. (The tests run as
    # root: the other user is this process taking another id, where the check reads it.)
    given = tmp_path / "global-bundle.pem"
    given.write_bytes(_rds_ca().cert_pem)
    given.chmod(0o644)
    if os.stat(given).st_uid != 0:
        pytest.skip("needs a file root owns")
    monkeypatch.setattr(os, "geteuid", lambda: 10001)
    assert bundle_path(tmp_path, {"CRUDDUR_RDS_CA_BUNDLE": str(given)}) == given
    given.chmod(0o664)  # root's, but its group may write it
    with pytest.raises(BundleError, match="others may write it") as refused:
        bundle_path(tmp_path, {"CRUDDUR_RDS_CA_BUNDLE": str(given)})
    assert "point CRUDDUR_RDS_CA_BUNDLE elsewhere" in str(refused.value)  # not --refresh


def test_a_damaged_side_file_only_loses_where_the_bundle_came_from(https, tmp_path: Path) -> None:
    # A review: `rds ca-bundle` ended "unexpected JSONDecodeError" (or AttributeError)
    # when the kept bundle's .json side file was not an object of strings.
    base, client, bodies = https
    bodies["/global/global-bundle.pem"] = _rds_ca().cert_pem
    refresh(tmp_path, url=f"{base}/global/global-bundle.pem", context=client)
    side = cache_path(tmp_path).with_name(cache_path(tmp_path).name + ".json")
    assert side.is_file()
    for damaged in ("{not json", '["x"]', '{"url": 5}'):
        side.write_text(damaged)
        kept = {"CRUDDUR_HOME": str(tmp_path), "CRUDDUR_RDS_CA_BUNDLE": ""}  # the kept copy
        shown = run(CRUDDUR, "rds", "ca-bundle", env=kept)
        assert shown.returncode == 0, shown.stderr
        assert "unexpected" not in shown.stderr and "source 5" not in shown.stdout
        assert "certificates    1" in shown.stdout


def test_ca_bundle_shows_where_it_comes_from(tmp_path: Path) -> None:
    own = tmp_path / "mine.pem"
    own.write_bytes(_rds_ca().cert_pem)
    shown = run(CRUDDUR, "rds", "ca-bundle", env={"CRUDDUR_RDS_CA_BUNDLE": str(own)})
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert lines["path"] == str(own) and lines["source"] == "CRUDDUR_RDS_CA_BUNDLE"
    assert lines["certificates"] == "1"
    # What RDS Proxy endpoints are verified with instead (psql needs it too).
    assert f"proxy roots     {AMAZON_ROOTS}\n" in shown.stdout
    missing = cli(CRUDDUR, "rds", "ca-bundle", env={"CRUDDUR_RDS_CA_BUNDLE": "/nonexistent"})
    assert missing.returncode == 1 and "cannot read the RDS CA bundle" in missing.stderr


def test_a_bundle_setting_naming_a_folder_or_a_pipe_is_one_line(tmp_path: Path) -> None:
    # A folder ended in "unexpected IsADirectoryError"; a pipe held the command until
    # someone wrote to it.
    folder = tmp_path / "bundles"
    folder.mkdir(mode=0o700)
    pipe = tmp_path / "bundle.pem"
    os.mkfifo(pipe, 0o600)
    for given in (folder, pipe):
        refused = cli(CRUDDUR, "rds", "ca-bundle", env={"CRUDDUR_RDS_CA_BUNDLE": str(given)})
        assert refused.returncode == 1, refused.stderr
        assert f"error: the RDS CA bundle {given} is not a file" in refused.stderr
        assert "unexpected" not in refused.stderr
