"""As root, the embedded server's own OS user (`postgres`) must not be able to make root
run its programs or write root's files: root's state lives where only root can write,
programs run only from folders no other user can change, and root writes nothing into
the folder the server's user owns.

These tests attack as that user, the way anyone who can act as it can: through the
database superuser's `COPY … TO PROGRAM`, or a planted initdb.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from helpers import ROOT, run

from cruddur import embedded
from cruddur.embedded import EmbeddedError, EmbeddedPostgres, RunAs, find_bin_dir

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="acts as the postgres OS user against root: needs to run as root"
)


def cruddur(*args: str, env: dict[str, str]):
    return run(ROOT / ".venv" / "bin" / "cruddur", *args, env=env)


@pytest.fixture
def reachable_home():
    """A CRUDDUR_HOME the `postgres` user can reach (as a checkout under /srv or /work is),
    so that the cluster lives inside it; stopped and removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="cruddur-root-state-", dir="/tmp"))
    base.chmod(0o755)
    home = base / "home"
    yield home
    cruddur("db", "down", env={"CRUDDUR_HOME": str(home)})
    shutil.rmtree(base, ignore_errors=True)


# What the server's user does, once it runs a program: plant binaries that record who
# ran them, and put a state file naming them wherever it can write one.
ATTACK = r"""
home="$1"
planted="$home/postgres/planted"
mkdir -p "$planted"
for tool in initdb pg_ctl postgres psql; do
  printf '#!/bin/sh\nid -u >> %s/postgres/ran-as\nexit 0\n' "$home" > "$planted/$tool"
  chmod 755 "$planted/$tool"
done
port=$(sed -n 4p "$home/postgres/data/postmaster.pid")
state="{\"password\": \"x\", \"port\": $port, \"bin_dir\": \"$planted\","
state="$state \"cluster_dir\": \"$home/postgres\"}"
for target in "$home/postgres/server.json" "$home/postgres.json"; do
  dir=$(dirname "$target")
  if printf '%s' "$state" > "$dir/.planted" 2>/dev/null; then
    mv -f "$dir/.planted" "$target" && echo "$target" >> "$home/postgres/attacked"
  fi
done
echo done >> "$home/postgres/attacked"
"""


@needs_root
def test_a_database_superuser_cannot_make_root_run_its_programs(reachable_home) -> None:
    env = {"CRUDDUR_HOME": str(reachable_home)}
    assert cruddur("db", "create", env=env).returncode == 0
    script = reachable_home.parent / "attack.sh"
    script.write_text(ATTACK)
    script.chmod(0o755)

    # Only the database password is needed: COPY … TO PROGRAM runs as the server's user.
    superuser = EmbeddedPostgres(reachable_home).url("postgres")
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute(f"COPY (SELECT 1) TO PROGRAM '/bin/sh {script} {reachable_home}'")
    attacked = (reachable_home / "postgres" / "attacked").read_text()
    assert "done" in attacked  # the attack ran, as the server's user

    connect = cruddur("db", "connect", "--", "-tAc", "select 'the real psql'", env=env)
    ran_as = reachable_home / "postgres" / "ran-as"
    uids = ran_as.read_text().split() if ran_as.exists() else []
    assert "0" not in uids, "root ran a program the postgres user planted"
    assert uids == []  # nor did anyone else: root's state still names the real binaries
    assert connect.returncode == 0, connect.stderr
    assert "the real psql" in connect.stdout


@needs_root
def test_root_writes_nothing_through_links_in_the_server_users_folder(tmp_path) -> None:
    """initdb runs as the server's user; a postgresql.conf it turned into a link must not
    make root append to the link's target."""
    debian = find_bin_dir()
    if not str(debian).startswith("/usr/lib/postgresql/"):
        pytest.skip("needs Debian's PostgreSQL binaries to wrap initdb")
    base = Path(tempfile.mkdtemp(prefix="cruddur-conf-", dir="/tmp"))
    try:
        base.chmod(0o755)
        victim = base / "victim"
        victim.write_text("# a file only root may change\n")
        bin_dir = base / "bin"
        bin_dir.mkdir(mode=0o755)
        for tool in ("pg_ctl", "postgres"):
            (bin_dir / tool).symlink_to(debian / tool)
        wrapper = bin_dir / "initdb"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'{debian}/initdb "$@" || exit 1\n'
            'for arg in "$@"; do case "$arg" in --pgdata=*) data="${arg#--pgdata=}";; esac; done\n'
            f'ln -sf {victim} "$data/postgresql.conf"\n'
        )
        wrapper.chmod(0o755)
        home = base / "home"
        env = {"CRUDDUR_HOME": str(home), "CRUDDUR_PG_BIN": str(bin_dir)}
        cruddur("db", "up", env=env)  # may or may not start on such a config: not the point
        assert victim.read_text() == "# a file only root may change\n"
        cruddur("db", "down", env=env)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@needs_root
