"""What the runner says while it works; the CLI prints it, tests may collect it. A module
of its own, free of the driver, so the CLI's printer can subclass it at import."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cruddur.ops.migrations.files import Migration
    from cruddur.ops.migrations.lock import LockHolder


class Reporter:
    """Says nothing: a subclass overrides what it wants to hear."""

    def waiting(self, holder: LockHolder | None, wait: float) -> None: ...
    def adopted(self, migration: Migration) -> None: ...
    def accepted(self, migration: Migration) -> None: ...
    def out_of_order(self, migration: Migration, latest: str) -> None: ...
    def starting(self, migration: Migration, direction: str) -> None: ...
    def finished(self, migration: Migration, direction: str, seconds: float) -> None: ...
