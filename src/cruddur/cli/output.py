"""How the CLI talks: results on stdout, progress and errors on stderr, confirmations.

Text from outside (server messages, names, paths) is never read as rich markup:
a database called `x[/y]` prints as itself; its control characters print as escapes.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shlex
import shutil
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cruddur.errors import Problem

if TYPE_CHECKING:
    from rich.console import Console


# rich is imported on the first line printed, not here: `--help` never prints through it,
# and importing rich's console costs about 35 ms.
@functools.cache
def out() -> Console:
    """The console for results (stdout)."""
    return _console(stderr=False)


@functools.cache
def err() -> Console:
    """The console for progress, warnings and errors (stderr)."""
    return _console(stderr=True)


def _console(*, stderr: bool) -> Console:
    from rich.console import Console

    class PipeAwareConsole(Console):
        def on_broken_pipe(self) -> None:
            # rich's own exits with status 1, which reads as a failure (an unreachable
            # database for `db status`): the CLI ends a closed pipe with 141 instead.
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    return PipeAwareConsole(stderr=stderr, highlight=False, soft_wrap=True)


def printable(text: str, *, newlines: bool = False) -> str:
    """`text` with control and format characters (ESC, CR, bidi overrides, …) shown as
    escapes, so text from outside (a Cognito attribute, a server message) cannot move
    the cursor, retitle the terminal or forge a line. `newlines` keeps line breaks."""
    kept = "\n\t" if newlines else ""
    return "".join(
        ch
        if ch in kept or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp")
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def as_typed(message: str) -> str:
    """`message` with each command it names as `cruddur …` (hints, from every layer) as
    the user can type it here: bin/run puts cruddur in .venv/bin, not on the PATH, so
    a pasted `cruddur db up` would be "command not found"."""
    command = _typed_command()
    if command is not None:
        message = message.replace("`cruddur ", f"`{command} ")
    if "`bin/" not in message:
        return message
    scripts, settings = _typed_scripts(), _scripts_settings()
    if scripts is None and not settings:
        return message
    return message.replace("`bin/", f"`{settings}{scripts or 'bin'}/")


@functools.cache
def _checkout() -> Path | None:
    """The checkout whose .venv's cruddur this is (what its bin/ scripts run), or None."""
    if not sys.argv or Path(sys.argv[0]).name != "cruddur":
        return None
    this = Path(sys.argv[0]).absolute()
    root = this.parents[2] if len(this.parents) > 2 else this.parent
    if this.parent.parent.name != ".venv" or not (root / "bin/lib/command").is_file():
        return None
    return root


@functools.cache
def _typed_scripts() -> str | None:
    """The checkout's bin/ as typed here, when the current folder is not the checkout:
    the scripts run from any folder, and a hint's `bin/db-setup` from /tmp was "No such
    file or directory"."""
    root = _checkout()
    if root is None:
        return None
    try:
        if Path.cwd() == root:
            return None
    except OSError:  # the current folder was removed
        pass
    return _as_typed(root / "bin")


def _scripts_settings() -> str:
    """`CRUDDUR_ENV_FILE=… ` for a hint's script, when it would read other settings than
    this command did: the scripts read their checkout's .env unless CRUDDUR_ENV_FILE is
    set, this command the current folder's (or one above), or CRUDDUR_ENV_FILE's, which
    may have been set for this command alone. Run from a project with a .env of its own,
    `bin/db-create` in a hint made the checkout's database, and `bin/db-setup` would have
    dropped it."""
    from cruddur.cli import ENV_FILE_SETTING
    from cruddur.cli.options import env_file_read

    root = _checkout()
    if root is None:
        return ""
    read, theirs = env_file_read(), root / ".env"
    if read is None and not os.path.lexists(theirs):
        return ""
    with contextlib.suppress(OSError):
        if read is not None and os.path.samefile(read, theirs):
            return ""
    return f"{ENV_FILE_SETTING}={shlex.quote(str(read) if read is not None else '')} "


def typed_command() -> str | None:
    """How to type this cruddur command here, when that is not plain `cruddur`."""
    return _typed_command()


def typed_script(name: str) -> str:
    """How to type the checkout's script bin/`name` here."""
    return f"{_typed_scripts() or 'bin'}/{name}"


@functools.cache
def _typed_command() -> str | None:
    """cruddur_command() when it is not plain `cruddur`; None to leave hints as they are."""
    if not sys.argv or Path(sys.argv[0]).name not in ("cruddur", "__main__.py"):
        return None  # called from Python (tests, another program)
    try:
        command = cruddur_command()
    except OSError:  # the current folder was removed, and argv[0] is relative to it
        return None
    return None if command == "cruddur" else command