def test_no_server_user_and_no_way_to_make_one_is_a_clear_refusal(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(embedded, "SERVER_USER", "cruddur-no-such-user")
    monkeypatch.setattr(embedded, "USERADD", tmp_path / "no-useradd")
    with pytest.raises(EmbeddedError, match="no 'cruddur-no-such-user' user"):
        RunAs.for_current_user()  # never `nobody`, a user other programs share


def test_programs_another_user_could_change_are_not_run(tmp_path) -> None:
    from cruddur.safe_paths import UnsafePath, trusted_program

    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)  # writable by all, not sticky: anyone can swap its files
    program = open_folder / "psql"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    with pytest.raises(UnsafePath, match="can be written by group or others"):
        trusted_program(program)

    writable = tmp_path / "psql"
    writable.write_text("#!/bin/sh\n")
    writable.chmod(0o777)
    with pytest.raises(UnsafePath):
        trusted_program(writable)

    # A link to a trusted program, from a folder anyone can write: the link can be swapped.
    link = open_folder / "link"
    link.symlink_to("/bin/sh")
    with pytest.raises(UnsafePath):
        trusted_program(link)
    assert trusted_program(Path("/bin/sh")) == Path("/bin/sh")


@needs_root
def test_a_program_owned_by_the_server_user_is_not_run_by_root(tmp_path) -> None:
    from cruddur.safe_paths import UnsafePath, trusted_program

    owned = tmp_path / "postgres-owned"
    owned.mkdir(mode=0o755)
    program = owned / "psql"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    user = RunAs.for_current_user()
    os.chown(owned, user.uid, user.gid)
    with pytest.raises(UnsafePath, match="belongs to postgres"):
        trusted_program(program)


@needs_root
def test_a_link_another_user_owns_in_a_sticky_folder_is_not_followed(tmp_path) -> None:
    # A review: in a sticky folder (/tmp) others cannot rename what is in it, but a
    # link's owner can point it elsewhere: root ran a program, and trusted a CA bundle,
    # by way of `nobody`'s link.
    from cruddur.rds_tls import UntrustedFile, read_trusted
    from cruddur.safe_paths import UnsafePath, trusted_program

    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    nobody = pwd.getpwnam("nobody").pw_uid
    theirs = sticky / "bin"
    theirs.symlink_to("/bin")
    os.lchown(theirs, nobody, -1)
    with pytest.raises(UnsafePath, match=f"{theirs} belongs to nobody"):
        trusted_program(theirs / "sh")
    certs = tmp_path / "certs"
    certs.mkdir(mode=0o755)
    (certs / "bundle.pem").write_text("not read\n")
    link = sticky / "certs"
    link.symlink_to(certs)
    os.lchown(link, nobody, -1)
    with pytest.raises(UntrustedFile, match="a link another user owns"):
        read_trusted(link / "bundle.pem", 100)
    os.lchown(link, 0, -1)  # root's own link: taken
    assert read_trusted(link / "bundle.pem", 100) == b"not read\n"
    # A link of root's, but held in a folder another user owns, by way of another link:
    # neither the path as written nor as resolved passes through that folder.
    theirs_folder = tmp_path / "theirs"
    theirs_folder.mkdir(mode=0o755)
    (theirs_folder / "certs").symlink_to(certs)
    os.chown(theirs_folder, nobody, -1)
    (tmp_path / "mine").symlink_to(theirs_folder / "certs")
    with pytest.raises(UntrustedFile, match=f"is in {theirs_folder}, a folder another user owns"):
        read_trusted(tmp_path / "mine" / "bundle.pem", 100)


