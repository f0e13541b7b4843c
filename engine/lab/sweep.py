"""The Explorer's mini sweep on a model: one batch, or the whole sweep in this process.

:func:`run_sweep_batch` runs one batch planned by
:func:`engine.lab.batches.plan_mini_sweep` and returns its raw predictions;
:func:`run_mini_sweep` plans, runs every batch and merges the parts with
:func:`engine.lab.batches.combine_mini_sweep`, so it gives exactly what the
model worker (:mod:`app.worker`) gives when it sends the batches one at a
time, letting other sessions' requests run between two batches.

Both take the Live lab's attacker (:class:`engine.lab.inputs.LiveAttacker`):
by default the images are attacked once per budget on the undefended model
and every defence is applied to them (transfer); with ``adaptive=True`` each
defence setting's images are crafted through that defence (BPDA, EOT over
``eot_samples`` draws of a randomised one), and every attacked row carries the
adaptive label of :func:`engine.attacks.adaptive.threat_label`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import defences as dfn
from engine.attacks.adaptive import threat_label
from engine.errors import ParamError
from engine.lab.batches import (
    IMAGES_PER_BATCH,
    SweepBatch,
    SweepCell,
    SweepPart,
    SweepRow,
    combine_mini_sweep,
    plan_mini_sweep,
)
from engine.lab.inputs import (
    DefenceLike,
    LiveAttacker,
    ProgressFn,
    as_defence,
    attack_info,
    attack_values,
    check_classes,
    check_defences,
    check_eps_values,
    check_labels,
    image_batch,
    input_hw,
    live_attacker,
)
from engine.params import as_dict, build, declared, param
from engine.threat import THREAT_CLEAN, THREAT_TRANSFER

if TYPE_CHECKING:  # TensorFlow loads when a function runs, never on import
    import keras

    from engine.attacks import AttackInfo

__all__ = ["run_mini_sweep", "run_sweep_batch"]


@declared
@dataclass(frozen=True, kw_only=True)
class MiniSweepOptions:
    """The Explorer's own setting, declared once: how many test images a mini sweep uses."""

    n_images: int = param(
        16,
        4,
        128,
        4,
        "A seeded, stratified subset of the test split; the same N gives the same images. "
        "More is slower and less noisy.",
    )


@dataclass(frozen=True)
class _Settings:
    """A sweep's attack, defences and attacker, validated."""

    info: AttackInfo
    params: list[Any]  # one attack parameter dataclass per budget
    defences: list[dfn.Defence]
    attacker: LiveAttacker

    def draws(self, defence: dfn.Defence) -> int:
        """EOT draws per gradient through ``defence``: more than 1 only adaptive and random."""
        adaptive = self.attacker.adaptive and defence.randomised
        return self.attacker.eot_samples if adaptive else 1

    def threat(self, clean_budget: bool, defence: dfn.Defence) -> str:
        """The ``threat_model`` of a cell (as :func:`engine.lab.run_lab` labels its result)."""
        if clean_budget:
            return THREAT_CLEAN
        if self.attacker.adaptive:
            return threat_label(defence, self.draws(defence))
        return THREAT_TRANSFER


#: A sweep's settings as the functions take them: attack, eps_values, defences,
#: attack_params, adaptive, eot_samples.
_Given = tuple[
    str, Sequence[float], Sequence[DefenceLike], Mapping[str, Any] | None, bool, int | None
]


def _settings(
    attack: str,
    eps_values: Sequence[float],
    defences: Sequence[DefenceLike],
    attack_params: Mapping[str, Any] | None,
    adaptive: bool,
    eot_samples: int | None,
) -> _Settings:
    info = attack_info(attack)
    base = attack_values(info, attack_params)
    params: list[Any] = [
        build(info.params_cls, {**base, "eps": e}, owner=info.title)
        for e in check_eps_values(eps_values)
    ]
    defs = [as_defence(d) for d in check_defences(defences)]
    return _Settings(info, params, defs, live_attacker(adaptive, eot_samples))


def _prepare(
    model: keras.Model,
    classes: Sequence[str],
    images: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    settings: _Given,
) -> tuple[_Settings, np.ndarray, np.ndarray]:
    """Every check of a sweep (or batch) before any model work: settings, images, labels."""
    from engine.gradients import compiled

    s = _settings(*settings)
    comp = compiled(model)
    check_classes(classes, comp.num_classes)
    x = image_batch(images, *input_hw(comp))
    return s, x, check_labels(labels, len(x))


