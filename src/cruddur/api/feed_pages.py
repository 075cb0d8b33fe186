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
    ) -> None:
        """`last_write`: the memory this server's workers share (last_write.py), if any."""
        self._conninfo = conninfo
        self.enabled = enabled
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
            self._notifier = FeedNotifier(self._conninfo()).start()
        return self._notifier

    def changed(self) -> None:
        """This worker changed the feed: its own copies go now; under `cruddur serve` the
        other workers' too, at their next request (the shared last write moves before the
        201 goes out); the other servers' on the NOTIFY."""
        if not self.enabled:
            return
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
