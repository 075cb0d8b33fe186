"""Files under CRUDDUR_HOME are opened without following links, and state another user
could have written (not yours, or writable by group or others) is refused."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
from helpers import ROOT, cli, run

from cruddur.config import Settings

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="plants files as another user (nobody): needs to run as root"
)


def cruddur(*args: str, env: dict[str, str]):
    return run(ROOT / ".venv" / "bin" / "cruddur", *args, env=env)


def _chown_tree(path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, gid)


def test_a_planted_lock_link_is_refused_and_its_target_untouched(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("a file the lock must not truncate\n")
    (home / "postgres.lock").symlink_to(victim)
    env = {"CRUDDUR_HOME": str(home)}
    try:
        up = cruddur("db", "up", env=env)
        assert victim.read_text() == "a file the lock must not truncate\n"
        assert up.returncode == 1
        assert "postgres.lock is a symbolic link" in up.stderr
        assert "Traceback" not in up.stderr
    finally:
        (home / "postgres.lock").unlink()
        cruddur("db", "down", env=env)


def test_a_state_folder_others_can_write_is_refused(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    result = cruddur("db", "up", env={"CRUDDUR_HOME": str(home)})
    assert result.returncode == 1
    assert "can be written by group or others" in result.stderr
    assert not (home / "postgres").exists()


def test_a_shared_folder_as_the_state_folder_is_refused_without_chmod_advice(tmp_path) -> None:
    # CRUDDUR_HOME=/tmp was told `chmod go-w /tmp`: for root, advice that breaks /tmp.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    result = cruddur("db", "up", env={"CRUDDUR_HOME": str(shared)})
    assert result.returncode == 1
    assert "is a folder shared with other users" in result.stderr
    assert "chmod" not in result.stderr and "folder of your own" in result.stderr


@needs_root
def test_a_state_folder_of_another_user_is_refused(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)  # nobody
    result = cruddur("db", "status", env={"CRUDDUR_HOME": str(home)})
    assert result.returncode == 1
    assert "belongs to nobody, not to you" in result.stderr
    # A review: as root in a user's checkout (sudo), the advice was to remove their state.
    said = " ".join(result.stderr.split())
    assert "run cruddur as nobody (not with sudo)" in said and "remove it" not in said, said


def _planted_keys(home) -> None:
    """An attacker's dev key pair in the home: they keep the private half."""
    from cruddur.dev_keys import DevKeys

    DevKeys(home).ensure()
    shutil.copy(home / "auth" / "dev-private-key.pem", home.parent / "attackers-copy.pem")


@needs_root
def test_dev_keys_planted_by_another_user_are_refused(tmp_path, seeded_db) -> None:
    from cruddur.api import create_app

    home = tmp_path / "shared-home"
    _planted_keys(home)
    _chown_tree(home / "auth", 65534, 65534)  # written by nobody
    settings = Settings.from_env({"CRUDDUR_HOME": str(home), "CONNECTION_URL": seeded_db})
    with pytest.raises(Exception, match="belongs to nobody"):
        create_app(settings)
    minted = cruddur("dev", "token", "--sub", "x", env={"CRUDDUR_HOME": str(home)})
    assert minted.returncode == 1 and "belongs to nobody" in minted.stderr


def test_dev_keys_others_could_have_written_are_refused(tmp_path, seeded_db) -> None:
    from cruddur.api import create_app

    home = tmp_path / "shared-home"
    _planted_keys(home)
    (home / "auth").chmod(0o777)
    settings = Settings.from_env({"CRUDDUR_HOME": str(home), "CONNECTION_URL": seeded_db})
    with pytest.raises(Exception, match="can be written by group or others"):
        create_app(settings)
    (home / "auth").chmod(0o700)
    (home / "auth" / "jwks.json").chmod(0o666)
    with pytest.raises(Exception, match="can be written by group or others"):
        create_app(settings)
    (home / "auth" / "jwks.json").chmod(0o644)
    app = create_app(settings)  # the same keys, now only yours: accepted
    app.extensions["cruddur.db"].close()