@needs_root
def test_a_ca_bundle_in_a_folder_a_group_of_others_may_write_is_not_trusted(tmp_path) -> None:
    # A review: a root-owned folder of mode 0775 whose group has other members passed;
    # any of them could rename their own CA into place, and libpq reads the file again
    # at each new connection.
    from cruddur.groups import group_members
    from cruddur.rds_tls import UntrustedFile, read_trusted

    nobody = pwd.getpwnam("nobody")  # its primary group has a member other than root
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o775)
    os.chmod(shared, 0o775)
    (shared / "bundle.pem").write_text("not read\n")
    os.chown(shared, 0, nobody.pw_gid)
    with pytest.raises(UntrustedFile, match=f"is in {shared}, a folder .* a group of others"):
        read_trusted(shared / "bundle.pem", 100)
    os.chmod(shared, 0o1775)  # sticky: members cannot rename root's file
    assert read_trusted(shared / "bundle.pem", 100) == b"not read\n"
    os.chmod(shared, 0o755)
    assert read_trusted(shared / "bundle.pem", 100) == b"not read\n"
    # A group nobody is in (Debian's staff on /usr/local, 2775), and root's own group (a
    # container's user runs in it: OpenShift's chgrp 0, g=u), are taken.
    empty = next(
        (g.gr_gid for g in grp.getgrall() if g.gr_gid and not group_members(g.gr_gid)), None
    )
    for gid in (0, empty) if empty is not None else (0,):
        os.chown(shared, 0, gid)
        os.chmod(shared, 0o2775)
        assert read_trusted(shared / "bundle.pem", 100) == b"not read\n", gid


def test_a_link_by_way_of_a_folder_another_user_could_change_is_not_run(tmp_path) -> None:
    # trusted.../psql -> open/psql -> /bin/sh: only the first link's folders and the
    # file's were checked, and whoever could write `open` swapped the program between
    # the check and the run (root ran their script through `db connect`).
    from cruddur.safe_paths import UnsafePath, trusted_program

    trusted, open_folder = tmp_path / "trusted", tmp_path / "open"
    trusted.mkdir(mode=0o755)
    open_folder.mkdir()
    open_folder.chmod(0o777)  # writable by all, not sticky
    (open_folder / "psql").symlink_to("/bin/sh")
    (trusted / "psql").symlink_to(open_folder / "psql")
    with pytest.raises(UnsafePath, match="can be written by group or others"):
        trusted_program(trusted / "psql")
    (trusted / "sh").symlink_to("/bin/sh")  # by way of trusted folders only: run
    assert trusted_program(trusted / "sh") == trusted / "sh"
    # A folder's link on the way, held in the open folder: its target can be swapped too.
    (open_folder / "bin").symlink_to("/bin")
    (trusted / "bin").symlink_to(open_folder / "bin")
    with pytest.raises(UnsafePath, match="can be written by group or others"):
        trusted_program(trusted / "bin" / "sh")


def test_a_relative_link_reached_through_a_folders_link_is_followed_as_the_kernel_does(
    tmp_path,
) -> None:
    # Debian's merged /usr: /bin -> usr/bin, and /usr/bin/psql -> ../share/…/pg_wrapper.
    # The link's `..` was taken from its name (/bin/..), not its real folder (/usr/bin):
    # `db connect` with /bin first on PATH died on "unexpected FileNotFoundError".
    from cruddur.safe_paths import trusted_program

    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "share").mkdir()
    (root / "bin").symlink_to("usr/bin")
    (root / "usr" / "share" / "wrapper").symlink_to("/bin/sh")
    (root / "usr" / "bin" / "psql").symlink_to("../share/wrapper")
    assert trusted_program(root / "bin" / "psql") == root / "bin" / "psql"


def test_state_kept_by_an_earlier_version_is_taken_over(tmp_path) -> None:
    home = tmp_path / "home"
    env = {"CRUDDUR_HOME": str(home)}
    try:
        assert cruddur("db", "up", env=env).returncode == 0
        assert cruddur("db", "down", env=env).returncode == 0
        state = home / "postgres.json"
        saved = json.loads(state.read_text())
        # Where the earlier version kept it: inside the cluster's folder.
        os.replace(state, home / "postgres" / "server.json")
        up = cruddur("db", "up", env=env)
        assert up.returncode == 0, up.stderr
        assert json.loads(state.read_text()) == saved
        assert not (home / "postgres" / "server.json").exists()
        info = state.stat()
        assert info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) == 0o600
        assert stat.S_IMODE(home.stat().st_mode) & 0o022 == 0
    finally:
        cruddur("db", "down", env=env)
        if (home / "postgres.json").is_file():
            cluster = Path(json.loads((home / "postgres.json").read_text())["cluster_dir"])
            if cluster.parent.parent == embedded.SHARED_ROOT:
                shutil.rmtree(cluster.parent, ignore_errors=True)


