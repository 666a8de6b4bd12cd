"""Progress bars (rich), in the three shapes the library and the commands use.

- :func:`progress_bar`: one bar as a context manager that yields ``advance(n)``;
- :class:`ProgressBars`: several bars as a :data:`ProgressFactory`, the
  ``progress(description, total) → advance(n)`` callback that ``export_run`` and the
  evaluation protocol take; :func:`self_closing_bar` is one such factory without a ``with``
  (each bar closes when its total is reached);
- :func:`track`: an iterable with a bar while it is consumed, or the items unchanged;
  :func:`task` opens one task of an optional factory.

Nothing here is drawn unless asked: every helper has a way to be silent (``enabled``,
``progress=False``, a ``None`` factory).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.console import Console

Advance = Callable[[int], None]
ProgressFactory = Callable[[str, int], Advance]
T = TypeVar("T")


def _bars(console: Console | None, *, eta: bool = False, enabled: bool = True):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if eta:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console, transient=True, disable=not enabled)


@contextlib.contextmanager
def progress_bar(description: str, total: int, console: Console | None = None
                 ) -> Iterator[Advance]:
    """A bar with the time remaining, on stderr unless ``console`` is given; yields
    ``advance(n)``."""
    bars = _bars(console or Console(stderr=True), eta=True)
    with bars:
        task_id = bars.add_task(description, total=total)
        yield lambda n: bars.advance(task_id, n)


class ProgressBars:
    """``with ProgressBars(console) as progress:`` gives a :data:`ProgressFactory` whose
    bars live until the block ends (``enabled=False``: nothing is drawn)."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.bars = _bars(console, enabled=enabled)

    def __enter__(self) -> ProgressFactory:
        self.bars.__enter__()

        def start(description: str, total: int) -> Advance:
            task_id = self.bars.add_task(description, total=total)
            return lambda n: self.bars.advance(task_id, n)
        return start

    def __exit__(self, *exc: object) -> None:
        self.bars.__exit__(*exc)


def self_closing_bar(description: str, total: int) -> Advance:
    """A :data:`ProgressFactory` for long library calls: a bar on stderr that stops when
    ``total`` is reached; nothing in logs and pipes (stderr not a terminal) or for total 0."""
    from rich.progress import Progress

    console = Console(stderr=True)
    if total <= 0 or not console.is_terminal:  # no bar residue in logs and pipes
        return lambda n: None
    bar = Progress(console=console, transient=True)
    task_id = bar.add_task(description, total=total)
    bar.start()
    done = {"n": 0}

    def advance(n: int) -> None:
        bar.advance(task_id, n)
        done["n"] += n
        if done["n"] >= total:
            bar.stop()

    return advance


def track(items: Iterable[T], progress: bool, description: str) -> Iterable[T]:
    """``items`` with a transient bar while they are consumed, or unchanged when not
    ``progress``."""
    if not progress:
        return items
    from rich.progress import track as rich_track

    return rich_track(items, description=description, transient=True)


@contextlib.contextmanager
def task(progress: ProgressFactory | None, description: str, total: int
         ) -> Iterator[Advance | None]:
    """One task of an optional factory: yields its ``advance``, or None without one."""
    yield progress(description, total) if progress is not None else None
