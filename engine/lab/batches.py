"""A mini sweep's batches, and how their results are merged into rows: no model here.

:func:`plan_mini_sweep` cuts a sweep into :class:`SweepBatch` es: each is up
to :data:`IMAGES_PER_BATCH` images under one budget, with every defence
evaluated on them (and, in the first batch of each group of images, the clean
pass). Crafted through the defence (``adaptive=True``), the attack images of
one defence setting cannot serve another, so each batch is one budget *and
one defence setting*: one attack per batch, as in a transfer batch. Running
one (:func:`engine.lab.run_sweep_batch`) gives a :class:`SweepPart`, its raw
predictions; :func:`combine_mini_sweep` merges the parts into the rows of
:func:`engine.lab.run_mini_sweep`.

Batches are exact, not approximate: the images are split at multiples of
:data:`IMAGES_PER_BATCH`, which is where :func:`engine.attacks.run_attack`
and :func:`engine.gradients.predict` split them anyway (so even an attack
with a random start draws the same numbers), and every metric is computed
once, by :func:`engine.metrics.summarize`, on the predictions of all images
concatenated: nothing is an average of per-batch averages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine import metrics
from engine.errors import ParamError
from engine.lab.inputs import (
    DefenceLike,
    check_defences,
    check_eps_values,
    check_labels,
    live_attacker,
)

__all__ = [
    "IMAGES_PER_BATCH",
    "SweepBatch",
    "SweepCell",
    "SweepPart",
    "SweepRow",
    "combine_mini_sweep",
    "plan_mini_sweep",
]

#: Most images in one sweep batch: ``engine.gradients.MAX_BATCH``, which is
#: also the default ``batch_size`` of :func:`engine.attacks.run_attack` (a test
#: checks both), so batches split the images where the engine splits them.
IMAGES_PER_BATCH = 64

#: One row of a mini sweep: see :func:`run_mini_sweep` for its keys.
SweepRow = dict[str, Any]


@dataclass(frozen=True)
class SweepBatch:
    """One unit of a mini sweep.

    Attributes
    ----------
    start, stop : int
        The batch's images are ``images[start:stop]`` of the sweep.
    n_images : int
        Images in the whole sweep.
    eps_index : tuple of int
        The budgets it runs, as indices into the sweep's ``eps_values``.
    defence_index : tuple of int
        The defence settings it evaluates, as indices into the sweep's
        ``defences``: all of them in a transfer batch, one in an adaptive one.
    clean : bool
        Whether it also runs the clean pass of its images (the first batch of
        each group of images does).
    done_before, total : int
        Units of work (the clean pass, each attack, each defence evaluated)
        done by the batches before this one, and in the whole sweep: the
        batch reports ``progress(done_before + its own, total, message)``.
    adaptive : bool, default=False
        Planned for an attacker who knows the defence: each (budget, defence)
        cell is crafted through its defence, one attack per cell instead of
        one per budget. :func:`engine.lab.run_sweep_batch` refuses to run it
        for the other attacker.
    """

    start: int
    stop: int
    n_images: int
    eps_index: tuple[int, ...]
    defence_index: tuple[int, ...]
    clean: bool
    done_before: int
    total: int
    adaptive: bool = False

    @property
    def units(self) -> int:
        """Units of work in this batch: its clean pass, its attacks, each defence evaluated."""
        n_def = len(self.defence_index)
        attacks = n_def if self.adaptive else 1  # adaptive: one attack per defence setting
        return int(self.clean) + len(self.eps_index) * (attacks + n_def)


@dataclass(frozen=True, eq=False)
class SweepCell:
    """The raw outcome of one (budget, defence) cell on one batch's images.

    Attributes
    ----------
    eps_index, defence_index : int
        The cell, as indices into the sweep's ``eps_values`` and ``defences``.
    header : dict
        The row's settings columns: ``eps``, ``attack``, ``attack_title``,
        ``attack_params``, ``defence_key``, ``defence_label``,
        ``defence_id``, ``defence_spec``, ``threat_model``.
    probs : np.ndarray
        ``(n, K)`` probabilities on the attacked, defended images.
    attack_seconds, eval_seconds : float
        Time spent attacking these images at this budget (the same for every
        defence of the budget) and defending and classifying them.
    """

    eps_index: int
    defence_index: int
    header: dict[str, Any]
    probs: np.ndarray
    attack_seconds: float
    eval_seconds: float


@dataclass(frozen=True, eq=False)
class SweepPart:
    """What one :class:`SweepBatch` measured; :func:`combine_mini_sweep` merges parts.

    Attributes
    ----------
    batch : SweepBatch
        The batch run.
    clean_probs : np.ndarray or None
        ``(n, K)`` probabilities on the clean images when ``batch.clean``.
    cells : tuple of SweepCell
        One per (budget of the batch, defence), budget-major.
    """

    batch: SweepBatch
    clean_probs: np.ndarray | None
    cells: tuple[SweepCell, ...]


def plan_mini_sweep(
    n_images: int,
    eps_values: Sequence[float],
    defences: Sequence[DefenceLike],
    *,
    adaptive: bool = False,
) -> tuple[SweepBatch, ...]:
    """The batches of a sweep: every group of :data:`IMAGES_PER_BATCH` images, one budget each.

    Parameters
    ----------
    n_images : int
        Images in the sweep (at least one).
    eps_values, defences : sequence
        As for :func:`run_mini_sweep` (only their number matters here).
    adaptive : bool, default=False
        Plan for an attacker who knows the defence (as for
        :func:`run_mini_sweep`): the attack images of one defence setting
        cannot serve another, so each batch is one budget and one defence
        setting (one attack each); otherwise one budget with every defence.

    Returns
    -------
    tuple of SweepBatch
        Image-group-major, then in the order of ``eps_values`` (then of
        ``defences`` when adaptive); the first batch of each image group also
        runs its clean pass.

    Raises
    ------
    ParamError
        ``n_images`` not a positive integer, no budget or no defence, or
        ``adaptive`` not a bool.
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ParamError(f"n_images must be a positive integer; got {n_images!r}.")
    n_eps = len(check_eps_values(eps_values))
    n_def = len(check_defences(defences))
    adaptive = live_attacker(adaptive, None).adaptive
    settings = [(j,) for j in range(n_def)] if adaptive else [tuple(range(n_def))]
    starts = range(0, n_images, IMAGES_PER_BATCH)
    per_eps = 2 * n_def if adaptive else 1 + n_def  # attacks, then each defence evaluated
    total = len(starts) * (1 + n_eps * per_eps)
    batches: list[SweepBatch] = []
    done = 0
    for start in starts:
        stop = min(start + IMAGES_PER_BATCH, n_images)
        for i in range(n_eps):
            for js in settings:
                clean = i == 0 and js[0] == 0
                b = SweepBatch(start, stop, n_images, (i,), js, clean, done, total, adaptive)
                batches.append(b)
                done += b.units
    return tuple(batches)


