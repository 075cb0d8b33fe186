"""Every command the README shows works when pasted into a fresh shell in the checkout
after `bin/run` and `bin/test`: cruddur by its path in .venv (it is not on PATH), and
only verbs and options the command has."""

from __future__ import annotations

import re
import shlex

import click
import pytest
from helpers import ROOT

from cruddur.cli import main

README = (ROOT / "README.md").read_text()
CRUDDUR = ".venv/bin/cruddur"


def _snippets() -> list[str]:
    """Inline code, and each line of the fenced code blocks."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", README, flags=re.S | re.M)
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", README, flags=re.S | re.M)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", prose)


def _cruddur_commands() -> list[str]:
    commands = []
    for snippet in _snippets():
        # A command may follow `$(`, `;`, `&&` or `|` inside a line.
        for match in re.finditer(r"(?:^|\$\(|;|&&|\|)\s*(\.venv/bin/cruddur\b[^;|&)#]*)", snippet):
            commands.append(match.group(1).strip())
    return commands


# Run inside the container image, whose entry point is cruddur (README, "Running in
# containers"), not in the checkout.
IN_THE_IMAGE = {"cruddur db migrate", "cruddur db migrate --yes", "cruddur db roles"}


def test_no_bare_cruddur_command() -> None:
    verbs = "|".join(main.list_commands(click.Context(main)))
    bare = [
        s for s in _snippets() if re.match(rf"cruddur ({verbs})\b", s) and s not in IN_THE_IMAGE
    ]
    assert bare == [], f"write {CRUDDUR} (cruddur is not on PATH after bin/run): {bare}"


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = main
    while isinstance(command, click.Group) and words:
        sub = command.get_command(click.Context(command), words[0])
        if sub is None:
            break
        command, words = sub, words[1:]
    return command, words


COMMANDS = sorted(set(_cruddur_commands()))


def test_the_readme_shows_cruddur_commands() -> None:
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("line", COMMANDS)
def test_each_cruddur_command_names_real_verbs_and_options(line: str) -> None:
    # Placeholders (VERB, NAME) and ellipses stand for what the reader fills in.
    words = [w for w in shlex.split(line.replace("…", ""))[1:] if not re.fullmatch(r"[A-Z_]+", w)]
    command, rest = _resolve(words)
    assert not isinstance(command, click.Group) or not rest, f"unknown verb in {line!r}"
    known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    known |= {"--help", "-h"}
    for word in rest:
        option = word.strip("[]").split("=", 1)[0]
        if option.startswith("-") and option != "--":
            assert option in known, f"{line!r}: {command.name} has no option {option}"


def test_each_bin_script_the_readme_names_exists() -> None:
    names = {n for n in re.findall(r"(?<![\w./-])bin/([\w-]+)", README) if n[-1] != "-"}
    missing = [name for name in names if not (ROOT / "bin" / name).is_file()]
    assert missing == []
