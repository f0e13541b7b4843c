"""Progress reporting shared by the CLIs: a tqdm bar with ETA, or a callback.

Engine functions that take long accept ``progress: Callable[[int, int], None]``
(``done, total``); the CLI passes :func:`cli_bar`'s callback, the dashboard its
own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

ProgressFn = Callable[[int, int], None]


@contextmanager
def cli_bar(desc: str, total: int | None = None, unit: str = "img") -> Iterator[ProgressFn]:
    """A tqdm progress bar (with ETA) on stderr driven by ``progress(done, total)`` calls."""
    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(done: int, total_now: int) -> None:
        if bar.total != total_now:
            bar.total = total_now
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()
