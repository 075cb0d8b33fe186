"""PostgreSQL's limit on a name (a database's, a role's), checked before the server cuts
one. Standard library only: the CLI's option checks and the Lambda handlers import it."""

from __future__ import annotations

# PostgreSQL keeps a name to NAMEDATALEN - 1 bytes and cuts a longer one without an
# error, in CREATE and at connection alike: two names alike in their first 63 bytes are
# one database.
NAME_MAX_BYTES = 63


def name_too_long(name: str, what: str) -> str | None:
    """Why PostgreSQL would not keep `name` whole (`what` says whose it is), or None."""
    size = len(name.encode("utf-8", "surrogateescape"))
    if size <= NAME_MAX_BYTES:
        return None
    return (
        f"{what} {name!r} is {size} bytes long (UTF-8); PostgreSQL names are at most "
        f"{NAME_MAX_BYTES} bytes, and it would cut this one to its first {NAME_MAX_BYTES}"
    )
