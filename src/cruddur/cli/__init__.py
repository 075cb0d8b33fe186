"""The `cruddur` command. Every failure ends in one line and a hint, not a traceback."""

from __future__ import annotations

import contextlib
import errno
import importlib
import inspect
import io
import logging
import os
import re
import shutil
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from cruddur.cli.options import KEPT_META, PROD_META, for_prod
from cruddur.cli.output import as_typed, fail, warn
from cruddur.errors import Problem
from cruddur.groups import group_members, group_name, group_of_yours_alone

# Each verb's module (and the name of its command in it) is imported when that verb runs:
# `cruddur db …` then skips boto3, Flask and the rest, which it never uses. The db group
# gets its migration verbs from cruddur.cli.migrations.
VERBS = {
    "db": "cruddur.cli.migrations:db",
    "dev": "cruddur.cli.dev:dev",
    "lambda": "cruddur.cli.lambdas:lambda_",
    "rds": "cruddur.cli.rds:rds",
    "serve": "cruddur.cli.serve:serve",
    "users": "cruddur.cli.users:users",
    "web": "cruddur.cli.web:web",
}
# What `cruddur --help` says of each verb, so that listing them imports none of them: each
# is its command's short help (the first sentence of its docstring), as
# tests/test_cli_startup.py checks.
SHORT_HELP = {
    "db": "Create, load, inspect and drop the Cruddur database.",
    "dev": "Local development helpers.",
    "lambda": "Build the Cognito post-confirmation Lambda's package.",
    "rds": "Run Cruddur's production database on AWS RDS.",
    "serve": "Serve the Cruddur API over HTTP.",
    "users": "Cruddur's users and their Cognito accounts.",
    "web": "The browser front end (`cruddur serve` also serves it at /).",
}


def _wrap_help_between_words() -> None:
    """Help text wraps at spaces only: click's wrapper (textwrap's) also broke at hyphens
    and inside long words, so `--if-missing`, `cruddur-db-instance` or a path came out on
    two lines and could not be copied. A long word now runs past the width instead."""
    from click import _textwrap

    wrapper = getattr(_textwrap, "TextWrapper", None)
    if wrapper is None or getattr(wrapper, "between_words", False):
        return

    class BetweenWords(wrapper):  # type: ignore[misc, valid-type]
        between_words = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.break_on_hyphens = False
            self.break_long_words = False

    _textwrap.TextWrapper = BetweenWords  # wrap_text imports it on each call


_wrap_help_between_words()


HELP_MAX_WIDTH = 80  # click's own: wider lines are harder to read
HELP_MIN_WIDTH = 20
NARROW_TEXT = 20  # an option's help narrower than this goes below the option instead


def help_width() -> int:
    """The width help wraps at: the terminal's (COLUMNS, else the tty's), at most 80, less
    click's margin of 2. click's own floor of 50 made a 40-column terminal wrap every
    line it showed."""
    columns = shutil.get_terminal_size().columns
    return max(min(columns, HELP_MAX_WIDTH) - 2, HELP_MIN_WIDTH)