def _run_batch(
    model: keras.Model,
    s: _Settings,
    x: np.ndarray,
    y: np.ndarray,
    batch: SweepBatch,
    progress: ProgressFn | None,
) -> SweepPart:
    """One batch on its validated images ``x`` and labels ``y``."""
    from engine.attacks import run_attack
    from engine.gradients import predict

    info = s.info
    where = f" (images {batch.start + 1}-{batch.stop})" if batch.n_images > IMAGES_PER_BATCH else ""
    done = batch.done_before

    def step(message: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, batch.total, message + where)

    clean_probs = None
    if batch.clean:
        clean_probs = predict(model, x)
        step(f"clean predictions on {len(x)} images")
    cells: list[SweepCell] = []

    def attacked(p: Any, clean_budget: bool, through: dfn.Defence | None) -> np.ndarray:
        """The images attacked at ``p.eps``: on the undefended model, or through a defence."""
        if clean_budget:
            return x
        if through is None:
            return run_attack(info.id, model, x, y, p)
        return run_attack(info.id, model, x, y, p, defence=through, eot_samples=s.draws(through))

    def evaluate(i: int, j: int, adv: np.ndarray, clean_budget: bool, attack_s: float) -> None:
        """Defend and classify one cell's attacked images."""
        p, d = s.params[i], s.defences[j]
        t = time.perf_counter()
        if not isinstance(d, dfn.Identity):
            probs = predict(model, d(adv))
        elif clean_budget and clean_probs is not None:
            probs = clean_probs
        else:
            probs = predict(model, adv)
        header = {
            "eps": float(p.eps),
            "attack": info.id,
            "attack_title": info.title,
            "attack_params": as_dict(p),
            "defence_key": dfn.describe(d),
            "defence_label": d.TITLE,
            "defence_id": d.ID,
            "defence_spec": dfn.to_spec(d),
            "threat_model": s.threat(clean_budget, d),
        }
        cells.append(SweepCell(i, j, header, probs, attack_s, time.perf_counter() - t))
        step(f"eps={p.eps:g}: {d.TITLE} evaluated")

    for i in batch.eps_index:
        p = s.params[i]
        clean_budget = math.floor(p.eps) == 0
        done_txt = "skipped (no change)" if clean_budget else "done"
        if not batch.adaptive:  # transfer: one attack, every defence applied to its images
            t = time.perf_counter()
            adv = attacked(p, clean_budget, None)
            attack_s = time.perf_counter() - t
            step(f"eps={p.eps:g}: {info.title} {done_txt}")
            for j in batch.defence_index:
                evaluate(i, j, adv, clean_budget, attack_s)
            continue
        for j in batch.defence_index:  # adaptive: each defence setting attacked through itself
            d = s.defences[j]
            t = time.perf_counter()
            adv = attacked(p, clean_budget, d)
            attack_s = time.perf_counter() - t
            step(f"eps={p.eps:g}: {info.title} through {d.TITLE} {done_txt}")
            evaluate(i, j, adv, clean_budget, attack_s)
    return SweepPart(batch, clean_probs, tuple(cells))


def run_sweep_batch(
    model: keras.Model,
    classes: Sequence[str],
    images: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    batch: SweepBatch,
    *,
    attack: str,
    eps_values: Sequence[float],
    defences: Sequence[DefenceLike],
    attack_params: Mapping[str, Any] | None = None,
    adaptive: bool = False,
    eot_samples: int | None = None,
    progress: ProgressFn | None = None,
) -> SweepPart:
    """Run one batch of a sweep planned by :func:`plan_mini_sweep`.

    Parameters
    ----------
    model, classes
        As for :func:`run_mini_sweep`.
    images, labels
        The batch's images and labels only: ``images[batch.start:batch.stop]``
        of the sweep (any size; resized to the model's input).
    batch : SweepBatch
        Which budgets to run, and whether to run the clean pass.
    attack, eps_values, defences, attack_params, adaptive, eot_samples
        The whole sweep's settings, as for :func:`run_mini_sweep`; all of them
        are validated, whichever budgets and defences this batch runs.
        ``adaptive`` must be the one the batch was planned for.
    progress : callable, optional
        ``progress(done, total, message)`` after each unit, counted over the
        whole sweep (see :class:`SweepBatch`).

    Returns
    -------
    SweepPart

    Raises
    ------
    ImageError, ParamError, ModelError
        As for :func:`run_mini_sweep`, and :class:`ParamError` when the
        images, budgets, defences or attacker do not match ``batch``.
    """
    given = (attack, eps_values, defences, attack_params, adaptive, eot_samples)
    s, x, y = _prepare(model, classes, images, labels, given)
    if len(x) != batch.stop - batch.start:
        raise ParamError(
            f"The batch covers images {batch.start}-{batch.stop - 1} ({batch.stop - batch.start}); "
            f"got {len(x)} images."
        )
    if not all(0 <= i < len(s.params) for i in batch.eps_index):
        raise ParamError(
            f"The batch's budgets {list(batch.eps_index)} are not indices into eps_values "
            f"({len(s.params)} budgets)."
        )
    if not all(0 <= j < len(s.defences) for j in batch.defence_index):
        raise ParamError(
            f"The batch's defences {list(batch.defence_index)} are not indices into defences "
            f"({len(s.defences)} defence settings)."
        )
    if batch.adaptive != s.attacker.adaptive:
        planned, asked = (
            ("an attacker who knows the defence", "one who does not")
            if batch.adaptive
            else ("an attacker who does not know the defence", "one who does")
        )
        raise ParamError(
            f"The batch was planned for {planned} but run for {asked}: plan the sweep with "
            f"plan_mini_sweep(..., adaptive={s.attacker.adaptive})."
        )
    return _run_batch(model, s, x, y, batch, progress)


