"""Run a whole SQL file (schema, seed) statement by statement in one transaction.

Unlike `psql < file`, which carries on past errors and exits 0, the first failing
statement stops the run, nothing of the file is kept, and the error names its line.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import sqlparse
from sqlparse import keywords, tokens

from cruddur.db.pool import Db


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # the line of its first word, from 1
    first_line: int  # the line its text (perhaps a comment) starts on


class ScriptError(Exception):
    """A statement of a script failed; `__cause__` is the database's error."""

    def __init__(self, script: str, statement: Statement, line: int, cause: psycopg.Error) -> None:
        self.script = script
        self.statement = statement
        self.line = line
        self.cause = cause
        first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        message = f"{script}:{line}: {first}"
        detail = cause.diag.message_detail
        if detail:  # which row (a duplicate key, a missing reference), as psql shows
            message += f"\ndetail: {detail}"
        super().__init__(message)

    @property
    def sqlstate(self) -> str | None:
        return self.cause.sqlstate


def _postgres_lexer() -> sqlparse.lexer.Lexer:
    """sqlparse's lexer, but with PostgreSQL's quoting (standard_conforming_strings, on
    since 9.1): a backslash escapes nothing in '…' or "…", only in E'…'.

    sqlparse's default reads `\\'` as an escaped quote everywhere: in `replace(x, '\\',
    '/'); COMMIT; …` the string ran on past the semicolon, the COMMIT hid inside one
    piece, and the server ran that piece whole. These rules come first, so sqlparse's
    own for quotes are never reached; its default instance is left as it was."""
    lexer = sqlparse.lexer.Lexer()
    lexer.default_initialization()
    postgres = [
        # Tried only where a token starts: the E of `nameE'…'` is inside a word.
        (r"E'(''|\\[\s\S]|[^'\\])*'", tokens.String.Single),
        (r"'(''|[^'])*'", tokens.String.Single),
        (r'"(""|[^"])*"', tokens.String.Symbol),
    ]
    lexer.set_SQL_REGEX(postgres + list(keywords.SQL_REGEX))
    return lexer


def _nested_comment(depth: int) -> re.Pattern[str]:
    """A block comment holding others up to `depth` deep (a regular expression cannot
    count; a deeper one ends where sqlparse ends it, at its first `*/`)."""
    inner = ""
    for _ in range(depth):
        inner = r"/\*(?:[^*/]|\*(?!/)|/(?!\*)" + (f"|{inner}" if inner else "") + r")*\*/"
    return re.compile(inner)


_LEXER = _postgres_lexer()
_NESTED_COMMENT = _nested_comment(8)


def _tokens(text: str) -> Iterator[tuple[tokens._TokenType, str]]:
    """sqlparse's tokens of `text`, but with PostgreSQL's block comments, which nest:
    sqlparse ended `/* a /* b */ it's; */` at the first `*/`, and the quote after it ran
    on as a string past later semicolons. Where a comment holds another, the lexing
    starts again after the whole one."""
    start = 0
    while True:
        at = start
        for ttype, value in _LEXER.get_tokens(text[start:] if start else text):
            if ttype in tokens.Comment.Multiline and "/*" in value[2:]:
                whole = _NESTED_COMMENT.match(text, at)
                if whole is not None and whole.end() > at + len(value):
                    yield ttype, whole.group()
                    start = whole.end()
                    break
            yield ttype, value
            at += len(value)
        else:
            return


def _code_offset(piece: str) -> int | None:
    """Where the first token that is not a comment or white space starts; None if none.

    From the lexer's tokens alone: sqlparse.parse() groups the whole statement first
    (~1.5 ms each), and refuses one of more than 10,000 tokens (a 3,000-row INSERT)."""
    offset = 0
    for ttype, value in _tokens(piece):
        if ttype in tokens.Whitespace or ttype in tokens.Comment:
            offset += len(value)
        elif value == ";":
            return None
        else:
            return offset
    return None


@functools.lru_cache(maxsize=64)
def split(text: str) -> tuple[Statement, ...]:
    """The file's statements with their first line; comment-only pieces are dropped.

    Remembered by text: a process that migrates or loads many databases (the tests, `db
    setup` then `db migrate`) splits the same files again and again (~10 ms of CPU for
    the schema)."""
    statements: list[Statement] = []
    offset = 0
    for piece in filter(None, (part.strip() for part in _at_semicolons(text))):
        start = text.find(piece, offset)
        offset = start + len(piece)
        code_at = _code_offset(piece)
        if code_at is None:
            continue
        first_line = text.count("\n", 0, start) + 1
        line = first_line + piece.count("\n", 0, code_at)
        statements.append(Statement(text=piece, line=line, first_line=first_line))
    return tuple(statements)