class HelpFormatter(click.HelpFormatter):
    """click's, fitting a narrow terminal: where an option's help would be left a column
    of a few characters beside the option (click keeps 10 at least, past the width), it
    goes on the lines below it; a usage line too long for the width wraps at spaces. A
    command the help names (`cruddur db seed …`) is given as this shell can run it, as
    hints and the usage line give it: after bin/run, `cruddur` is not on the PATH."""

    def write_text(self, text: str) -> None:
        super().write_text(as_typed(text))

    def write_dl(
        self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        rows = [(first, as_typed(second)) for first, second in rows]
        widest = max((click.formatting.term_len(first) for first, _ in rows), default=0)
        first_col = min(widest, col_max) + col_spacing
        if self.width - first_col - 2 >= NARROW_TEXT:
            super().write_dl(rows, col_max, col_spacing)
            return
        for first, second in rows:
            self._wrapped(first, self.current_indent, self.current_indent + 2)
            if second:
                below = self.current_indent + 4
                self._wrapped(second, below, below)

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        start = "Usage: " if prefix is None else prefix
        if click.formatting.term_len(f"{start}{prog}") <= self.width - self.current_indent:
            super().write_usage(prog, args, prefix)
            return
        line = f"{' ' * self.current_indent}{start}{prog} {args}".rstrip()
        self._wrapped(line, 0, self.current_indent + len(start))

    def _wrapped(self, text: str, first: int, then: int) -> None:
        self.write(
            click.formatting.wrap_text(
                text,
                self.width,
                initial_indent=" " * first,
                subsequent_indent=" " * then,
                preserve_paragraphs=True,
            )
        )
        self.write("\n")


class Context(click.Context):
    formatter_class = HelpFormatter


class CruddurGroup(click.Group):
    """Loads each verb on first use, and prints every error a command raises in one
    place: `error:` and `hint:` lines, exit status 1 (dbmate's `action()` wrapper)."""

    context_class = Context

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Usage lines and "Try '… --help'" name the command as this shell can run it
        # (`.venv/bin/cruddur db seed`): click's `cruddur` is not on PATH after bin/run.
        from cruddur.cli.output import typed_command

        if kwargs.get("prog_name") is None:
            kwargs["prog_name"] = typed_command()
        # Shell completion's variable stays the command's own name's (click derives it
        # from prog_name: `.venv/bin/cruddur` made it another, and completion printed help).
        kwargs.setdefault("complete_var", "_CRUDDUR_COMPLETE")
        try:
            return super().main(*args, **kwargs)
        except OSError as exc:
            # Writing the output, help or a usage error failed (stdout is /dev/full): one
            # line, not a traceback. A closed pipe never gets here: invoke() ends that with
            # 141.
            fail(f"cannot write the output: {exc.strerror or exc}")
            sys.exit(1)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # Every group's and verb's context inherits it: help wraps at the terminal's width.
        extra.setdefault("terminal_width", help_width())
        try:
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:  # --help's reader went away
            raise click.exceptions.Exit(_reader_gone()) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*VERBS, *self.commands})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's own, which imports every verb's module for its line: a verb not
        # loaded yet is listed with its SHORT_HELP.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [
            (name, SHORT_HELP[name] if command is None else command.get_short_help_str(limit))
            for name in names
            if (command := self.commands.get(name)) is None or not command.hidden
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in VERBS:
            module, _, attribute = VERBS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            _whole_short_help(command)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`| head -1`): click's main ended quietly but with
            # status 1, which the README gives for a database that does not answer.
            ctx.exit(_reader_gone())
        except KeyboardInterrupt:
            # Ctrl-C where no verb's handler says what it kept (still connecting, say):
            # click's own "Aborted!" and status 1 read as a failure; 130 is an interrupt's.
            # A verb that has changed nothing yet said so (if_interrupted), as its own
            # handler would: "interrupted: nothing was written".
            kept = ctx.meta.get(KEPT_META)
            if kept:
                warn(f"interrupted: {kept}")
            else:
                fail("interrupted (Ctrl-C)")
            ctx.exit(130)
        except Exception as exc:
            from cruddur.config import debug_enabled  # on error only: not part of every start

            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # A full disk under what it writes (stdout on /dev/full, a verb's --help
                # among it): main() says "cannot write the output", as for the top's help.
                raise
            problem = as_problem(exc)
            if problem is None and debug_enabled():
                raise
            problem = problem or Problem(
                f"unexpected {type(exc).__name__}: {exc}",
                "run again with CRUDDUR_DEBUG=1 to see where it happened",
            )
            hint = problem.hint
            if hint and ctx.meta.get(PROD_META):
                hint = for_prod(hint)
            fail(problem.message, hint)
        ctx.exit(1)


BROKEN_PIPE = 141  # 128 + SIGPIPE: what `yes | head -1` leaves in PIPESTATUS for `yes`


def _reader_gone() -> int:
    """Nothing more can be written (stdout, or stderr, is a pipe its reader closed): the
    exit status of a command killed by SIGPIPE, without a word. Both streams go to
    /dev/null first: Python's last flush of what is buffered would fail on the closed
    pipe again, and print "Exception ignored … BrokenPipeError"."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # no file behind it
            os.dup2(devnull, stream.fileno())
    os.close(devnull)
    return BROKEN_PIPE


def as_problem(exc: BaseException) -> Problem | None:
    """The error as the user should read it: our own Problem as it is, a database's or
    AWS's error explained; None for one nobody foresaw."""
    if isinstance(exc, Problem):
        return exc
    from cruddur.db.errors import explain  # on error only: it imports psycopg

    explained = explain(exc)
    if explained is None and "botocore" in sys.modules:  # only an AWS command loads it
        from cruddur.aws import explain_aws

        explained = explain_aws(exc)
    return explained


