"""The last write of any worker of one `cruddur serve`: 8 bytes of memory they share.

The NOTIFY that drops the other workers' kept first pages (feed_cache.py) goes out after
the write's 201: the writer's next request, on another worker, came before it and got
the page without its own crud, or a 304 for it. So `cruddur serve` makes a file of 8
bytes for its workers (`make`; the path in CRUDDUR_LAST_WRITE_FILE, which spawned
workers inherit as forked ones do), each maps it (`LastWrite.from_env`), and a worker
that writes stores 8 new random bytes there before its 201 goes out (`moved`). A kept
page remembers the bytes it read before its database read, and is stale once they differ
(feed_cache.FirstPages): one read of shared memory per request.

Random bytes, not a counter: two writers at once may each tear the other's bytes, and
what is left still differs from every value a page remembers (but for odds of 2**-64);
a worker's pid and count, torn, could give a value that writer stores again later.
Without the file (the tests' apps, `serve --dev`, any other server) `NO_WRITES` stands
in and never moves: the NOTIFY alone drops the copies, as before.
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile

ENV = "CRUDDUR_LAST_WRITE_FILE"
SIZE = 8
NO_WRITES = bytes(SIZE)  # read as `memory[:SIZE]` like the map: the same bytes each time
FILE_NAME = "last-write"
PREFIX = "cruddur-serve-"  # then the server's pid, a dash and mkdtemp's letters

log = logging.getLogger("cruddur.feed_cache")


class LastWrite:
    """The shared 8 bytes, mapped into this process."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            self.memory = mmap.mmap(fd, SIZE)  # MAP_SHARED: every worker's writes
        finally:
            os.close(fd)  # the map holds the file

    @classmethod
    def from_env(cls) -> LastWrite | None:
        """This server's file, when `cruddur serve` made one; None otherwise, or (said in
        the log) when it cannot be opened: the copies then wait for the NOTIFY."""
        path = os.environ.get(ENV)
        if not path:
            return None
        try:
            return cls(path)
        except (OSError, ValueError) as exc:
            log.warning("a write may miss the next first page of another worker: %s", exc)
            return None

    def moved(self) -> None:
        self.memory[:SIZE] = os.urandom(SIZE)


def make() -> str:
    """A new file of 8 zero bytes in a folder of its own that only this user can enter;
    its path. `remove` takes both away. The folder's name holds this process's pid (the
    server's, after serve's exec): a server killed outright (SIGKILL) leaves its folder,
    and the next `make` removes those whose process is gone."""
    _remove_orphans(tempfile.gettempdir())
    folder = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
    path = os.path.join(folder, FILE_NAME)
    with open(path, "wb") as file:
        file.write(NO_WRITES)
    return path


def _remove_orphans(parent: str) -> None:
    """The folders `make` made for servers that are gone (no process has their pid): a
    folder of another user's, or whose pid lives (perhaps reused), is left alone."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid = name.removeprefix(PREFIX).partition("-")[0]
        if not name.startswith(PREFIX) or not pid.isdigit() or _alive(int(pid)):
            continue
        folder = os.path.join(parent, name)
        try:
            if os.lstat(folder).st_uid != os.getuid():
                continue
        except OSError:
            continue
        remove(os.path.join(folder, FILE_NAME))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: alive
        return True
    return True


def remove(path: str | None) -> None:
    """Remove what `make` made: the file, then its folder (only if empty: the path came
    through the environment)."""
    if not path or os.path.basename(path) != FILE_NAME:
        return
    for remove_one, name in ((os.unlink, path), (os.rmdir, os.path.dirname(path))):
        try:
            remove_one(name)
        except OSError:
            return