def _check_cover(parts: Sequence[SweepPart], n_images: int) -> list[int]:
    """The first image of each group; :class:`ParamError` unless every unit is there once."""
    groups = sorted({(p.batch.start, p.batch.stop) for p in parts})
    starts = [a for a, _ in groups]
    seen = [
        (p.batch.start, i, j)
        for p in parts
        for i in p.batch.eps_index
        for j in p.batch.defence_index
    ]
    grid = sorted({(i, j) for _, i, j in seen})
    if (
        starts != [0] + [b for _, b in groups[:-1]]
        or groups[-1][1] != n_images
        or len(set(seen)) != len(seen)
        or any(sorted((i, j) for a, i, j in seen if a == start) != grid for start in starts)
        or len({p.batch.adaptive for p in parts}) != 1
        or sorted(p.batch.start for p in parts if p.clean_probs is not None) != starts
        or any(
            sorted((c.eps_index, c.defence_index) for c in p.cells)
            != [(i, j) for i in sorted(p.batch.eps_index) for j in sorted(p.batch.defence_index)]
            for p in parts
        )
        or sum(p.batch.units for p in parts) != parts[0].batch.total
    ):
        raise ParamError(
            f"The sweep's parts do not cover its {n_images} images under every budget and "
            "defence exactly once."
        )
    return starts


def combine_mini_sweep(
    parts: Sequence[SweepPart],
    labels: Sequence[int] | np.ndarray,
    *,
    positive: Sequence[int] | None = None,
) -> list[SweepRow]:
    """The rows of a sweep from the parts of all its batches (in any order).

    Parameters
    ----------
    parts : sequence of SweepPart
        One per batch of :func:`plan_mini_sweep`.
    labels : array-like of int, shape (N,)
        True classes of all the sweep's images.
    positive : sequence of int, optional
        "Sick" class indices, as for :func:`run_mini_sweep`.

    Returns
    -------
    list of dict
        As :func:`run_mini_sweep` returns them. Times are summed over the
        batches; every metric is computed once on all images.

    Raises
    ------
    ParamError
        When the parts do not cover every (image, budget, defence) exactly
        once, or the labels are not valid class indices.
    """
    if not parts:
        raise ParamError("combine_mini_sweep needs the parts of every batch; got none.")
    y = check_labels(labels, parts[0].batch.n_images)
    starts = _check_cover(parts, len(y))
    clean = {p.batch.start: p.clean_probs for p in parts if p.clean_probs is not None}
    cells: dict[tuple[int, int], dict[int, SweepCell]] = {}
    for part in parts:
        for c in part.cells:
            cells.setdefault((c.eps_index, c.defence_index), {})[part.batch.start] = c
    clean_all = np.concatenate([clean[a] for a in starts])
    k = clean_all.shape[1]
    pos = list(positive) if positive is not None else []
    clean_pred = clean_all.argmax(axis=1)
    clean_accuracy = metrics.summarize(y, clean_all, n_classes=k, positive=pos)["accuracy"]
    rows: list[SweepRow] = []
    for key in sorted(cells):
        chunks = [cells[key][a] for a in starts]
        probs = np.concatenate([c.probs for c in chunks])
        rows.append(
            {
                **chunks[0].header,
                "clean_accuracy": clean_accuracy,
                "attack_seconds": round(sum(c.attack_seconds for c in chunks), 4),
                "eval_seconds": round(sum(c.eval_seconds for c in chunks), 4),
                **metrics.summarize(y, probs, n_classes=k, positive=pos, pred_clean=clean_pred),
            }
        )
    return rows