@click.group(cls=CruddurGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cruddur", prog_name="cruddur")  # looked up on use
def main() -> None:
    """Cruddur's backend tools.

    Local commands act on CONNECTION_URL or, when it is not set, on an embedded
    PostgreSQL started under .cruddur/. Add --prod to act on PROD_CONNECTION_URL
    instead. Settings come from the environment and from a .env file in the current
    folder (or above), or the one CRUDDUR_ENV_FILE names (the bin/db-* scripts name
    their checkout's); the environment wins.
    """
    _standard_streams_open()
    try:
        read = _load_env_file()
    except Problem as exc:
        if not {"-h", "--help"} & set(sys.argv[1:]):
            raise
        warn(exc.message)  # help needs no settings: shown all the same
    else:
        click.get_current_context().meta[ENV_FILE_META] = read
    # The pool logs each connection it discards; a CLI reports failures itself.
    logging.getLogger("psycopg").setLevel(logging.ERROR)


def _standard_streams_open() -> None:
    """Standard descriptors started closed (`cruddur serve >&-`), opened on /dev/null.
    Python leaves sys.stdout (or stderr) None then, and serve's flush before it became
    the server crashed; and the next file or socket opened would take descriptor 1 and
    get whatever was written to "stdout". Descriptors are taken lowest first: in order."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 - for the process


class _Untrusted(Problem):
    """A .env another user could have written (or chosen): refused in the current
    folder, skipped in a folder above it."""


def _load_env_file() -> Path | None:
    """A .env file in this folder or above, as the flask CLI and dbmate read it, or the
    one CRUDDUR_ENV_FILE names (empty: none); a variable already set in the environment
    wins over the file. Returns the file read, if any. A line python-dotenv cannot parse
    (an unclosed quote) stops the command: dotenv skipped it with a warning, and a
    skipped CONNECTION_URL sent every command to another database."""
    from dotenv import load_dotenv  # here: `cruddur --help` reads no .env
    from dotenv.parser import parse_stream

    chosen = os.environ.get(ENV_FILE_SETTING)
    if chosen is not None:
        # The bin/db-* scripts name their checkout's: run from another project's folder,
        # they read that project's .env, and bin/db-setup dropped its database.
        candidates = _chosen_env_file(chosen)
        here = None
    else:
        try:
            here = os.getcwd()
        except FileNotFoundError:  # the shell's folder was removed
            return None
        candidates = _env_files_upwards(Path(here))
    for path in candidates:
        hint = "fix it or remove it; the environment's own variables need no file"
        try:
            text = _read_own_file(path).decode("utf-8-sig")
        except _Untrusted as exc:
            if here is None or path.parent == Path(here):
                raise
            # One above is passed over as if it were not there, and the search goes on:
            # then a file another user plants (in /tmp, in a shared /srv/projects) can
            # neither set your settings nor, as stopping there would, hide your own .env
            # further up. git's safe.directory refuses outright because the untrusted
            # repository is the one asked for; a .env above is only a candidate.
            warn(f"{exc.message}; skipped, as it is not in this folder")
            continue
        except UnicodeDecodeError:
            raise Problem(f"{path} is not UTF-8 text", hint) from None
        except OSError as exc:
            raise Problem(f"cannot read {path}: {exc.strerror or exc}", hint) from None
        # By line number only: the line may hold a password. A bare NAME (or export NAME)
        # is dotenv's own syntax, and sets nothing; a line without "=" that is no name (a
        # URL wrapped onto a line of its own) python-dotenv skipped as well: the command
        # went to the embedded server instead.
        bindings = list(parse_stream(io.StringIO(text)))
        bad = [
            b.original.line
            for b in bindings
            if b.error or (b.key is not None and b.value is None and not _NAME.fullmatch(b.key))
        ]
        if bad:
            lines = ", ".join(str(line) for line in bad)
            raise Problem(
                f"{path}: line{'s' if len(bad) > 1 else ''} {lines} not NAME=value "
                "(an unclosed quote, or a value on a line of its own?)",
                hint,
            )
        for b in bindings:  # the environment cannot hold it: "embedded null byte"
            if "\0" in (b.key or "") + (b.value or ""):
                raise Problem(f"{path}: line {b.original.line} has a NUL byte", hint)
        # Set but blank in the environment is no setting (config reads a blank one as
        # unset: compose files pass unset variables on blank), so the file's value fills
        # it: left, a blank CONNECTION_URL hid the file's, and the command went to the
        # embedded server.
        for b in bindings:
            if b.key and b.value is not None and not os.environ.get(b.key, "x").strip():
                del os.environ[b.key]
        load_dotenv(stream=io.StringIO(text), override=False)
        return path.absolute()
    return None


ENV_FILE_SETTING = "CRUDDUR_ENV_FILE"
ENV_FILE_META = "cruddur.env_file"  # the .env read, for the `database:` line


def _chosen_env_file(chosen: str) -> list[Path]:
    """CRUDDUR_ENV_FILE's file: none when it is empty; one that is not there is refused,
    as a file it names is meant to be read (a typo would send the commands elsewhere)."""
    if not chosen or chosen == os.devnull:  # /dev/null: none, as other tools take it
        return []
    path = Path(chosen)
    if not os.path.lexists(path):
        raise Problem(
            f"{ENV_FILE_SETTING} names {path}, which does not exist",
            f"give the path of a .env file, or unset {ENV_FILE_SETTING} to read the current "
            "folder's",
        )
    try:
        kind = path.stat().st_mode
    except OSError:
        kind = None  # a link to nothing, or no way through: said where it is read
    if kind is not None and not stat.S_ISREG(kind):
        # Said before the checks of who may write it: they advised removing (or chmod
        # go-w) /tmp, a device or a shell's <(…) pipe, paths the user had only named here.
        raise Problem(
            f"{ENV_FILE_SETTING} names {path}, which is not a file (a folder, a device or a pipe)",
            f"give the path of a .env file, or set {ENV_FILE_SETTING}= (empty) to read none",
        )
    return [path]


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")  # what a dotenv line may name bare


def _env_files_upwards(folder: Path) -> Iterator[Path]:
    """Each .env from `folder` up to /, as python-dotenv's find_dotenv finds them (a
    file or a FIFO; a folder called .env is not one)."""
    for each in (folder, *folder.parents):
        path = each / ".env"
        try:
            kind = path.stat().st_mode
        except OSError:
            continue
        if stat.S_ISREG(kind) or stat.S_ISFIFO(kind):
            yield path


def _read_own_file(path: Path) -> bytes:
    """The .env file's bytes, if no other user could have written them.

    It is looked for in every folder up to /, /tmp among them: a file another user put
    there (or may change) could set any variable the environment leaves unset, the
    sign-in's keys (CRUDDUR_JWKS_URL), the database, or LD_PRELOAD for the programs
    cruddur starts. Refused (_Untrusted), like ssh's config: owned by another user (root
    is trusted), writable by others, or by a group with members other than you."""
    from cruddur.safe_paths import user_name

    me = os.geteuid()
    link = os.lstat(path)
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (0, me):
        # A link is judged by who made it too: another user's could pick which of your
        # files (or root's) is read as your settings.
        raise _Untrusted(
            f"{path} is a link made by {user_name(link.st_uid)}, not by you: cruddur does "
            "not take settings another user could have chosen",
            _own_hint(path),
        )
    # Judged before it is opened too: another user's file may not be readable (0600),
    # and opening it would then fail rather than be passed over.
    _check_trusted(path, os.stat(path), me)
    # Without O_NONBLOCK, opening a FIFO waits for a writer, for ever, before the checks
    # below can refuse it; a regular file reads the same either way.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        # What was opened is what was looked at: another user who may replace the entry
        # (their own .env in /tmp) could swap in a link to one of your files between the
        # look and the open, and back.
        now, target = os.lstat(path), os.stat(path)
        same_entry = (now.st_dev, now.st_ino) == (link.st_dev, link.st_ino)
        if not same_entry or (info.st_dev, info.st_ino) != (target.st_dev, target.st_ino):
            raise _Untrusted(f"{path} changed while it was being read", _own_hint(path))
        _check_trusted(path, info, me)
        if not stat.S_ISREG(info.st_mode):
            raise Problem(f"{path} is not a regular file", _own_hint(path))
        return handle.read()


def _own_hint(path: Path) -> str:
    return f"remove it, or make it yours and not writable by others (chmod go-w {path})"


def _check_trusted(path: Path, info: os.stat_result, me: int) -> None:
    from cruddur.safe_paths import user_name

    if info.st_uid not in (0, me):
        raise _Untrusted(
            f"{path} belongs to {user_name(info.st_uid)}, not to you: cruddur does not "
            "take settings another user could have written",
            _own_hint(path),
        )
    if info.st_mode & 0o002:
        raise _Untrusted(
            f"{path} can be written by others: cruddur does not take settings another "
            "user could have written",
            _own_hint(path),
        )
    if info.st_mode & 0o020 and not group_of_yours_alone(info.st_gid, me):
        group = group_name(info.st_gid)
        raise _Untrusted(
            f"{path} can be written by group {group}, which is not yours alone: cruddur "
            "does not take settings another user could have written",
            f"remove it, or make it writable by you alone (chmod g-w {path}); group "
            f"{group}'s members: {', '.join(group_members(info.st_gid)) or 'none'}",
        )


def _first_sentence(help_text: str) -> str:
    paragraph = " ".join(inspect.cleandoc(help_text).split("\n\n", 1)[0].split())
    end = paragraph.find(". ")
    return paragraph if end == -1 else paragraph[: end + 1]


def _whole_short_help(command: click.Command) -> None:
    # A group lists each command with the first sentence of its help, which click cuts
    # to the terminal's width ("Serve the Cruddur API (default..."). A short_help is
    # shown whole, wrapped onto the next lines instead.
    if command.short_help is None and command.help:
        command.short_help = _first_sentence(command.help)
    if command.context_class is click.Context:  # its help fits a narrow terminal too
        command.context_class = Context
    for sub in getattr(command, "commands", {}).values():
        _whole_short_help(sub)
