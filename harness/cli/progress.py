"""Progress of long work: rich bars with an ETA on a terminal; nothing at all when stderr is not a terminal or the
command prints `--json`.

The library never sees rich: it takes a plain `on_progress(done, total)` callable, made here by
`Bars.callback(description)` and handed down by the commands (encoding verses, building an index), or a run's
`RunProgress` of such callables (`Bars.for_run()`).
"""

import sys
from collections.abc import Callable

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

OnProgress = Callable[[int, int], None]


class Bars:
    """A context manager holding one rich Progress on stderr, or nothing. `quiet` (the command's `--json`) turns it off
    on a terminal too; `enabled` overrides the terminal test (tests render into a string)."""

    def __init__(self, quiet: bool = False, console: Console | None = None, enabled: bool | None = None):
        self.console = console or Console(stderr=True)
        if enabled is None:
            enabled = not quiet and _is_tty(self.console.file)
        self.progress = (Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                  console=self.console, transient=True) if enabled else None)

    @property
    def enabled(self) -> bool:
        return self.progress is not None

    def __enter__(self) -> "Bars":
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def for_run(self):
        """The runner's `RunProgress`: one kept bar for the run's steps (its description says which step), and a bar
        for each retriever's build."""
        from harness.runner import RunProgress

        overall = self.callback("run", keep=True)

        def step(done: int, total: int, what: str) -> None:
            overall.describe(what)
            overall(done, total)

        return RunProgress(step=step, build=self.callback)

    def callback(self, description: str, keep: bool = False) -> "Task":
        """An `on_progress(done, total)` callable whose bar appears on its first call. Without `keep`, the bar goes
        away when done reaches total, and a later call (the next phase of the same work) starts a new one."""
        return Task(self.progress, description, keep)


class Task:
    """A bar as a plain callable `(done, total)`; a no-op when the Bars are off."""

    def __init__(self, progress: Progress | None, description: str, keep: bool):
        self.progress, self.description, self.keep, self.id = progress, description, keep, None

    def __call__(self, done: int, total: int) -> None:
        if self.progress is None:
            return
        if self.id is None:
            self.id = self.progress.add_task(self.description, total=total)
        self.progress.update(self.id, completed=done, total=total)
        if done >= total and not self.keep:
            self.progress.remove_task(self.id)
            self.id = None

    def describe(self, description: str) -> None:
        """Say what the bar is doing now (a run: which retriever on which set)."""
        self.description = description
        if self.progress is not None and self.id is not None:
            self.progress.update(self.id, description=description)


def _is_tty(stream) -> bool:
    """The stream itself is a terminal. Rich's own test also honours FORCE_COLOR and friends, which CI sets; a log
    file is no place for a bar whatever they say."""
    isatty = getattr(stream if stream is not None else sys.stderr, "isatty", None)
    return bool(isatty and isatty())
