"""A path as the kernel resolves it, one part at a time: the folders it passes through
and the links it follows. The standard library only: the Lambda's zip holds it
(rds_tls checks its CA bundle's path with it)."""

from __future__ import annotations

import os
from pathlib import Path

MAX_LINK_HOPS = 40  # as the kernel's own limit on a name's links


class TooManyLinks(ValueError):
    pass


def walk(path: Path) -> tuple[list[Path], list[Path]]:
    """(folders, links): every folder the kernel passes through to reach `path`, each
    link (a folder's or the file's) followed from the folder it is in, so that the folder
    holding every link is among them; and every link followed, in order. (Joined as text,
    a relative link's `..` left from the link's name, not its real folder: Debian's
    /bin/psql, by way of /bin -> usr/bin, came out as /share/…, which is not there.)"""
    folders, links = [Path("/")], []
    current = Path("/")
    pending = list(Path(os.path.abspath(path)).parts[1:])
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = current.parent  # `current` is real: its parent is the kernel's
            continue
        candidate = current / part
        if candidate.is_symlink():
            links.append(candidate)
            if len(links) > MAX_LINK_HOPS:
                raise TooManyLinks(f"{path} leads through more than {MAX_LINK_HOPS} links")
            target = Path(os.readlink(candidate))
            if target.is_absolute():
                current = Path("/")
            pending = [*target.parts[1 if target.is_absolute() else 0 :], *pending]
            continue
        current = candidate
        if pending:
            folders.append(current)
    return folders, links


def link_others_own(links: list[Path]) -> Path | None:
    """The first of `links` (walk's) that neither this user nor root owns: its owner may
    point it elsewhere whenever they like (in a sticky folder such as /tmp, where others
    may not rename what is theirs, an owner still may); None when none."""
    for link in links:
        if os.lstat(link).st_uid not in (0, os.geteuid()):
            return link
    return None
