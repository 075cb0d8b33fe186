"""The progress bar of the bulk verbs (`db seed --fake`, `db purge-expired`): a module of
its own, since rich.progress adds about 10 ms to every start that imports it."""

from __future__ import annotations

from typing import Self

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from cruddur.cli.output import err

# Below this width the elapsed time is left out: with 7-digit counts and a 7-digit rate,
# the line then still fits 80 columns (it wrapped "rows/s" onto a second line).
WIDE = 100


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s")


class RowsProgress:
    """A progress bar on stderr, drawn only on a terminal: rows written of total, rate, ETA."""

    def __init__(self, total: int) -> None:
        console = err()

        def whole() -> Column:  # cut to the width, never wrapped: only the bar gives way
            return Column(no_wrap=True)

        elapsed = [TimeElapsedColumn(table_column=whole())] if console.width >= WIDE else []
        self._bar = Progress(
            TextColumn("{task.description:>10}", table_column=whole()),
            BarColumn(),
            TextColumn("{task.completed:,.0f} / {task.total:,.0f} rows", table_column=whole()),
            _RateColumn(table_column=whole()),
            *elapsed,
            TextColumn("eta", table_column=whole()),
            TimeRemainingColumn(table_column=whole()),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task = self._bar.add_task("preparing", total=total)
        self.stage_now = "preparing"

    def stage(self, what: str) -> None:
        self.stage_now = what
        self._bar.update(self._task, description=what)

    def stop(self) -> None:
        """Take the bar off the screen (before a last line of its own)."""
        self._bar.stop()

    def advance(self, rows: int) -> None:
        self._bar.advance(self._task, rows)

    def at(self, done: int, total: int) -> None:
        """`done` of `total` rows (a total known better than at the start)."""
        self._bar.update(self._task, completed=done, total=total)

    def __enter__(self) -> Self:
        self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
