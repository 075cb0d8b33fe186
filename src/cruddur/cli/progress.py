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
from rich.text import Text

from cruddur.cli.output import err


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s")


class RowsProgress:
    """A progress bar on stderr, drawn only on a terminal: rows written of total, rate, ETA."""

    def __init__(self, total: int) -> None:
        self._bar = Progress(
            TextColumn("{task.description:>10}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f} / {task.total:,.0f} rows"),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err(),
            transient=True,
            disable=not err().is_terminal,
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

    def __enter__(self) -> Self:
        self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
