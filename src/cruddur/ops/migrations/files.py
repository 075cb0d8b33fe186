"""Migration files in dbmate's format, read and checked before anything runs.

A file is `<version>_<name>.sql`: the version a fixed-width UTC timestamp
(`20261202120000`), so versions sort as text. Inside, `-- migrate:up` and an optional
`-- migrate:down`, each optionally followed by `transaction:false`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from cruddur.db.scripts import Statement, client_copy, split, transaction_control
from cruddur.errors import Problem

# ASCII digits: \d took full-width ones, and schema_migrations' CHECK refused the version
# only after the migration had run (pending for ever).
FILE_NAME = re.compile(r"^(?P<version>[0-9]{14})_(?P<name>[A-Za-z0-9_]+)\.sql$")
_DIRECTIVE = re.compile(r"^--\s*migrate:(?P<section>[A-Za-z]+)(?P<options>.*)$")
_OPTION = re.compile(r"^(?P<key>[a-z]+):(?P<value>[a-z]+)$")
_NAME_PART = re.compile(r"[^a-z0-9]+")


class MigrationFileError(Problem, ValueError):
    """A migration file (or the folder) is not usable; the message names the file."""


class UnfinishedMigration(MigrationFileError):
    """A migration whose up section has no statement yet: most often `db new`'s file,
    not written yet. Nothing can run it; a listing or a rollback need not stop at it."""


def package_dir() -> Path:
    """The migrations shipped with cruddur: src/cruddur/db/migrations."""
    return Path(str(resources.files("cruddur.db").joinpath("migrations")))


@dataclass(frozen=True)
class Section:
    statements: tuple[Statement, ...]  # lines counted from the top of the file
    transaction: bool  # False: `transaction:false`, run outside a transaction
    # Why the section must not run (BEGIN, COMMIT … in it), found when the file is read
    # but refused only before it would run (`refuse_unrunnable`): a file applied before
    # this check existed must not block every command that reads the folder.
    refusal: str | None = None

    @property
    def empty(self) -> bool:
        return not self.statements


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    checksum: str  # sha256 of the file's text, line endings made \n
    up: Section
    down: Section | None  # None: the file has no `-- migrate:down`

    @property
    def file_name(self) -> str:
        return self.path.name


def checksum(text: str) -> str:
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def _options(file_name: str, line: int, text: str) -> bool:
    """The section's `transaction` option; anything else is refused."""
    transaction = True
    for word in text.split():
        match = _OPTION.match(word)
        if not match or match["key"] != "transaction" or match["value"] not in ("true", "false"):
            raise MigrationFileError(
                f"{file_name}:{line}: unknown option {word!r} (the one option is transaction:false)"
            )
        transaction = match["value"] == "true"
    return transaction


def _section(file_name: str, text: str, start_line: int, transaction: bool, label: str) -> Section:
    # Statements are split as schema-load splits them, then numbered from the file's top.
    statements = tuple(
        Statement(s.text, s.line + start_line - 1, s.first_line + start_line - 1)
        for s in split(text)
    )
    if not transaction and len(statements) > 1:
        raise MigrationFileError(
            f"{file_name}:{statements[1].line}: the {label} section runs outside a transaction "
            f"(transaction:false), so it may hold only one statement, not {len(statements)}: a "
            "failure halfway would leave part of it applied. Put each statement in its own file"
        )
    refusal = None
    for statement in statements:
        if transaction and (control := transaction_control(statement)):
            refusal = (
                f"{file_name}:{statement.line}: {control} in the {label} section, which "
                "runs in one transaction that Cruddur begins and commits: after it, a "
                "failing statement would leave part of the section applied. Remove it"
            )
            break
        if copy := client_copy(statement):
            # pg_dump's plain format: psql sends the lines after it as the rows.
            refusal = (
                f"{file_name}:{statement.line}: {copy} in the {label} section: its rows "
                "would travel through the client, as psql sends them, and a migration "
                "sends none. Put the rows in an INSERT, or COPY from a file the server reads"
            )
            break
    return Section(statements, transaction, refusal)


def refuse_unrunnable(migrations: list[Migration], direction: str) -> None:
    """MigrationFileError for the first of these whose `direction` section must not run."""
    for migration in migrations:
        section = migration.up if direction == "up" else migration.down
        if section is not None and section.refusal:
            raise MigrationFileError(section.refusal)