def _line(console: Console, mark: str, style: str, message: str) -> None:
    from rich.text import Text

    message = printable(as_typed(message), newlines=True)
    console.print(Text.assemble((mark, style), " ", message) if mark else Text(message))


def result(message: str) -> None:
    """A line of a command's output, for stdout."""
    _line(out(), "", "", message)


# A table cell narrower than this is unreadable (a name one letter a line): a table that
# leaves less to its text columns is printed as tab-separated lines instead.
NARROWEST_CELL = 6


def table(headings: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Rows of a command's output, on stdout. On a terminal, a table; piped, plain lines
    of tab-separated cells, the headings first: rich made its table 80 columns wide off a
    terminal, cutting and wrapping the names a script reads (`cruddur-feed-li…`). Each
    cell is text from outside, shown as printable() shows it (a tab in it as \\t).

    A column of numbers (a pid, a migration's version) is never folded: `2026120` on one
    line and `2093000` on the next could not be copied (for --accept-edited). When the
    terminal is too narrow for them and a few characters of every other column, the
    tab-separated lines are printed there too."""
    console = out()
    cells = [[printable(cell) for cell in row] for row in rows]
    try:
        piped = not console.file.isatty()
    except (AttributeError, ValueError):  # no file behind it (closed, a test's capture)
        piped = True
    numbers = [_all_numbers([row[i] for row in cells]) for i in range(len(headings))]
    whole = sum(
        max(map(len, (row[i] for row in cells)), default=0) if number else NARROWEST_CELL
        for i, number in enumerate(numbers)
    )
    # rich's default box: a border either side and between columns, a space of padding
    # either side of each cell.
    if piped or whole + 3 * len(headings) + 1 > console.width:
        lines = [list(map(printable, headings)), *cells]
        console.file.write("".join("\t".join(row) + "\n" for row in lines))
        console.file.flush()
        return
    from rich.table import Column, Table
    from rich.text import Text

    # On a narrow terminal a long name folds within its cell, never cut to "…".
    shown = Table(
        *(
            Column(heading, overflow="fold", no_wrap=number)
            for heading, number in zip(headings, numbers, strict=True)
        )
    )
    for row in cells:
        shown.add_row(*(Text(cell) for cell in row))
    console.print(shown)


def _all_numbers(column: Sequence[str]) -> bool:
    filled = [cell for cell in column if cell]
    return bool(filled) and all(cell.isascii() and cell.isdigit() for cell in filled)


def info(message: str) -> None:
    _line(err(), "", "", message)


def done(message: str) -> None:
    _line(err(), "✓", "green", message)


def warn(message: str) -> None:
    _line(err(), "!", "yellow", message)


def fail(message: str, hint: str | None = None) -> None:
    _line(err(), "error:", "bold red", message)
    if hint:
        _line(err(), "hint:", "cyan", hint)


def confirm_typed(
    expected: str, what: str, about: str, *, to_do: str = "go on", nothing: str = "done"
) -> None:
    """Say what is about to happen, and make the user type `expected` (`what` names it:
    "the database name"); anything else, or no answer, raises Problem and changes nothing."""
    _line(err(), "About to", "bold yellow", about)
    try:
        typed = click.prompt(
            f"Type {what} ({expected}) to {to_do}", default="", show_default=False, err=True
        )
    except click.Abort as stopped:
        if isinstance(stopped.__context__, KeyboardInterrupt):
            err().print()
            raise KeyboardInterrupt from None  # a Ctrl-C, as anywhere else (130)
        typed = None  # no answer (end of input)
    if not sys.stdin.isatty():
        err().print()  # piped answers are not echoed: end the prompt's line
    if typed != expected:
        raise Problem(f"not confirmed, nothing {nothing}", f"type {what} when asked, or pass --yes")


def cruddur_command() -> str:
    """How to type this cruddur command in the user's shell: `cruddur` when it is on PATH,
    otherwise its path (relative to the current folder when inside it, e.g. .venv/bin/…)."""
    this = Path(sys.argv[0]).absolute()
    if this.name == "__main__.py":  # python -m cruddur
        return f"{_as_typed(Path(sys.executable).absolute())} -m cruddur"
    on_path = shutil.which("cruddur")
    if on_path and Path(on_path).absolute() == this:
        return "cruddur"
    return _as_typed(this)


def _as_typed(path: Path) -> str:
    """`path` as a shell takes it: quoted when it must be (a checkout under `my proj/`
    was named unquoted, and the pasted hint ran `my`)."""
    return shlex.quote(_relative_here(path))


def _relative_here(path: Path) -> str:
    try:
        here = Path.cwd()
        if here == Path("/"):  # "work/…/cruddur" would be right, and read as a typo
            return str(path)
        return str(path.relative_to(here))
    except (ValueError, OSError):  # elsewhere, or the current folder was removed
        return str(path)
