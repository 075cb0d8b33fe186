"""A .env file beside the command is read, as the flask CLI and dbmate read it; a
variable already set in the environment wins over the file."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT, cli, run

CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"
# Port 1: nothing listens, so `db status` names the URL and fails at once.
FROM_FILE = "postgresql://dotenv@127.0.0.1:1/from_the_file"
FROM_ENV = "postgresql://dotenv@127.0.0.1:1/from_the_environment"


def test_dotenv_sets_what_the_environment_does_not(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"# settings\nCONNECTION_URL={FROM_FILE}\n")
    below = tmp_path / "src"  # found from a folder below too, as flask finds it
    below.mkdir()
    read = run(CRUDDUR, "db", "status", cwd=below)
    assert f"database  {FROM_FILE}" in read.stdout, read.stderr
    assert read.returncode == 1  # unreachable, as it should be

    kept = cli(CRUDDUR, "db", "status", cwd=below, env={"CONNECTION_URL": FROM_ENV})
    assert f"database  {FROM_ENV}" in kept.stdout, kept.stderr
    assert "from_the_file" not in kept.stdout + kept.stderr

    # Blank in the environment is no setting: the file's fills it (a review: it hid the
    # file's, and the command went to the embedded server).
    blank = cli(CRUDDUR, "db", "status", cwd=below, env={"CONNECTION_URL": " "})
    assert f"database  {FROM_FILE}" in blank.stdout, blank.stderr


def test_a_line_dotenv_cannot_parse_stops_the_command_instead_of_being_skipped(
    tmp_path: Path,
) -> None:
    # python-dotenv skipped the line with a warning, and the commands went to the
    # embedded server instead of CONNECTION_URL's database.
    secret = "s3cret-in-the-file"
    (tmp_path / ".env").write_text(
        f'# settings\nexport CONNECTION_URL="postgresql://u:{secret}@127.0.0.1:1/from_the_file\n'
    )
    refused = cli(CRUDDUR, "db", "status", cwd=tmp_path, env={"CRUDDUR_HOME": str(tmp_path)})
    assert refused.returncode == 1
    assert refused.stderr == (
        f"error: {tmp_path / '.env'}: line 2 not NAME=value (an unclosed quote, or a value "
        "on a line of its own?)\n"
        "hint: fix it or remove it; the environment's own variables need no file\n"
    )
    assert secret not in refused.stdout + refused.stderr
    assert not (tmp_path / "postgres").exists()  # no embedded server was started
    # --help still helps, and says what is wrong.
    helped = cli(CRUDDUR, "db", "status", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and re.search(r"Usage: \S*cruddur db status", helped.stdout)
    assert "line 2 not NAME=value" in helped.stderr


def test_a_value_wrapped_onto_a_line_of_its_own_stops_the_command(tmp_path: Path) -> None:
    # python-dotenv read the second line as a name without a value and skipped it: the
    # command went to the embedded server instead of CONNECTION_URL's database.
    (tmp_path / ".env").write_text(
        "CONNECTION_URL=\npostgresql://u:s3cret@127.0.0.1:1/x\nBARE\nexport ALSO_BARE\n"
    )
    refused = cli(CRUDDUR, "db", "status", cwd=tmp_path, env={"CRUDDUR_HOME": str(tmp_path)})
    assert refused.returncode == 1
    # A bare name (dotenv's own syntax for a name without a value) is not refused.
    assert refused.stderr.startswith(f"error: {tmp_path / '.env'}: line 2 not NAME=value")
    assert "s3cret" not in refused.stderr
    assert not (tmp_path / "postgres").exists()


def test_a_nul_byte_in_the_dotenv_is_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(
        b"# a NUL in a comment \x00 sets nothing\nCONNECTION_URL=postgresql://x@127.0.0.1:1/a\x00b\n"
    )
    refused = cli(CRUDDUR, "db", "status", cwd=tmp_path, env={"CRUDDUR_HOME": str(tmp_path)})
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: {tmp_path / '.env'}: line 2 has a NUL byte\n")


def test_bare_names_in_the_dotenv_are_taken(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"BARE\nexport ALSO_BARE\nCONNECTION_URL={FROM_FILE}\n")
    read = cli(CRUDDUR, "db", "status", cwd=tmp_path)
    assert f"database  {FROM_FILE}" in read.stdout, read.stderr


def test_a_dotenv_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"CONNECTION_URL=postgresql://x@127.0.0.1:1/caf\xe9\n")
    refused = cli(CRUDDUR, "db", "status", cwd=tmp_path, env={"CRUDDUR_HOME": str(tmp_path)})
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: {tmp_path / '.env'} is not UTF-8 text\n")


def test_a_dotenv_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"CONNECTION_URL={FROM_FILE}\n", encoding="utf-8-sig")
    read = cli(CRUDDUR, "db", "status", cwd=tmp_path)
    assert f"database  {FROM_FILE}" in read.stdout, read.stderr


def test_a_dotenv_another_user_could_have_written_is_refused(tmp_path: Path) -> None:
    # Looked for in every folder up to /: one planted in /tmp (or any folder others may
    # write) set the sign-in's keys, the database or LD_PRELOAD for psql and granian.
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"CONNECTION_URL={FROM_FILE}\n")
    cases = [(0o666, None, "can be written by others")]
    if os.geteuid() == 0:
        cases.append((0o644, pwd.getpwnam("nobody").pw_uid, "belongs to nobody, not to you"))
    for mode, owner, complaint in cases:
        os.chmod(dotenv, mode)
        if owner is not None:
            os.chown(dotenv, owner, -1)
        refused = cli(CRUDDUR, "db", "status", cwd=tmp_path, env={"CRUDDUR_HOME": str(tmp_path)})
        assert refused.returncode == 1
        assert refused.stderr.startswith(f"error: {dotenv} {complaint}"), refused.stderr
        assert "from_the_file" not in refused.stdout
        assert not (tmp_path / "postgres").exists()  # nor anything else done
        os.chown(dotenv, os.geteuid(), -1)
    if os.geteuid() == 0:  # a link another user made, to a file of yours
        own = tmp_path / "prod.env"
        own.write_text(f"CONNECTION_URL={FROM_FILE}\n")
        dotenv.unlink()
        dotenv.symlink_to(own)
        nobody = pwd.getpwnam("nobody").pw_uid
        os.lchown(dotenv, nobody, -1)
        refused = cli(CRUDDUR, "db", "status", cwd=tmp_path, env={"CRUDDUR_HOME": str(tmp_path)})
        assert refused.returncode == 1
        assert refused.stderr.startswith(f"error: {dotenv} is a link made by nobody"), (
            refused.stderr
        )
        os.lchown(dotenv, 0, -1)  # your own link to your own file is fine
        read = run(CRUDDUR, "db", "status", cwd=tmp_path)
        assert f"database  {FROM_FILE}" in read.stdout, read.stderr
        dotenv.unlink()
        dotenv.write_text(f"CONNECTION_URL={FROM_FILE}\n")
    # Writable by your own group only (a umask of 002) is yours.
    os.chmod(dotenv, 0o664)
    os.chown(dotenv, -1, os.getegid())
    read = run(CRUDDUR, "db", "status", cwd=tmp_path)
    assert f"database  {FROM_FILE}" in read.stdout, read.stderr


def test_a_dotenv_swapped_for_a_link_as_it_is_opened_is_refused(
    tmp_path: Path, monkeypatch
) -> None:
    # Checked, then opened by name: another user owning the .env (in /tmp) could swap in
    # a link to one of your files between the two, and back; the file read was yours.
    from cruddur.cli import _read_own_file
    from cruddur.errors import Problem

    victim = tmp_path / "prod.env"
    victim.write_text("CONNECTION_URL=postgresql://u:secret@prod/x\n")
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"CONNECTION_URL={FROM_FILE}\n")
    real_open = os.open

    def swapped_while_opened(path, flags, *args, **kwargs):
        if str(path) != str(dotenv):
            return real_open(path, flags, *args, **kwargs)
        kept = tmp_path / "kept"
        os.rename(dotenv, kept)
        os.symlink(victim, dotenv)
        try:
            return real_open(path, flags, *args, **kwargs)
        finally:
            os.unlink(dotenv)
            os.rename(kept, dotenv)

    monkeypatch.setattr(os, "open", swapped_while_opened)
    with pytest.raises(Problem, match="changed while it was being read"):
        _read_own_file(dotenv)


def test_a_dotenv_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    # Opened for reading, a FIFO waited for a writer before the "not a regular file"
    # check could run: the command hung for ever.
    dotenv = tmp_path / ".env"
    os.mkfifo(dotenv)
    below = tmp_path / "sub"
    below.mkdir()
    env = {**os.environ, "NO_COLOR": "1", "CRUDDUR_HOME": str(tmp_path)}
    refused = subprocess.run(
        [str(CRUDDUR), "db", "status"],
        cwd=below,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: {dotenv} is not a regular file\n"), refused.stderr


def _groups_by_members() -> dict[int, set[int]]:
    """Each group's members' uids: those it lists and those whose primary group it is."""
    members = {group.gr_gid: set() for group in grp.getgrall()}
    for group in grp.getgrall():
        for name in group.gr_mem:
            with contextlib.suppress(KeyError):
                members[group.gr_gid].add(pwd.getpwnam(name).pw_uid)
    for user in pwd.getpwall():
        members.setdefault(user.pw_gid, set()).add(user.pw_uid)
    return members


@pytest.mark.skipif(os.geteuid() != 0, reason="gives the .env to other users")
def test_a_group_writable_dotenv_is_yours_only_in_a_group_of_yours_alone(
    tmp_path: Path, monkeypatch
) -> None:
    # The group-write check compared the file's group with the process's gid: a .env
    # writable by a shared group (every member could write it) passed when it was your
    # primary group, and one in a group of yours alone failed when it was not. Now, as
    # OpenSSH judges its configs: group-writable passes only if you are its only member.
    from cruddur.cli import _read_own_file
    from cruddur.errors import Problem

    members = _groups_by_members()
    alone = next(
        (
            (gid, uid)
            for gid, uids in members.items()
            for uid in uids
            if uids == {uid} and uid != 0 and pwd.getpwuid(uid).pw_gid != gid
        ),
        None,
    )
    shared = next(((gid, min(uids)) for gid, uids in members.items() if len(uids) > 1), None)
    if alone is None or shared is None:
        pytest.skip("needs a group with one member (not as primary) and one with several")
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"CONNECTION_URL={FROM_FILE}\n")
    os.chmod(dotenv, 0o664)

    # As the user, in that user's own primary group; the file's group is the other.
    gid, uid = alone
    os.chown(dotenv, uid, gid)
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    monkeypatch.setattr(os, "getegid", lambda: pwd.getpwuid(uid).pw_gid)
    assert _read_own_file(dotenv) == f"CONNECTION_URL={FROM_FILE}\n".encode()

    # As a member of a shared group, that group the process's own.
    gid, uid = shared
    os.chown(dotenv, uid, gid)
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    monkeypatch.setattr(os, "getegid", lambda: gid)
    name = grp.getgrgid(gid).gr_name
    with pytest.raises(Problem, match=f"can be written by group {name}, which is not yours"):
        _read_own_file(dotenv)

    # A user and group no file here knows (a container's --user 4242:4242): the group
    # is the process's own, and nobody else is known to be in it.
    unknown = next(n for n in range(4242, 5000) if n not in members and _no_user(n))
    os.chown(dotenv, unknown, unknown)
    monkeypatch.setattr(os, "geteuid", lambda: unknown)
    monkeypatch.setattr(os, "getegid", lambda: unknown)
    assert _read_own_file(dotenv) == f"CONNECTION_URL={FROM_FILE}\n".encode()
    monkeypatch.setattr(os, "getegid", lambda: unknown + 1)  # not your group: refused
    with pytest.raises(Problem, match="which is not yours"):
        _read_own_file(dotenv)


def _no_user(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return True
    return False


@pytest.mark.skipif(os.geteuid() != 0, reason="gives a .env to another user")
def test_a_dotenv_above_that_another_user_could_have_written_is_skipped(tmp_path: Path) -> None:
    # One planted above the folder (another user's /tmp/.env, a shared /srv/projects/.env)
    # stopped every command run anywhere below it. Now it is passed over with a warning,
    # and the search goes on up; in the folder the command runs in it is still refused.
    (tmp_path / ".env").write_text(f"CONNECTION_URL={FROM_FILE}\n")  # yours, further up
    shared = tmp_path / "shared"
    checkout = shared / "checkout"
    checkout.mkdir(parents=True)
    planted = shared / ".env"
    planted.write_text("CONNECTION_URL=postgresql://x@127.0.0.1:1/planted\n")
    nobody = pwd.getpwnam("nobody").pw_uid
    for owner, mode, why in [
        (nobody, 0o600, "belongs to nobody, not to you"),
        (os.geteuid(), 0o666, "can be written by others"),
    ]:
        os.chown(planted, owner, -1)
        os.chmod(planted, mode)
        read = cli(CRUDDUR, "db", "status", cwd=checkout)
        assert f"database  {FROM_FILE}" in read.stdout, read.stderr
        assert "planted" not in read.stdout
        warning = f"{planted} {why}"
        assert read.stderr.count(warning) == 1 and "skipped" in read.stderr, read.stderr
        refused = cli(CRUDDUR, "db", "status", cwd=shared)  # in its own folder: refused
        assert refused.returncode == 1
        assert refused.stderr.startswith(f"error: {warning}"), refused.stderr


def test_env_example_lists_every_setting_the_readme_tables_name() -> None:
    # README: ".env.example lists them". Five settings added since were only in the tables.
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    named = {
        name
        for line in section.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])
    }
    assert len(named) > 40  # the tables were found
    example = (ROOT / ".env.example").read_text()
    assert sorted(name for name in named if name not in example) == []


def _a_checkout_of_its_own(tmp_path: Path) -> Path:
    """A copy of the scripts beside a link to this checkout's .venv: bin/lib/command finds
    its checkout by where it is, so this one has a .env of its own to read."""
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "bin", checkout / "bin", symlinks=True)
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    return checkout


def _script(path: Path, *args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CONNECTION_URL", "PROD_CONNECTION_URL", "CRUDDUR_ENV_FILE")
    }
    env.update(NO_COLOR="1", CRUDDUR_HOME=str(home))
    return subprocess.run(
        [str(path), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def test_the_scripts_read_their_checkouts_dotenv_from_any_folder(tmp_path: Path) -> None:
    # Run from another project's folder, the scripts read that folder's .env: bin/db-setup
    # dropped and rebuilt the other project's database without a question. From a folder
    # with no .env, they went to the embedded server, not the checkout's database.
    checkout = _a_checkout_of_its_own(tmp_path)
    ours = "postgresql://dotenv@127.0.0.1:1/the_checkouts"
    (checkout / ".env").write_text(f"CONNECTION_URL={ours}\n")
    other, empty, home = tmp_path / "otherproj", tmp_path / "empty", tmp_path / "home"
    for folder in (other, empty, home):
        folder.mkdir()
    (other / ".env").write_text("CONNECTION_URL=postgresql://dotenv@127.0.0.1:1/other_project\n")
    for folder in (other, empty):
        ran = _script(checkout / "bin" / "db-migrations", cwd=folder, home=home)
        assert ran.returncode == 1  # nothing listens on port 1
        assert f"settings: {checkout / '.env'} and the environment\n" in ran.stderr, ran.stderr
        assert f"database: {ours} (local)\n" in ran.stderr
        assert "other_project" not in ran.stdout + ran.stderr
    status = _script(checkout / "bin" / "lib" / "command", "db", "status", "db-status",
                     cwd=other, home=home)  # fmt: skip
    settings = f"settings  {checkout / '.env'} and the environment\ndatabase  {ours} (local)\n"
    assert status.stdout.startswith(settings), status.stdout

    # A checkout without a .env: none at all, not the folder's (status starts no server).
    (checkout / ".env").unlink()
    status = _script(checkout / "bin" / "lib" / "command", "db", "status", "db-status",
                     cwd=other, home=home)  # fmt: skip
    assert status.stdout.startswith("embedded  not running"), status.stdout + status.stderr
    assert "other_project" not in status.stdout + status.stderr
    # The cruddur command itself still reads the folder's, as documented.
    direct = _script(checkout / ".venv" / "bin" / "cruddur", "db", "status", cwd=other, home=home)
    assert f"settings  {other / '.env'} and the environment\n" in direct.stdout
    assert "database  postgresql://dotenv@127.0.0.1:1/other_project (local)" in direct.stdout


def test_a_dotenv_file_named_by_the_environment_is_read_and_must_exist(tmp_path: Path) -> None:
    elsewhere = tmp_path / "settings.env"
    elsewhere.write_text(f"CONNECTION_URL={FROM_FILE}\n")
    (tmp_path / ".env").write_text(f"CONNECTION_URL={FROM_ENV}\n")  # passed over
    read = cli(CRUDDUR, "db", "status", cwd=tmp_path, env={"CRUDDUR_ENV_FILE": str(elsewhere)})
    assert f"database  {FROM_FILE}" in read.stdout, read.stderr
    missing = tmp_path / "nowhere.env"
    refused = cli(CRUDDUR, "db", "status", cwd=tmp_path, env={"CRUDDUR_ENV_FILE": str(missing)})
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: CRUDDUR_ENV_FILE names {missing}, which does not")
    os.chmod(elsewhere, 0o666)  # one others could write is refused, as in this folder
    refused = cli(CRUDDUR, "db", "status", cwd=tmp_path, env={"CRUDDUR_ENV_FILE": str(elsewhere)})
    assert refused.stderr.startswith(f"error: {elsewhere} can be written by others")
    # /dev/null reads as no settings; a folder is not a file. (Both were refused as
    # writable by others, with the advice to remove them or chmod go-w them.)
    none = cli(CRUDDUR, "db", "status", cwd=tmp_path, env={"CRUDDUR_ENV_FILE": os.devnull})
    assert f"database  {FROM_ENV}" not in none.stdout and "can be written" not in none.stderr
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)  # what a shell's <(…) names
    for folder in ("/tmp", str(tmp_path), str(pipe)):
        refused = cli(CRUDDUR, "db", "status", cwd=tmp_path, env={"CRUDDUR_ENV_FILE": folder})
        assert refused.returncode == 1
        assert refused.stderr.startswith(f"error: CRUDDUR_ENV_FILE names {folder}, which is not a")
        assert "chmod" not in refused.stderr and "remove" not in refused.stderr