def _near_directive(line: str) -> str | None:
    """The section a line not read as a directive was surely meant to start ("-- migrate:
    down", "--- migrate:down", "-- MIGRATE:down", "-- migrate_down", "-- migration:down",
    sql-migrate's "-- +migrate Down"), or None. Taken for a comment, it ran a down
    section's SQL in the up section (added and dropped at once)."""
    if not line.lstrip().startswith("--"):
        return None
    squeezed = "".join(line.lower().split()).lstrip("-")
    near = _NEAR_DIRECTIVE.fullmatch(squeezed)
    return near["section"] if near else None


# Squeezed (lower case, no spaces): a word like migrate, then up or down, then nothing
# but the options a directive may have. "-- migrate: up to 3 rows" is a comment.
_NEAR_DIRECTIVE = re.compile(
    r"\+?migrat(?:e|es|ion|ions)?[:_\-.]?(?P<section>up|down)(?:transaction:.*)?"
)


def parse(path: Path, text: str) -> Migration:
    """One migration file, checked; MigrationFileError names what is wrong and where."""
    file_name = path.name
    match = FILE_NAME.match(file_name)
    if not match:
        raise MigrationFileError(
            f"{file_name}: not a migration file name; expected <version>_<name>.sql with a "
            "14-digit UTC timestamp, e.g. 20261202120000_add_bio_to_users.sql"
        )
    lines = text.replace("\r\n", "\n").split("\n")
    found: dict[str, tuple[int, bool]] = {}  # section → (its directive's line, transaction)
    for number, line in enumerate(lines, start=1):
        directive = _DIRECTIVE.match(line.strip())
        if not directive:
            if near := _near_directive(line):
                raise MigrationFileError(
                    f"{file_name}:{number}: {line.strip()!r} reads as a comment, not as the "
                    f"'-- migrate:{near}' line it looks like: its SQL would run in the "
                    f"section above. Write it exactly '-- migrate:{near}'"
                )
            continue
        section = directive["section"]
        if section not in ("up", "down"):
            raise MigrationFileError(f"{file_name}:{number}: unknown section 'migrate:{section}'")
        if section in found:
            raise MigrationFileError(
                f"{file_name}:{number}: a second '-- migrate:{section}' (one of each at most)"
            )
        found[section] = (number, _options(file_name, number, directive["options"]))
    if "up" not in found:
        raise MigrationFileError(f"{file_name}: no '-- migrate:up' line; every migration needs one")
    up_line, up_transaction = found["up"]
    down_line, down_transaction = found.get("down", (len(lines) + 1, True))
    if down_line < up_line:
        raise MigrationFileError(
            f"{file_name}:{down_line}: '-- migrate:down' comes before '-- migrate:up'"
        )
    before = "\n".join(lines[: up_line - 1])
    if split(before):
        raise MigrationFileError(
            f"{file_name}: SQL before '-- migrate:up' would never run; move it into a section"
        )
    up_text = "\n".join(lines[up_line : down_line - 1])
    up = _section(file_name, up_text, up_line + 1, up_transaction, "up")
    if up.empty:
        # Most often `db new`'s file, not written yet: where it is, to finish or delete.
        raise UnfinishedMigration(
            f"{file_name}: the up section has no statement",
            f"fill in its up section, or remove it first: {path.absolute()}",
        )
    down = None
    if "down" in found:
        down_text = "\n".join(lines[down_line:])
        down = _section(file_name, down_text, down_line + 1, down_transaction, "down")
    return Migration(
        version=match["version"],
        name=match["name"],
        path=path,
        checksum=checksum(text),
        up=up,
        down=down,
    )


