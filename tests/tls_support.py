"""Certificates for the TLS tests, made with `cryptography`, and a throwaway PostgreSQL
that presents one of them (the embedded server's binaries, a free port, 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import free_port

from cruddur.embedded import find_bin_dir

# An RDS endpoint's shape; the tests connect to it with hostaddr=127.0.0.1, so libpq
# checks the certificate against this name while the packets go to the local server.
RDS_HOST = "cruddur-db-instance.abc123xyz789.us-east-1.rds.amazonaws.com"
# An RDS Proxy endpoint's shape (its certificates come from AWS Certificate Manager).
PROXY_HOST = "cruddur-db-instance-proxy.proxy-abc123xyz789.us-east-1.rds.amazonaws.com"
# What its certificate names, as RDS Proxy's do: a wildcard for every proxy of the account.
PROXY_CERT_NAME = "*.proxy-abc123xyz789.us-east-1.rds.amazonaws.com"


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _name(common_name: str, unit: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cruddur tests")]
    if unit:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(parts)


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def make_ca(common_name: str = "Cruddur Test RDS Root CA", unit: str | None = None) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, unit))
        .issuer_name(_name(common_name, unit))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem(key))


def make_server_cert(hostnames: list[str], issuer: Issued | None) -> Issued:
    """A server certificate for `hostnames` (DNS names or IP addresses), signed by
    `issuer`, or self-signed when it is None (what a man in the middle presents)."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = _name(hostnames[0])
    if issuer is None:
        signing_key, issuer_name = key, subject
    else:
        signing_key = serialization.load_pem_private_key(issuer.key_pem, None)
        issuer_name = x509.load_pem_x509_certificate(issuer.cert_pem).subject
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(signing_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem(key))


def _server_user() -> pwd.struct_passwd:
    """PostgreSQL refuses to run as root: as root, the `postgres` user runs it."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    return pwd.getpwnam("postgres")


@contextmanager
def tls_postgres(certificate: Issued) -> Iterator[int]:
    """A throwaway PostgreSQL on 127.0.0.1 presenting `certificate`; yields its port.
    Trust authentication: what the tests look at is which certificates the client takes."""
    user = _server_user()
    switch = {}
    if os.geteuid() == 0:
        switch = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    bin_dir = find_bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="cruddur-tls-"))
    os.chown(folder, user.pw_uid, user.pw_gid)
    data, port = folder / "data", free_port()
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}

    def run(*args: str) -> None:
        done = subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            env=env, capture_output=True, text=True, timeout=60, check=False, **switch,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout

    try:
        run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
        files = {"server.crt": certificate.cert_pem, "server.key": certificate.key_pem}
        for name, content in files.items():
            path = data / name
            path.write_bytes(content)
            os.chown(path, user.pw_uid, user.pw_gid)
            path.chmod(0o600)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{folder}'\nssl = on\nfsync = off\n"
            )
        run("pg_ctl", "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "30", "start")
        yield port
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                env=env, capture_output=True, timeout=60, check=False, **switch,
            )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def rds_url(port: int, dbname: str = "postgres", host: str = RDS_HOST) -> str:
    """An RDS endpoint's URL whose packets go to 127.0.0.1:port."""
    return f"postgresql://postgres@{host}:{port}/{dbname}?hostaddr=127.0.0.1"
