"""State only you can change, and programs only root (or you) can change.

cruddur often runs as root (containers, CI). Root must never act on something another
user could have planted or swapped: a lock file that is a symbolic link (opening it for
writing would truncate the link's target), dev keys someone else wrote into a shared
home, a state file in a folder the database server's user owns, a program in a folder
others can write. So files under CRUDDUR_HOME are opened without following links and
must belong to the current user with no write access for group or others, and a program
is run only when no one but root or the current user can change it or a folder above it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from cruddur.config import ConfigError
from cruddur.path_walk import TooManyLinks, link_others_own, walk

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(ConfigError):
    """A file or folder cruddur must not trust; the message says which and what to do."""


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _check_mine(path: Path, info: os.stat_result) -> None:
    me = os.geteuid()
    if info.st_uid != me:
        # Not "remove it": `sudo cruddur …` in a checkout finds its owner's own state
        # (a live cluster among it), which that advice would have root delete.
        owner = user_name(info.st_uid)
        raise UnsafePath(
            f"{path} belongs to {owner}, not to you ({user_name(me)}): cruddur does not "
            f"trust state another user could have written; run cruddur as {owner} (not "
            "with sudo), or set CRUDDUR_HOME to a folder of your own"
        )
    if info.st_mode & 0o022:
        if stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX:
            # /tmp and its kind: shared on purpose; chmod go-w would break it for everyone.
            raise UnsafePath(
                f"{path} is a folder shared with other users (sticky, writable by all): set "
                "CRUDDUR_HOME to a folder of your own inside it, or elsewhere"
            )
        raise UnsafePath(
            f"{path} can be written by group or others: `chmod go-w {path}` (or remove it)"
        )


def private_folder(path: Path, mode: int = 0o700) -> Path:
    """Make the folder (with `mode`), or check the one there: a real folder, not a
    link, owned by the current user and not writable by group or others."""
    # Each folder made here gets `mode` itself: mkdir's passes through the umask (under
    # 027 a home the server's user must cross came out 0750, under 002 a folder this
    # check then refused as writable), and mkdir(parents=True) gives parents the default.
    missing: list[Path] = []
    folder = path
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            continue  # made meanwhile: checked below if it is `path`
        except OSError as exc:  # a file on the way, a folder you may not write, /sys …
            raise UnsafePath(f"cannot make the folder {folder}: {exc.strerror or exc}") from None
        # Through a descriptor that refuses a link: never the mode of what a link put in
        # the folder's place since would point at.
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{path} should be a folder but is a link or a file: remove it")
    _check_mine(path, info)
    return path


def check_private_folder(path: Path) -> None:
    """`private_folder`'s checks on a folder that may not exist yet (then nothing to check)."""
    with contextlib.suppress(FileNotFoundError):
        try:
            info = path.lstat()
        except NotADirectoryError:  # "unexpected NotADirectoryError" from `db status`
            raise UnsafePath(
                f"{path} cannot be a folder: part of its path is a file, not a folder"
            ) from None
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafePath(f"{path} should be a folder but is a link or a file: remove it")
        _check_mine(path, info)


def open_private(path: Path, flags: int, mode: int = 0o600) -> int:
    """os.open without following a link, then the file's own checks; a file descriptor."""
    try:
        # O_NONBLOCK: a pipe planted there would hold the open for ever (it is refused
        # below, as any file that is not a regular one); on a regular file it does nothing.
        fd = os.open(path, flags | _NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(
                f"{path} is a symbolic link: cruddur does not follow links in its state; remove it"
            ) from None
        if exc.errno in NOT_YOURS_TO_WRITE:
            raise not_writable(path, exc) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{path} is not a regular file: remove it")
        _check_mine(path, info)
    except BaseException:
        os.close(fd)
        raise
    return fd


# A home you may not write (mode 0555, a read-only mount of the checkout): said in one
# line, not as an "unexpected PermissionError".
NOT_YOURS_TO_WRITE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def not_writable(path: Path, exc: OSError) -> UnsafePath:
    return UnsafePath(
        f"cannot open {path}: {exc.strerror}; set CRUDDUR_HOME to a folder of your own "
        "you can write"
    )


def read_private(path: Path) -> bytes:
    """The file's bytes, after the checks of `open_private`."""
    with os.fdopen(open_private(path, os.O_RDONLY), "rb") as handle:
        return handle.read()


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write beside and rename, so a crash never leaves half a file and a link planted
    at `path` is replaced, never followed."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def check_writable(path: Path) -> None:
    """That `write_private` could write `path`, without writing it: the file, if there,
    opened as a merge reads it (its checks of `open_private`; its own mode does not
    matter, the write replaces it), and a file made and removed beside it, as the
    write's own would be."""
    with contextlib.suppress(FileNotFoundError):
        os.close(open_private(path, os.O_RDONLY))
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600))
    os.unlink(partial)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (made if missing, never truncated, never a link)."""
    fd = open_private(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _others_can_change(info: os.stat_result, *, folder: bool) -> str | None:
    if info.st_uid not in (0, os.geteuid()):
        return f"belongs to {user_name(info.st_uid)}"
    if info.st_mode & 0o022 and not (folder and info.st_mode & stat.S_ISVTX):
        return "can be written by group or others"
    return None


def trusted_program(path: Path) -> Path:
    """The program's path, once no one but root or the current user can change it: the
    file, every folder above it, the folders holding the link when it is one (a sticky
    folder such as /tmp is fine: others cannot rename what is in it), and every link on
    the way (its owner can point it elsewhere, even in a sticky folder). The path
    is returned as given: some programs (Debian's pg_wrapper) go by the name they are
    called by."""
    given = Path(os.path.abspath(path))
    real = Path(os.path.realpath(given))
    info = os.stat(real)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath(f"{path} is not a program file")
    problem = _others_can_change(info, folder=False)
    where = real
    # Every folder the name passes through on its way to the file, each link's own
    # folder too: only the first and the last were checked, and a link by way of a
    # folder another user owns let that user swap the program between check and run.
    try:
        on_the_way, links = walk(given)
    except TooManyLinks as exc:
        raise UnsafePath(str(exc)) from None
    folders = dict.fromkeys([*real.parents, *on_the_way])
    for folder in folders if problem is None else ():
        problem = _others_can_change(os.stat(folder), folder=True)
        if problem:
            where = folder
            break
    if problem is None and (link := link_others_own(links)) is not None:
        # A link of another user's in a sticky folder (/tmp): the folder protects it from
        # everyone but its owner, who could point it at a program of theirs.
        problem, where = f"belongs to {user_name(os.lstat(link).st_uid)}", link
    if problem:
        raise UnsafePath(
            f"will not run {path}: {where} {problem}, so another user could replace it; "
            "use binaries only root (or you) can change"
        )
    return given