@needs_root
def test_the_cluster_folder_belongs_to_the_server_user_and_root_state_to_root(
    reachable_home,
) -> None:
    env = {"CRUDDUR_HOME": str(reachable_home)}
    assert cruddur("db", "up", env=env).returncode == 0
    server_user = RunAs.for_current_user()
    assert (reachable_home / "postgres").stat().st_uid == server_user.uid
    for path in (reachable_home, reachable_home / "postgres.json"):
        info = path.lstat()
        assert info.st_uid == 0 and info.st_mode & 0o022 == 0
    as_server_user = subprocess.run(
        ["touch", str(reachable_home / "planted")],
        user=server_user.uid,
        group=server_user.gid,
        extra_groups=[],
        capture_output=True,
        check=False,
    )
    assert as_server_user.returncode != 0  # it cannot add anything beside root's state


@needs_root
@pytest.mark.parametrize(
    ("name", "planted"),
    [("postmaster.pid", "pipe"), ("postmaster.pid", "/dev/zero"), ("postmaster.opts", "pipe")],
)
def test_a_planted_pid_file_is_refused_not_read_for_ever(reachable_home, name, planted) -> None:
    # A database superuser swapped postmaster.pid (COPY … TO PROGRAM, as the server's
    # user): root's `db status` hung on a pipe, or read /dev/zero until memory ran out.
    # postmaster.opts, which pg_ctl status reads too: 180 s each.
    env = {"CRUDDUR_HOME": str(reachable_home)}
    assert cruddur("db", "up", env=env).returncode == 0
    superuser = EmbeddedPostgres(reachable_home).url("postgres")
    swap = f"mkfifo {name}" if planted == "pipe" else f"ln -s {planted} {name}"
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute(f"COPY (SELECT 1) TO PROGRAM 'mv {name} pm.real; {swap}'")
    data = reachable_home / "postgres" / "data"
    try:
        for verb in ("status", "up", "down"):
            refused = subprocess.run(
                [ROOT / ".venv/bin/cruddur", "db", verb], env={**os.environ, **env},
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            said = " ".join(refused.stderr.split())
            assert refused.returncode == 1, said
            assert f"{data}/{name} is not a regular file" in said
            assert "unexpected" not in said
    finally:  # the server's own file back, so that the fixture stops it
        (data / name).unlink()
        (data / "pm.real").rename(data / name)


@needs_root
def test_a_data_folder_the_server_user_cannot_reach_is_an_error_not_a_stopped_server(
    reachable_home,
) -> None:
    # pg_ctl's "cannot access the data folder" (status 4) was taken for "not running":
    # `db up` moved the port of the server still running, then failed to start another.
    env = {"CRUDDUR_HOME": str(reachable_home)}
    assert cruddur("db", "up", env=env).returncode == 0
    port = json.loads((reachable_home / "postgres.json").read_text())["port"]
    base = reachable_home.parent
    base.chmod(0o700)
    try:
        refused = cruddur("db", "up", env=env)
    finally:
        base.chmod(0o755)
    assert refused.returncode == 1
    assert "cannot tell whether the embedded PostgreSQL runs" in refused.stderr
    assert json.loads((reachable_home / "postgres.json").read_text())["port"] == port
    assert f"127.0.0.1:{port}" in cruddur("db", "status", env=env).stdout


@needs_root
def test_a_private_home_moved_while_its_server_runs_says_how_to_stop_that_server() -> None:
    # Out of the server user's reach, the cluster lives under /var/lib/cruddur, named by
    # the home's path: moved, the home no longer reaches it, and the advice ("remove
    # postgres.json to start afresh") left its server running, stopped by nothing.
    base = Path(tempfile.mkdtemp(prefix="cruddur-root-state-", dir="/tmp"))  # 0700
    old, new = base / "old", base / "new"
    try:
        assert cruddur("db", "up", env={"CRUDDUR_HOME": str(old)}).returncode == 0
        cluster = Path(json.loads((old / "postgres.json").read_text())["cluster_dir"])
        pid = int((cluster / "data" / "postmaster.pid").read_text().split()[0])
        old.rename(new)
        refused = cruddur("db", "down", env={"CRUDDUR_HOME": str(new)})
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 1, said
        assert f"Its server still runs (pid {pid})" in said and f"`kill -INT {pid}`" in said
        os.kill(pid, 2)  # as advised
        for _ in range(100):
            if not (cluster / "data" / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        assert not (cluster / "data" / "postmaster.pid").exists()
        still = cruddur("db", "status", env={"CRUDDUR_HOME": str(new)})
        assert "still runs" not in still.stderr
    finally:
        if new.exists():
            new.rename(old)
        cruddur("db", "down", env={"CRUDDUR_HOME": str(old)})
        state = old / "postgres.json"
        if state.is_file():
            shutil.rmtree(Path(json.loads(state.read_text())["cluster_dir"]).parent, True)
        shutil.rmtree(base, ignore_errors=True)