def run_mini_sweep(
    model: keras.Model,
    classes: Sequence[str],
    images: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    *,
    attack: str,
    eps_values: Sequence[float],
    defences: Sequence[DefenceLike],
    attack_params: Mapping[str, Any] | None = None,
    positive: Sequence[int] | None = None,
    adaptive: bool = False,
    eot_samples: int | None = None,
    progress: ProgressFn | None = None,
) -> list[SweepRow]:
    """Accuracy and friends over a small batch, for every (eps, defence) pair.

    For each budget the adversarial images are crafted once, on the
    undefended model (:data:`THREAT_TRANSFER`), then every defence is applied
    to them and evaluated with :func:`engine.metrics.summarize`. With
    ``adaptive=True`` the attacker knows the defence: each defence setting's
    images are crafted through that setting (as ``run_lab(...,
    adaptive=True)`` does), so one attack per (budget, defence) cell. A budget
    below one grey level leaves the images unchanged (no attack is run).
    The work runs batch by batch (:func:`plan_mini_sweep`,
    :func:`run_sweep_batch`, :func:`combine_mini_sweep`), with the same
    result as one pass over everything.

    Parameters
    ----------
    model : keras.Model
        A loaded classifier with a fixed input size. Never mutated.
    classes : sequence of str
        Class names, one per model output.
    images : np.ndarray or sequence of np.ndarray
        A uint8 batch ``(N, H, W, 3)``, or a list of uint8 images of any
        size; images not at the model's input size are resized.
    labels : array-like of int, shape (N,)
        True classes.
    attack : str
        A key of ``engine.attacks.REGISTRY``.
    eps_values : sequence of float
        Budgets in 0-255 units, evaluated in the order given.
    defences : sequence of defence specs
        Each ``None`` (no defence) or anything :func:`engine.defences.from_spec`
        accepts, or a :class:`engine.defences.Defence`.
    attack_params : dict, optional
        Other attack parameters (``"eps"`` is overridden by each budget).
    positive : sequence of int, optional
        "Sick" class indices, for the patient-view metrics (sensitivity,
        specificity, NPV, PPV, FNR); without it those are ``NaN``.
    adaptive : bool, default=False
        Craft each defence setting's attack through that defence (the
        attacker knows it: exact gradients where it is differentiable, BPDA
        where it is not, EOT where it is randomised), declared in
        :class:`engine.lab.inputs.LiveAttacker`. Through no defence it is the
        transfer attack, bit for bit (only the label differs).
    eot_samples : int, optional
        EOT draws of a randomised defence per gradient when ``adaptive``;
        default: the declared :attr:`~engine.lab.inputs.LiveAttacker.eot_samples`.
    progress : callable, optional
        ``progress(done, total, message)`` after each unit of work (the clean
        pass, each attack, each defence evaluated);
        ``total = G * (1 + len(eps_values) * (1 + len(defences)))`` for
        ``G = ceil(N / IMAGES_PER_BATCH)`` groups of images, or
        ``G * (1 + len(eps_values) * 2 * len(defences))`` when ``adaptive``.

    Returns
    -------
    list of dict
        ``len(eps_values) * len(defences)`` rows, eps-major. Each holds
        ``eps``, ``attack``, ``attack_title``, ``attack_params``,
        ``defence_key`` (:func:`engine.defences.describe`, unique per
        settings), ``defence_label`` (short title), ``defence_id``,
        ``defence_spec``, ``threat_model`` (:data:`THREAT_CLEAN` below one
        grey level, else :data:`THREAT_TRANSFER`, or the adaptive label of
        :func:`engine.attacks.adaptive.threat_label` when ``adaptive``),
        ``clean_accuracy``,
        ``attack_seconds``, ``eval_seconds`` and every key of
        :func:`engine.metrics.summarize` (``n_images``, ``accuracy``,
        ``macro_recall``, ``fooling_rate``, ``sensitivity``, ...).

    Raises
    ------
    ImageError, ParamError, ModelError
        As for :func:`engine.lab.run_lab`; everything is validated before
        any attack runs.
    """
    given = (attack, eps_values, defences, attack_params, adaptive, eot_samples)
    s, x, y = _prepare(model, classes, images, labels, given)
    parts = [
        _run_batch(model, s, x[b.start : b.stop], y[b.start : b.stop], b, progress)
        for b in plan_mini_sweep(len(x), eps_values, defences, adaptive=s.attacker.adaptive)
    ]
    return combine_mini_sweep(parts, y, positive=positive)