def _at_semicolons(piece: str) -> list[str]:
    """`piece` cut after each semicolon outside strings, quoted names, comments and
    parentheses, as psql cuts a file (the lexer above tells those apart).

    sqlparse.split takes the word BEGIN for the start of a block that runs to its END, so
    `ADD COLUMN begin date; ROLLBACK; …` came out as one statement: the ROLLBACK inside it
    went unseen by the checks below and ended the migration's transaction on the server.
    A SQL-standard body (BEGIN ATOMIC … END) stays whole: as psql does, BEGIN, CASE and
    END count only outside parentheses (`max(s.end)` is a column), and not after a dot."""
    parts: list[str] = []
    start = at = 0
    previous = ""  # the last token that is not white space or a comment, upper-cased
    parens = 0
    blocks = 0  # BEGIN ATOMIC … END, and CASE … END within one
    for ttype, value in _tokens(piece):
        at += len(value)
        if ttype in tokens.Whitespace or ttype in tokens.Comment:
            continue
        word = value.upper()
        if ttype is tokens.Punctuation and value == "(":
            parens += 1
        elif ttype is tokens.Punctuation and value == ")":
            parens = max(0, parens - 1)
        elif parens == 0 and previous != "." and (ttype in tokens.Keyword or ttype in tokens.Name):
            if (previous == "BEGIN" and word == "ATOMIC") or (blocks and word == "CASE"):
                blocks += 1
            elif blocks and word == "END":
                blocks -= 1
        elif ttype is tokens.Punctuation and value == ";" and not parens and not blocks:
            parts.append(piece[start:at])
            start = at
        previous = word
    if piece[start:].strip():
        parts.append(piece[start:])
    return parts or [piece]


# Statements that end the transaction a script or migration section runs in (or start
# another): after one, what came before it stays even when a later statement fails.
# ROLLBACK TO a savepoint stays inside the transaction.
_TRANSACTION_CONTROL = re.compile(
    r"(BEGIN|START\s+TRANSACTION|COMMIT|END|ABORT|PREPARE\s+TRANSACTION"
    r"|ROLLBACK(?!\s+(?:WORK\s+|TRANSACTION\s+)?TO\b))\b",
    re.IGNORECASE,
)


def transaction_control(statement: Statement) -> str | None:
    """BEGIN, COMMIT, ROLLBACK, END and the like, when the statement is one; else None."""
    found = _TRANSACTION_CONTROL.match(statement.text, _code_offset(statement.text) or 0)
    return " ".join(found[1].upper().split()) if found else None


def client_copy(statement: Statement) -> str | None:
    """`COPY … FROM STDIN` or `COPY … TO STDOUT` when the statement is one: its rows
    travel between server and client (psql sends the lines after it), which a statement
    run by `execute` cannot carry. None otherwise (a COPY from a file the server reads)."""
    words = (
        value.upper()
        for ttype, value in _tokens(statement.text)
        if ttype not in tokens.Whitespace and ttype not in tokens.Comment
    )
    if next(words, None) != "COPY":  # read no further: a long INSERT is not lexed whole
        return None
    depth = 0
    for word, after in itertools.pairwise(words):
        depth += (word == "(") - (word == ")")  # the query of COPY (SELECT …) TO
        if depth == 0 and (word, after) in (("FROM", "STDIN"), ("TO", "STDOUT")):
            return f"COPY … {word} {after}"
    return None


def error_line(statement: Statement, error: psycopg.Error) -> int:
    """The line in the file the server points at, or the statement's first line."""
    position = error.diag.statement_position
    if not position:
        return statement.line
    return statement.first_line + statement.text.count("\n", 0, int(position) - 1)


def execute(conn: psycopg.Connection, statement: Statement) -> None:
    """Run one statement of a file by the extended query protocol (binary results make
    psycopg send Parse, Bind, Execute even without parameters), where the server refuses
    a string of several statements ("cannot insert multiple commands into a prepared
    statement"). Should the cutting above ever miss a semicolon, the file fails there,
    instead of the server running the pieces as one, a COMMIT among them unseen by
    `transaction_control`. The cost: a statement whose rows hold a type with no binary
    output (aclitem) fails, named; cast it to text. (A pipeline keeps text results but
    turned a terminated session's own message into "server closed the connection".)"""
    conn.execute(statement.text, prepare=False, binary=True)


def run_script(
    db: Db, text: str, name: str, then: Callable[[psycopg.Connection], None] | None = None
) -> int:
    """Run every statement of `text` in one transaction; return how many ran.

    `then`, when given, runs in the same transaction after the last statement.
    """
    statements = split(text)
    with db.connection() as conn, conn.transaction():
        for statement in statements:
            try:
                execute(conn, statement)
            except psycopg.Error as exc:
                raise ScriptError(name, statement, error_line(statement, exc), exc) from exc
        if then is not None:
            then(conn)
    return len(statements)
