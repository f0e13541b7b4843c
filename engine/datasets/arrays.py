"""Pixels: decoding and resizing the items of a split into one uint8 batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import numpy as np

from engine.datasets.index import SplitIndex, subset_indices
from engine.errors import ImageError, ParamError
from engine.images import check_size, resize_image

# --------------------------------------------------------------------------- pixels


def load_arrays(
    index: SplitIndex,
    size: int | tuple[int, int],
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    limit: int | None = None,
    seed: int = 0,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize items of a split into one batch.

    Parameters
    ----------
    index : SplitIndex
        The split.
    size : int or (int, int)
        Target ``(height, width)``; an int means square. Images are
        stretched (see :func:`engine.images.resize_image`).
    indices : sequence of int, optional
        Positions to load, in this order (default: all).
    limit : int, optional
        Keep at most this many of them: a seeded stratified subset (see
        :func:`subset_indices`), in their original order.
    seed : int, default=0
        Seed for ``limit``.
    workers : int, default=2
        Threads decoding in parallel (OpenCV and Pillow release the GIL);
        1 decodes in the calling thread.
    progress : callable, optional
        ``progress(done, total)``, called from the calling thread about 100
        times at most, and once at the end.

    Returns
    -------
    images : numpy.ndarray
        ``(N, height, width, 3)`` uint8 RGB.
    labels : numpy.ndarray
        ``(N,)`` int64.

    Raises
    ------
    ImageError
        If an item cannot be decoded (the message names the item).
    ParamError
        For an invalid size, index, limit or worker count.
    """
    height, width = check_size(size)
    if indices is None:
        sel = np.arange(len(index), dtype=np.int64)
    else:
        sel = np.asarray(indices)
        if sel.ndim != 1 or (sel.size and not np.issubdtype(sel.dtype, np.integer)):
            raise ParamError("indices must be a 1-D sequence of integers")
        sel = sel.astype(np.int64)
        if sel.size and (sel.min() < -len(index) or sel.max() >= len(index)):
            raise ParamError(f"indices must be in 0..{len(index) - 1} for {index!r}")
        sel = sel % max(len(index), 1)
    if limit is not None:
        sel = sel[subset_indices(index.labels[sel], limit, seed=seed)]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParamError(f"workers must be a positive integer; got {workers!r}")
    total = len(sel)
    out = np.empty((total, height, width, 3), dtype=np.uint8)
    step = max(1, total // 100)

    def work(j: int) -> None:
        ref = index.refs[int(sel[j])]
        try:
            out[j] = resize_image(index.read(ref), (height, width))
        except ImageError as exc:
            raise ImageError(f"{index.dataset_id} item {ref}: {exc}") from exc

    def report(done: int) -> None:
        if progress is not None and (done % step == 0 or done == total):
            progress(done, total)

    if workers == 1 or total < 2:
        for j in range(total):
            work(j)
            report(j + 1)
    else:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load_arrays")
        try:
            pending = {pool.submit(work, j) for j in range(total)}
            done_count = 0
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in finished:
                    fut.result()  # re-raises a worker's error here
                    done_count += 1
                    report(done_count)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if progress is not None and total == 0:
        progress(0, 0)
    return out, index.labels[sel].copy()