def _read(path: Path) -> str:
    """The file's text: UTF-8, without the byte-order mark some editors put first (it would
    hide the `-- migrate:up` line); any other encoding is refused, naming file and line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise MigrationFileError(
            f"{path.name}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None


def load(directory: Path, unfinished: list[str] | None = None) -> list[Migration]:
    """Every migration in the folder, in version order; any bad file refuses them all.

    unfinished: where to list, by file name, the files whose up section has no statement
    yet, left out of what is returned, instead of refusing them all (a listing, a status
    or a rollback: one `db new` file not written yet stopped them too)."""
    if not directory.is_dir():
        raise MigrationFileError(f"{directory}: no such migrations folder")
    migrations: dict[str, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue  # an editor's lock or swap file (Emacs's .#….sql links to nothing)
        if path.name != path.name.rstrip() and path.name.rstrip().lower().endswith(".sql"):
            # "….sql " never ran either: its suffix is not .sql.
            raise MigrationFileError(f"{path.name!r}: name it {path.name.rstrip()!r}")
        if (
            path.suffix.lower() == ".sql"
            and path.suffix != ".sql"
            and FILE_NAME.match(path.stem + ".sql")
        ):
            # Left out, it would never run, and every deploy would pass without it.
            raise MigrationFileError(f"{path.name}: name it {path.stem}.sql (lower-case .sql)")
        if path.suffix != ".sql":
            continue  # a README or an editor's backup beside the migrations
        if not path.is_file():
            # A link to nothing, a folder, a pipe: skipped, it never ran and the gate passed.
            what = "a link to nothing" if path.is_symlink() and not path.exists() else "not a file"
            raise MigrationFileError(f"{path.name}: {what}; a migration is a .sql file")
        try:
            migration = parse(path, _read(path))
        except UnfinishedMigration:
            if unfinished is None:
                raise
            unfinished.append(path.name)
            continue
        if migration.version in migrations:
            raise MigrationFileError(
                f"{path.name}: version {migration.version} is also "
                f"{migrations[migration.version].file_name}'s; each version must be unique"
            )
        migrations[migration.version] = migration
    return [migrations[version] for version in sorted(migrations)]


MAX_NAME = 100  # characters of a new migration's name, after the version


def slug(name: str) -> str:
    """A migration name made of lower-case words joined by _: 'Add bio' → 'add_bio'.

    Accents go ('café' → 'cafe', 'ﬁx' → 'fix'); a letter with no ASCII form is refused,
    not dropped: 'Größe' became 'gr_e' and 'naïve_index' 'na_ve_index' without a word."""
    # Compatibility decomposition, its combining marks then dropped.
    plain = "".join(_without_marks(c) for c in name).lower()
    # Named as typed, in order: 'ẞ', not the 'ß' its lower case is.
    foreign = list(dict.fromkeys(c for c in name if _no_ascii_form(c)))
    if foreign:
        raise MigrationFileError(
            f"{name!r}: a migration's name is written in ASCII letters and digits (a-z, 0-9); "
            f"spell {', '.join(map(repr, foreign))} in them"
        )
    cleaned = _NAME_PART.sub("_", plain).strip("_")
    if not cleaned:
        raise MigrationFileError(
            f"{name!r}: a migration needs a name of ASCII letters or digits (a-z, 0-9)"
        )
    if len(cleaned) > MAX_NAME:  # the file's name must stay under the file system's 255
        raise MigrationFileError(
            f"a migration's name is at most {MAX_NAME} characters, not {len(cleaned)}: "
            "say what it changes in a few words"
        )
    return cleaned


def _no_ascii_form(character: str) -> bool:
    """A letter or digit that stays outside ASCII without its accents."""
    return any(not c.isascii() and c.isalnum() for c in _without_marks(character).lower())


def _without_marks(character: str) -> str:
    return "".join(
        c for c in unicodedata.normalize("NFKD", character) if not unicodedata.combining(c)
    )


def next_version(existing: list[Migration], now: datetime | None = None) -> str:
    """Now as a UTC timestamp, or the second after the newest version if that is not
    earlier (a number one past it, for a version that is no timestamp). One past as a
    number wrote second 60 (…5960) after second 59."""
    stamp = (now or datetime.now(UTC)).strftime(_STAMP)
    newest = max((m.version for m in existing), default="")
    if stamp <= newest:
        try:
            stamp = (datetime.strptime(newest, _STAMP) + timedelta(seconds=1)).strftime(_STAMP)
        except (ValueError, OverflowError):  # not a time, or the last second of 9999
            stamp = f"{int(newest) + 1:014d}"
        if len(stamp) != 14:
            raise MigrationFileError(
                f"no version after {newest} fits in 14 digits: name this migration's file "
                "by hand, with a version between two of the ones there"
            )
    return stamp


_STAMP = "%Y%m%d%H%M%S"


def write_new(directory: Path, name: str, existing: list[Migration]) -> Path:
    """An empty migration with both sections and the next version; returns its path."""
    path = directory / f"{next_version(existing)}_{slug(name)}.sql"
    path.write_text("-- migrate:up\n\n\n-- migrate:down\n\n", encoding="utf-8")
    return path
