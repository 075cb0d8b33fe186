"""`cruddur lambda package`: the zip for each architecture, reproducible, and runnable.

Marked `pypi`: the first run per architecture downloads psycopg's wheels from PyPI into
.cruddur/lambda-wheels; later runs build from there (`-m "not pypi"` leaves them out).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import psycopg
import pytest
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

from cruddur.config import home_from_env
from cruddur.ops.packaging import (
    BUNDLE_ENTRY,
    HANDLER_FILES,
    PackagingError,
    check_output,
    lock_file,
    source_root,
)
from cruddur.rds_tls import AMAZON_ROOTS

pytestmark = pytest.mark.pypi

CRUDDUR = ROOT / ".venv/bin/cruddur"
ELF_MACHINE = {"x86_64": 62, "arm64": 183}  # e_machine: EM_X86_64, EM_AARCH64


def build(arch: str, output: Path, env: dict[str, str] | None = None) -> str:
    built = run(CRUDDUR, "lambda", "package", "--arch", arch, "--output", str(output), env=env)
    assert built.returncode == 0, built.stderr
    assert str(output) in built.stdout and " bytes (" in built.stdout
    return hashlib.sha256(output.read_bytes()).hexdigest()


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_the_package_is_reproducible_and_holds_the_binary_for_its_arch(
    arch: str, tmp_path: Path
) -> None:
    first = build(arch, tmp_path / "one" / "fn.zip")
    assert build(arch, tmp_path / "two.zip") == first  # same inputs, same bytes

    with zipfile.ZipFile(tmp_path / "two.zip") as bundle:
        entries = bundle.infolist()
        names = [entry.filename for entry in entries]
        assert names == sorted(names)
        assert set(HANDLER_FILES) <= set(names)
        # The RDS CA bundle the function verifies the database with (conftest's test CA).
        given = Path(os.environ["CRUDDUR_RDS_CA_BUNDLE"]).read_bytes()
        assert bundle.read(BUNDLE_ENTRY) == given
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert not [n for n in names if n.startswith(("click/", "rich/", "boto3/", "psycopg_pool"))]
        assert {entry.date_time for entry in entries} == {(1980, 1, 1, 0, 0, 0)}
        assert {entry.external_attr >> 16 for entry in entries} == {0o100644}

        wheel = next(n for n in names if n.startswith("psycopg_binary-") and n.endswith("/WHEEL"))
        tags = [line for line in bundle.read(wheel).decode().splitlines() if line.startswith("Tag")]
        machine = "x86_64" if arch == "x86_64" else "aarch64"
        assert tags and all("cp312-cp312-manylinux" in t and t.endswith(machine) for t in tags)

        binaries = [n for n in names if n.startswith("psycopg_binary") and ".so" in n]
        assert any(n.endswith(f"cpython-312-{machine}-linux-gnu.so") for n in binaries)
        for name in binaries:
            header = bundle.read(name)[:20]
            assert header[:4] == b"\x7fELF"
            assert int.from_bytes(header[18:20], "little") == ELF_MACHINE[arch], name


def test_the_default_zip_goes_to_the_checkouts_dist_from_any_folder(tmp_path: Path) -> None:
    # It went to dist/ under the current folder: run from deploy/, to deploy/dist/, where
    # the templates' CodeUri (../dist/post-confirmation.zip) never looks. A copy of the
    # checkout's code and lock, so that the real dist/ is not written; the wheels come
    # from the real cache.
    checkout = tmp_path / "checkout"
    shutil.copytree(
        source_root() / "cruddur",
        checkout / "src" / "cruddur",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (checkout / "requirements").mkdir()
    shutil.copy(lock_file(), checkout / "requirements")
    (checkout / "deploy").mkdir()
    env = {"PYTHONPATH": str(checkout / "src"), "CRUDDUR_HOME": str(home_from_env(os.environ))}
    built = run(CRUDDUR, "lambda", "package", env=env, cwd=checkout / "deploy")
    assert built.returncode == 0, built.stderr
    written = checkout / "dist" / "post-confirmation.zip"
    assert built.stdout.startswith(f"{written}  ")  # the absolute path, said first
    with zipfile.ZipFile(written) as bundle:
        assert set(HANDLER_FILES) <= set(bundle.namelist())
    assert list((checkout / "deploy").iterdir()) == []  # no deploy/dist/


def python_312() -> str | None:
    """A CPython 3.12, the Lambda runtime's version (the wheels are built for it)."""
    candidates = [
        shutil.which("python3.12"),
        *sorted(glob.glob("/root/.pyenv/versions/3.12*/bin/python3.12")),
    ]
    for candidate in filter(None, candidates):
        check = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if check.stdout.strip() == "True":
            return candidate
    return None