def test_a_dev_key_that_is_a_link_is_refused(tmp_path, seeded_db) -> None:
    from cruddur.api import create_app

    home = tmp_path / "home"
    _planted_keys(home)
    elsewhere = tmp_path / "jwks-elsewhere.json"
    os.replace(home / "auth" / "jwks.json", elsewhere)
    (home / "auth" / "jwks.json").symlink_to(elsewhere)
    settings = Settings.from_env({"CRUDDUR_HOME": str(home), "CONNECTION_URL": seeded_db})
    with pytest.raises(Exception, match="symbolic link"):
        create_app(settings)


@pytest.mark.skipif(os.geteuid() != 0, reason="the shared state folders are root's")
def test_the_shared_state_folders_are_0755_whatever_the_umask(tmp_path, monkeypatch) -> None:
    # Made under root's umask 027 they were 0750: the server's user could not reach its
    # data (initdb: Permission denied), and a later run with umask 022 kept them so.
    from cruddur.embedded import _root_owned_folder

    before = os.umask(0o027)
    try:
        made = _root_owned_folder(tmp_path / "cruddur" / "data-x")
    finally:
        os.umask(before)
    assert [oct(p.stat().st_mode & 0o777) for p in (made.parent, made)] == [oct(0o755)] * 2
    os.chmod(made, 0o750)  # as an earlier version left it, under the shared root
    monkeypatch.setattr("cruddur.embedded.SHARED_ROOT", made.parent)
    _root_owned_folder(made)
    assert oct(made.stat().st_mode & 0o777) == oct(0o755)
    # A folder above the shared root (/var/lib) is the system's: its mode is left alone.
    system = tmp_path / "lib"
    system.mkdir(mode=0o711)
    os.chmod(system, 0o711)
    monkeypatch.setattr("cruddur.embedded.SHARED_ROOT", system / "cruddur")
    _root_owned_folder(system / "cruddur")
    assert oct(system.stat().st_mode & 0o777) == oct(0o711)


def test_a_home_that_cannot_be_made_is_a_one_line_error(tmp_path) -> None:
    # A file on the way to CRUDDUR_HOME was "unexpected NotADirectoryError".
    (tmp_path / "afile").write_text("")
    env = {
        "CRUDDUR_HOME": str(tmp_path / "afile" / "home"),
        "CONNECTION_URL": "postgresql://x@127.0.0.1:1/x",
    }
    result = run(ROOT / ".venv/bin/cruddur", "dev", "token", "--sub", "abc", env=env)
    assert result.returncode == 1
    assert f"cannot make the folder {tmp_path / 'afile' / 'home'}: Not a directory" in result.stderr
    assert "unexpected" not in result.stderr


@pytest.mark.parametrize("verb", [("db", "up"), ("serve", "--port", "1")])
def test_a_home_you_may_not_write_is_a_one_line_error(tmp_path, monkeypatch, verb) -> None:
    # A home there but not writable (mode 0555 as a user, a read-only mount of the
    # checkout as root) was "unexpected PermissionError" for its lock files. As root the
    # permission is not checked, so the refusal is made here, for the lock files only.
    real_open = os.open

    def refused(path, flags, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refused)
    env = {"CRUDDUR_HOME": str(tmp_path / "home")}
    result = cli(ROOT / ".venv/bin/cruddur", *verb, env=env)
    assert result.returncode == 1
    assert "unexpected" not in result.stderr, result.stderr
    assert f"cannot open {tmp_path / 'home'}/" in result.stderr
    assert "Permission denied; set CRUDDUR_HOME to a folder of your own you can write" in (
        result.stderr
    )


def test_dev_token_with_an_empty_handle_says_so(tmp_path) -> None:
    # It said "give exactly one of --handle or --sub", to someone who had given one.
    env = {"CRUDDUR_HOME": str(tmp_path), "CONNECTION_URL": "postgresql://x@127.0.0.1:1/x"}
    result = run(ROOT / ".venv/bin/cruddur", "dev", "token", "--handle", "", env=env)
    assert result.returncode == 2
    assert "--handle is empty: give a user's handle" in result.stderr
