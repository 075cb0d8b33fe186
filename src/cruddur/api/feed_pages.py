"""The app's feed cache (services/feed_cache.py), started on first use in each worker.

Like the pool, it starts after the fork: its listening thread belongs to the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cruddur.services.feed_cache import FeedChanges, FeedNotifier, FirstPages
from cruddur.services.last_write import LastWrite


class AppFeedCache:
    def __init__(
        self,
        conninfo: Callable[[], str],
        *,
        enabled: bool = True,
        last_write: LastWrite | None = None,
        notify_through_pooler: bool = False,
    ) -> None:
        """`last_write`: the memory this server's workers share (last_write.py), if any;
        `notify_through_pooler`: `conninfo` goes through a transaction pooler (the cache is
        off then, but its writes are still announced: FeedNotifier)."""
        self._conninfo = conninfo
        self.enabled = enabled
        self._notify_through_pooler = notify_through_pooler
        self._last_write = last_write
        self._pages: FirstPages | None = None
        self._notifier: FeedNotifier | None = None
        self._lock = threading.Lock()

    def pages(self) -> FirstPages | None:
        """The worker's first pages; None when the cache is off."""
        if not self.enabled:
            return None
        pages = self._pages
        if pages is None:
            with self._lock:
                if self._pages is None:
                    changes = FeedChanges(self._conninfo()).start()
                    self._pages = FirstPages(changes, last_write=self._last_write)
                    self._start_notifier()  # connected before the first write needs it
                pages = self._pages
        return pages

    def _start_notifier(self) -> FeedNotifier:
        if self._notifier is None:
            self._notifier = FeedNotifier(
                self._conninfo(), through_pooler=self._notify_through_pooler
            ).start()
        return self._notifier

    def changed(self) -> None:
        """This worker changed the feed: its own copies go now; under `cruddur serve` the
        other workers' too, at their next request (the shared last write moves before the
        201 goes out); the other servers' on the NOTIFY. Sent with the cache off too: other
        servers may keep copies (a fleet part-way through a change of CRUDDUR_FEED_CACHE,
        a server whose cache is off for a pooler), and without it they would show this
        write only at their copies' 1 s bound."""
        if self._last_write is not None:
            self._last_write.moved()
        if self._pages is not None:
            self._pages.changes.bump()
        notifier = self._notifier
        if notifier is None:
            with self._lock:
                notifier = self._start_notifier()
        notifier.changed()

    def close(self) -> None:
        with self._lock:
            if self._pages is not None:
                self._pages.changes.stop()
                self._pages = None
            if self._notifier is not None:
                self._notifier.stop()
                self._notifier = None