def test_the_unpacked_package_runs_the_handler_on_python_312(
    tmp_path: Path, seeded_db: str
) -> None:
    python = python_312()
    if python is None:
        pytest.skip("no CPython 3.12 on this machine to run the x86_64 package with")
    build("x86_64", tmp_path / "fn.zip")
    task = tmp_path / "task"  # what Lambda unpacks into /var/task
    with zipfile.ZipFile(tmp_path / "fn.zip") as bundle:
        bundle.extractall(task)
    sub = str(uuid.uuid4())
    event = {
        "version": "1",
        "triggerSource": "PostConfirmation_ConfirmSignUp",
        "userName": sub,
        "request": {
            "userAttributes": {
                "sub": sub,
                "name": "Kyle Reese",
                "preferred_username": "kreese",
                "email": "kyle@example.com",
            }
        },
        "response": {},
    }
    # -S -E: no site-packages and no PYTHONPATH, so only the zip's files and the stdlib.
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(task)!r})\n"
        "from cruddur.lambdas.post_confirmation import handler\n"
        "import psycopg\n"
        f"event = json.loads({json.dumps(event)!r})\n"
        "assert handler(event, None) == event\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'click', 'rich')]\n"
        "print(psycopg.pq.__impl__, heavy, psycopg.__file__)\n"
    )
    ran = subprocess.run(
        [python, "-S", "-E", "-c", code],
        env={"CONNECTION_URL": seeded_db, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    impl, heavy, location = ran.stdout.split(" ", 2)
    assert (impl, heavy) == ("binary", "[]")  # psycopg's C build from the zip, loaded
    assert location.startswith(str(task))
    with psycopg.connect(seeded_db) as conn:
        row = conn.execute("SELECT handle FROM users WHERE cognito_user_id = %s", [sub])
        assert row.fetchone() == ("kreese",)


def test_the_unpacked_package_verifies_rds_with_its_own_bundle(tmp_path: Path) -> None:
    python = python_312()
    if python is None:
        pytest.skip("no CPython 3.12 on this machine to run the x86_64 package with")
    ca = make_ca()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    build("x86_64", tmp_path / "fn.zip", env={"CRUDDUR_RDS_CA_BUNDLE": str(tmp_path / "ca.pem")})
    task = tmp_path / "task"
    with zipfile.ZipFile(tmp_path / "fn.zip") as bundle:
        bundle.extractall(task)
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    code = "\n".join(
        [
            "import sys",
            f"sys.path.insert(0, {str(task)!r})",
            "from cruddur.lambdas import post_confirmation",
            "import time",
            "conn = post_confirmation._connect(time.monotonic() + 5)",  # Cognito's 5 s
            f"print(conn.execute({query!r}).fetchone()[0])",
        ]
    )
    genuine = make_server_cert([RDS_HOST], ca)
    # An RDS CA's certificate for a proxy's name: the zip's Amazon roots do not take it.
    not_a_proxy = make_server_cert([PROXY_CERT_NAME], ca)
    with (
        tls_postgres(genuine) as good,
        tls_postgres(make_server_cert([RDS_HOST], None)) as mitm,
        tls_postgres(not_a_proxy) as rds_signed,
    ):
        outcomes = {}
        for name, url in (
            ("genuine", rds_url(good)),
            ("self-signed", rds_url(mitm)),
            ("proxy", rds_url(rds_signed, host=PROXY_HOST)),
        ):
            # Only what Lambda gives the function: the URL; the roots come from the zip.
            outcomes[name] = subprocess.run(
                [python, "-S", "-E", "-c", code],
                env={"CONNECTION_URL": url, "PATH": "/usr/bin:/bin"},
                capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
            )  # fmt: skip
    assert outcomes["genuine"].returncode == 0, outcomes["genuine"].stderr
    assert outcomes["genuine"].stdout.strip() == "True"
    for refused in ("self-signed", "proxy"):
        assert outcomes[refused].returncode == 1
        assert "certificate verify failed" in outcomes[refused].stderr, outcomes[refused].stderr
    assert (task / "cruddur/amazon-trust-roots.pem").read_bytes() == AMAZON_ROOTS.read_bytes()


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_an_output_that_is_no_file_is_refused_and_left_alone(tmp_path: Path, kind: str) -> None:
    # `-o /dev/stdout` replaced the link itself (as root, /dev/stdout for every process
    # on the machine) with the zip, and nothing went through it. Here a link of the same
    # kind, and a pipe, stand in for it.
    output = tmp_path / "stdout"
    if kind == "link":
        output.symlink_to("/proc/self/fd/1")
    else:
        os.mkfifo(output)
    refused = cli(CRUDDUR, "lambda", "package", "--output", str(output))
    assert refused.returncode == 1
    assert f"{output} is a link, a device or a pipe" in refused.stderr
    assert output.is_symlink() if kind == "link" else not output.is_file()
    assert [path.name for path in tmp_path.iterdir()] == ["stdout"]


@pytest.mark.parametrize(
    ("output", "said"),
    [
        ("/proc/post-confirmation.zip", "no file can be made in /proc"),
        ("a-file/post-confirmation.zip", "a-file is a file, not a folder"),
        ("a-file/deeper/post-confirmation.zip", "a-file is a file, not a folder"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_anything_is_fetched(
    tmp_path: Path, output: str, said: str
) -> None:
    # `-o /proc/x.zip` first fetched the RDS CA bundle (and failed on that, offline), then
    # the wheels, before failing to write. A bundle path that does not exist stands for
    # the fetch here: reaching it says "cannot read the RDS CA bundle".
    (tmp_path / "a-file").write_text("not a folder")
    home = tmp_path / "home"
    env = {"CRUDDUR_HOME": str(home), "CRUDDUR_RDS_CA_BUNDLE": str(tmp_path / "none.pem")}
    refused = cli(CRUDDUR, "lambda", "package", "--output", output, env=env, cwd=tmp_path)
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot write {output}: {said}")
    assert "RDS CA bundle" not in refused.stderr
    assert not home.exists()  # no wheel cache, nothing fetched
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]


def test_an_output_that_is_a_folder_is_refused_before_anything_is_fetched(tmp_path: Path) -> None:
    env = {"CRUDDUR_RDS_CA_BUNDLE": str(tmp_path / "none.pem")}
    refused = cli(CRUDDUR, "lambda", "package", "--output", str(tmp_path), env=env)
    assert refused.returncode == 2  # click's own check of the option
    assert f"'{tmp_path}' is a directory" in refused.stderr
    assert "RDS CA bundle" not in refused.stderr
    # build() is called with the folder too (by code, not the CLI): its own words.
    with pytest.raises(PackagingError, match=rf"^{tmp_path} is a folder: --output takes the"):
        check_output(tmp_path)
    with pytest.raises(PackagingError, match="no file can be made in /proc"):
        check_output(Path("/proc/post-confirmation.zip"))
    check_output(tmp_path / "new" / "folders" / "post-confirmation.zip")  # build makes them
    assert list(tmp_path.iterdir()) == []  # the trial file is gone, no folder made
    # A folder not made yet, said with a trailing /: it was written as a file of that name.
    refused = cli(CRUDDUR, "lambda", "package", "--output", f"{tmp_path}/sub/", env=env)
    assert refused.returncode == 2
    assert f"names a folder: give the zip's path, e.g. {tmp_path}/sub/post-confirmation" in (
        " ".join(refused.stderr.split())
    )
    assert list(tmp_path.iterdir()) == []


def test_the_readme_counts_and_names_what_the_sign_up_handler_carries() -> None:
    # It said 20 files and four modules after a fifth (cruddur.names) came in.
    readme = (ROOT / "README.md").read_text()
    said = re.search(r"the (\d+) of `HANDLER_FILES`", readme)
    assert said and int(said[1]) == len(HANDLER_FILES)
    sentence = readme.split("- It imports only psycopg, the standard library", 1)[1].split(";")[0]
    named = set(re.findall(r"`([a-z_]+)`", sentence))
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, cruddur.lambdas.post_confirmation as _; print("
         "' '.join(m.split('.')[-1] for m in sys.modules if m.startswith('cruddur.') and "
         "m.count('.') == 1 and m not in ('cruddur.lambdas', 'cruddur.services')))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.split()  # fmt: skip
    assert set(loaded) == named, (loaded, named)
