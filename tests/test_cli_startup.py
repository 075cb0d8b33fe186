"""The `cruddur` command starts without what it does not use: --help of any group or verb
loads no database driver, AWS SDK, Flask, PyJWT or rich, and the db verbs run without
boto3, Flask or PyJWT. Each check runs in a fresh Python, which has imported nothing yet."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from helpers import ROOT

import cruddur
from cruddur.cli import SHORT_HELP, VERBS, main

# What a command's help must not import.
NOT_FOR_HELP = ("boto3", "botocore", "cryptography", "flask", "jwt", "psycopg", "rich", "werkzeug")
# What a db verb must not import when it runs: it talks to PostgreSQL only.
NOT_FOR_DB = ("boto3", "botocore", "cryptography", "flask", "jwt", "werkzeug")

# Runs the CLI's main on each argument list of argv[2] (JSON) in turn, then prints the
# exit codes and which of the packages named in argv[1] got imported, as JSON on stderr.
_REPORT = """
import json, sys
from cruddur.cli import main
heavy, codes = set(sys.argv[1].split(",")), []
for args in json.loads(sys.argv[2]):
    try:
        main(args, prog_name="cruddur")
        codes.append(None)
    except SystemExit as exc:
        codes.append(exc.code)
loaded = sorted({name.split(".")[0] for name in sys.modules} & heavy)
print(json.dumps({"codes": codes, "loaded": loaded}), file=sys.stderr)
"""


def fresh_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, with this checkout's cruddur first on the path."""
    env = {**os.environ, **(extra or {})}
    src = str(Path(cruddur.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def imported(
    commands: list[list[str]], heavy: tuple[str, ...], env: dict[str, str] | None = None
) -> tuple[list[int | None], list[str]]:
    """Each command's exit code, and which of `heavy` they imported, run in a fresh Python."""
    done = subprocess.run(
        [sys.executable, "-c", _REPORT, ",".join(heavy), json.dumps(commands)],
        env=fresh_env({"NO_COLOR": "1", **(env or {})}),
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
        check=False,
    )
    try:
        report = json.loads(done.stderr.splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(f"no report from {commands}:\n{done.stderr}") from None
    return report["codes"], report["loaded"]


def every_command() -> list[list[str]]:
    """Each group, and each verb of each group, by its words: ["db"], ["db", "status"], …"""
    ctx = click.Context(main, info_name="cruddur")
    found = []
    for name in sorted(VERBS):
        command = main.get_command(ctx, name)
        found.append([name])
        if isinstance(command, click.Group):
            found += [[name, verb] for verb in command.list_commands(ctx)]
    return found


@pytest.mark.parametrize(
    "command",
    [
        [],
        *([verb] for verb in sorted(VERBS)),
        ["db", "status"],
        ["db", "setup"],
        ["db", "seed"],
        ["db", "migrate"],
        ["db", "purge-expired"],
        ["rds", "create"],
        ["users", "sync-cognito"],
    ],
    ids=lambda command: " ".join(command) or "cruddur",
)
def test_help_imports_nothing_heavy(command: list[str]) -> None:
    assert imported([[*command, "--help"]], NOT_FOR_HELP) == ([0], [])


def test_every_help_together_imports_nothing_heavy() -> None:
    # One process through all of them: what each one loads would add up.
    helps = [[*command, "--help"] for command in every_command()]
    codes, loaded = imported([["--help"], *helps], NOT_FOR_HELP)
    assert loaded == []
    assert codes == [0] * (len(helps) + 1)


def test_db_verbs_run_without_aws_flask_or_jwt(seeded_db: str) -> None:
    verbs = [
        ["db", "status"],
        ["db", "migrations"],
        ["db", "migrate"],
        ["db", "seed"],
        ["db", "purge-expired", "--dry-run"],
        ["db", "sessions"],
    ]
    codes, loaded = imported(verbs, NOT_FOR_DB, env={"CONNECTION_URL": seeded_db})
    assert codes == [0] * len(verbs)
    assert loaded == []


def test_db_setup_runs_without_aws_flask_or_jwt(empty_db: str, tmp_path: Path) -> None:
    env = {"CONNECTION_URL": empty_db, "CRUDDUR_HOME": str(tmp_path)}  # the roles' file
    codes, loaded = imported([["db", "setup"]], NOT_FOR_DB, env=env)
    assert (codes, loaded) == ([0], [])


def test_short_help_beside_verbs_is_each_commands_own() -> None:
    ctx = click.Context(main, info_name="cruddur")
    assert set(SHORT_HELP) == set(VERBS)
    for name in VERBS:
        command = main.get_command(ctx, name)
        assert command is not None and not command.hidden
        assert SHORT_HELP[name] == command.get_short_help_str(limit=1000), name


@pytest.mark.parametrize("width", [50, 80, 200])
def test_the_listing_is_as_click_makes_it_from_the_commands(width: int) -> None:
    # From SHORT_HELP before any verb is loaded, from the commands themselves after.
    code = (
        "import click\n"
        "from cruddur.cli import VERBS, main\n"
        f"ctx = click.Context(main, info_name='cruddur', terminal_width={width}, "
        f"max_content_width={width})\n"
        "before = main.get_help(ctx)\n"
        "for name in VERBS:\n"
        "    main.get_command(ctx, name)\n"
        "assert main.get_help(ctx) == before, (main.get_help(ctx), before)\n"
        "print(before)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=fresh_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Commands:" in done.stdout


def _unwrapped_lines(command: click.Command) -> set[str]:
    """The lines of the help's \\b paragraphs, which click prints as they are (a command
    to copy, such as `dev token`'s curl example)."""
    paragraphs = inspect.cleandoc(command.help or "").split("\n\n")
    return {
        line.strip()
        for paragraph in paragraphs
        if paragraph.startswith("\b")
        for line in paragraph.splitlines()[1:]
    }


def _command(words: list[str]) -> click.Command:
    ctx, command = click.Context(main, info_name="cruddur"), main
    for word in words:
        assert isinstance(command, click.Group)
        found = command.get_command(ctx, word)
        assert found is not None, words
        command = found
    return command


def test_help_wraps_at_a_narrow_terminals_width() -> None:
    # click's formatter wraps at 50 columns at least: on a 40-column terminal every
    # help folded each of its lines again. Only a word that cannot break runs past it.
    from click.testing import CliRunner

    for words in [[], *every_command()]:
        helped = CliRunner().invoke(main, [*words, "--help"], env={"COLUMNS": "40"})
        assert helped.exit_code == 0, helped.output
        kept = _unwrapped_lines(_command(words))
        too_wide = [
            line
            for line in helped.stdout.splitlines()
            if len(line) > 40 and len(line.split()) > 1 and line.strip() not in kept
        ]
        assert too_wide == [], (words, helped.stdout)
    # The command as typed, in a terminal's own process.
    for words in ([], ["db", "seed"]):
        done = subprocess.run(
            [".venv/bin/cruddur", *words, "--help"],
            env=fresh_env({"COLUMNS": "40"}), cwd=ROOT, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) > 10 and max(map(len, lines)) <= 40, done.stdout


# Every help, from one process run as the checkout's .venv/bin/cruddur (as bin/run leaves
# it: not on the PATH), printed one after another with a line between them.
_EVERY_HELP = """
import json, sys
from cruddur.cli import main
sys.argv[0] = sys.argv[1]
for words in json.loads(sys.argv[2]):
    try:
        main([*words, "--help"])
    except SystemExit:
        pass
    print("=" * 20, flush=True)
"""
_VERB_WORDS = "|".join(sorted(VERBS))


def test_no_help_names_a_bare_cruddur_command() -> None:
    # `db seed --help` said to run `cruddur db seed --fake …`, `db setup` and `web` named
    # `cruddur db roles` and `cruddur serve`: after bin/run, "command not found".
    done = subprocess.run(
        [sys.executable, "-c", _EVERY_HELP, ".venv/bin/cruddur",
         json.dumps([[], *every_command()])],
        env=fresh_env({"PATH": "/usr/bin:/bin", "COLUMNS": "80"}), cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    helps = done.stdout.split("=" * 20 + "\n")
    assert len(helps) > 30 and all("Usage: .venv/bin/cruddur" in h for h in helps[:-1])
    joined = " ".join(done.stdout.split())  # a command may be wrapped across lines
    bare = re.findall(rf"(?<![\w./-])cruddur (?:{_VERB_WORDS})\b[^`]*", joined)
    assert bare == []
    assert "`.venv/bin/cruddur db seed --fake --users 10000" in joined  # given as typed
