"""Who may write through a file's or a folder's group: the test OpenSSH makes of a
group-writable config. Standard library only: the Lambda imports it (rds_tls)."""

from __future__ import annotations

import grp
import os
import pwd


def group_of_yours_alone(gid: int, me: int) -> bool:
    """Whether the group's only members are you (and root), as OpenSSH judges a
    group-writable config: a user-private group (umask 002) passes, a shared one
    does not, whoever's primary group it is. One with no members known fails too (a
    setgid program's, tty or crontab, could write the file), unless it is your own
    group: a container's user (--user 1000:1000) or a directory's (LDAP, SSSD) is in no
    file this can read, and their umask-002 files failed every command."""
    names = group_members(gid)
    if not names:
        return gid == os.getegid()
    return not _anyone_else(names, me)


def group_members(gid: int) -> list[str]:
    """Everyone in the group: its listed members and those whose primary group it is."""
    try:
        listed = grp.getgrgid(gid).gr_mem
    except KeyError:
        listed = []
    primary = [user.pw_name for user in pwd.getpwall() if user.pw_gid == gid]
    return sorted({*listed, *primary})


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def others_in_group(gid: int, me: int) -> bool:
    """Whether anyone but you and root is known to be in the group (a listed member, or
    one whose primary group it is; a listed name no user has counts). Root's group (0)
    counts as root: a container's arbitrary user runs in it (OpenShift's chgrp 0, g=u).
    A group with no members, as Debian's staff (/usr/local, 2775) often has, has none:
    unlike group_of_yours_alone, which is for settings, and fails it."""
    return gid != 0 and _anyone_else(group_members(gid), me)


def _anyone_else(names: list[str], me: int) -> bool:
    """Whether one of the users named is neither you nor root (a name no user has: not
    known to be you)."""
    try:
        return any(pwd.getpwnam(name).pw_uid not in (0, me) for name in names)
    except KeyError:
        return True
