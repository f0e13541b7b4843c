"""One cell's numbers: the images of a sweep in memory, and one defence setting on one group.

:func:`prepare` loads the model and the images and predicts them once,
undefended; :func:`attack_images` makes a group's adversarial images (once per
``(attack, eps)`` for the transfer cells, once per cell for an adaptive one,
crafted through its defence setting); :func:`evaluate_cell` defends them with
one setting, predicts and measures. :func:`engine.evaluation.run_sweep` runs them over a
spec's grid; :func:`engine.evaluation.reproduce_cell` runs them for one cell.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine import attacks as _attacks
from engine import datasets as ds
from engine import defences as dfn
from engine import metrics
from engine.bundle import BUNDLE_MODEL, BundleMeta, read_meta
from engine.errors import DatasetError, ParamError
from engine.evaluation._io import split_seed
from engine.evaluation.manifest import identity_of
from engine.evaluation.spec import AttackSetting, DefenceSetting, SweepSpec
from engine.evaluation.threats import AdaptiveSetting
from engine.gradients import predict
from engine.models import load_bundle

__all__ = [
    "ATTACK_BATCH",
    "Prepared",
    "StageFn",
    "attack_images",
    "evaluate_cell",
    "perturbation",
    "prepare",
    "select",
]

#: Images per attack call. Part of a run's identity: PGD's random start is drawn
#: per batch, so the batch size changes its numbers.
ATTACK_BATCH = 64

StageFn = Callable[[str, int, int], None]


@dataclass
class Prepared:
    """Everything a sweep needs in memory: model, images, clean predictions.

    Built by :func:`prepare`; shared by :func:`run_sweep` and
    :func:`engine.evaluation.reproduce_cell`.
    """

    spec: SweepSpec
    bundle_path: Path
    meta: BundleMeta
    model: Any
    index: ds.SplitIndex
    indices: np.ndarray
    x: np.ndarray
    y: np.ndarray
    probs_clean: np.ndarray
    pred_clean: np.ndarray
    identity: dict[str, Any]

    @property
    def n_classes(self) -> int:
        """Number of classes of the model."""
        return len(self.meta.classes)


# --------------------------------------------------------------------------- preparation

_bundle_lock = threading.Lock()
_bundle_cache: dict[str, tuple[tuple[str, int, int], Any]] = {}


def _load_bundle_cached(path: Path, meta: BundleMeta) -> Any:
    """:func:`engine.models.load_bundle` (hash verified), reusing the last bundle loaded.

    Loading a model builds a new Keras object whose compiled functions must be
    traced again (seconds for a MobileNet); a resumed sweep, a second sweep
    or :func:`engine.evaluation.reproduce_cell` on the same bundle in one process
    reuse it instead. The cached entry is used only while the recorded hash
    and the model file's size and modification time are unchanged. The model
    is never mutated.
    """
    model_file = path / BUNDLE_MODEL
    try:
        st = model_file.stat()
    except OSError:
        return load_bundle(path, verify=True)  # raises a clear ModelError
    key = str(path.resolve())
    stamp = (meta.model_sha256, st.st_size, st.st_mtime_ns)
    with _bundle_lock:
        hit = _bundle_cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    bundle = load_bundle(path, verify=True)
    with _bundle_lock:
        _bundle_cache.clear()  # one model at a time: they can be large
        _bundle_cache[key] = (stamp, bundle)
    return bundle


def select(
    spec: SweepSpec,
    meta: BundleMeta,
    *,
    data_root: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[ds.SplitIndex, np.ndarray]:
    """The split and the image positions a sweep evaluates (no pixels read).

    ``limit`` (else the spec's) keeps a seeded stratified subset
    (:func:`engine.datasets.subset_indices` with the spec's seed).

    Raises
    ------
    DatasetError
        When the split differs from the one the model was evaluated on.
    """
    splits = ds.load_splits(meta.dataset_id, root=data_root, seed=split_seed(meta))
    index = splits[spec.split]
    recorded = meta.data_fingerprints.get(spec.split)
    if recorded and recorded != index.fingerprint:
        raise DatasetError(
            f"The {spec.split} split of {meta.dataset_id} found here (fingerprint "
            f"{index.fingerprint[:12]}) is not the one the model was evaluated on "
            f"({recorded[:12]}): other files, or another split seed. Its images may "
            "overlap the model's training set; point --data-root at the data the model "
            "was trained with."
        )
    lim = limit if limit is not None else spec.limit
    if lim is not None and (isinstance(lim, bool) or not isinstance(lim, int) or lim < 1):
        raise ParamError(f"limit must be a positive integer; got {lim!r}.")
    if lim is not None and lim < len(index):
        indices = ds.subset_indices(index.labels, lim, seed=spec.seed)
    else:
        indices = np.arange(len(index), dtype=np.int64)
    if len(indices) == 0:
        raise DatasetError(f"The {spec.split} split of {meta.dataset_id} is empty.")
    return index, indices


def prepare(
    spec: SweepSpec,
    bundle_path: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    limit: int | None = None,
    stage: StageFn | None = None,
    selected: tuple[ds.SplitIndex, np.ndarray] | None = None,
) -> Prepared:
    """Load the bundle and the images, and predict the clean images once.

    Parameters
    ----------
    spec : SweepSpec
    bundle_path : str or os.PathLike
        A model bundle folder (its hash is verified).
    data_root : str or os.PathLike, optional
        Data folder searched first.
    limit : int, optional
        Overrides the spec's ``limit``.
    stage : callable, optional
        ``stage(name, done, total)`` progress of the loading.
    selected : (SplitIndex, np.ndarray), optional
        The result of :func:`select`, when the caller has it already.

    Returns
    -------
    Prepared
    """
    bundle_path = Path(bundle_path)
    meta = read_meta(bundle_path)
    if selected is None:
        selected = select(spec, meta, data_root=data_root, limit=limit)
    index, indices = selected
    bundle = _load_bundle_cached(bundle_path, meta)
    x, y = ds.load_arrays(
        index,
        meta.input_size,
        indices=indices,
        progress=None if stage is None else (lambda d, t: stage("load images", d, t)),
    )
    probs_clean = predict(bundle.model, x)
    return Prepared(
        spec=spec,
        bundle_path=bundle_path,
        meta=meta,
        model=bundle.model,
        index=index,
        indices=indices,
        x=x,
        y=y,
        probs_clean=probs_clean,
        pred_clean=probs_clean.argmax(axis=1),
        identity=identity_of(spec, meta, index, indices, ATTACK_BATCH),
    )


# --------------------------------------------------------------------------- one cell


def attack_images(
    prep: Prepared,
    attack: AttackSetting,
    eps: float,
    stage: StageFn | None = None,
    *,
    through: tuple[AdaptiveSetting, DefenceSetting] | None = None,
) -> tuple[np.ndarray, float]:
    """The adversarial images of one ``(attack, eps)`` group and the seconds spent.

    ``eps == 0`` returns the clean images (no attack is run). ``through``
    (an ``[[adaptive]]`` entry and one setting) crafts them through that
    setting's defence, with the entry's EOT samples and restarts and the
    cell's attacker seed (:meth:`AdaptiveSetting.params_at`).
    """
    if eps == 0:
        return prep.x, 0.0
    name = f"attack {attack.id} eps={eps:g}"
    adaptive: dict[str, Any] = {}
    if through is not None:
        entry, setting = through
        cell = entry.params_at(eps, setting)
        adaptive = {
            k: cell[k]
            for k in ("eot_samples", "restarts", "eot_seed", "stand_in", "stand_in_sigma")
            if k in cell
        }
        adaptive["defence"] = setting.defence
        name += f" through {setting.key}"
    t0 = time.perf_counter()
    adv = _attacks.run_attack(
        attack.id,
        prep.model,
        prep.x,
        prep.y,
        attack.params_at(eps),
        batch_size=ATTACK_BATCH,
        progress=None if stage is None else (lambda d, t: stage(name, d, t)),
        **adaptive,
    )
    return adv, time.perf_counter() - t0


def _defend(
    defence: dfn.Defence, images: np.ndarray, stage: StageFn | None, name: str
) -> np.ndarray:
    if stage is None or defence.batchwise:
        # A batchwise (randomised) defence draws per place in the batch: one call, so
        # its output does not depend on whether progress is shown.
        return dfn.apply_batch(defence, images)
    out = np.empty_like(images)
    chunk = max(64, 8 * (os.cpu_count() or 1))
    n = len(images)
    stage(name, 0, n)
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        out[sl] = dfn.apply_batch(defence, images[sl])
        stage(name, sl.stop, n)
    return out


def perturbation(clean: np.ndarray, adv: np.ndarray) -> dict[str, float]:
    """Mean and max per-image L2 and L-inf of ``adv - clean`` (0-255 units)."""
    d = metrics.image_distances(clean, adv, ssim=False)
    return {
        "pert_l2_mean": float(d["l2"].mean()),
        "pert_l2_max": float(d["l2"].max()),
        "pert_linf_mean": float(d["linf"].mean()),
        "pert_linf_max": float(d["linf"].max()),
    }


def _mean_psnr(values: np.ndarray) -> float:
    """Mean PSNR over the images that differ (finite values); ``inf`` when none differs.

    Identical images (PSNR ``inf``) are left out so that one untouched image
    does not make the mean infinite.
    """
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.inf


def evaluate_cell(
    prep: Prepared,
    adv: np.ndarray,
    setting: DefenceSetting,
    *,
    stage: StageFn | None = None,
) -> dict[str, Any]:
    """Defend ``adv``, predict, and measure: the numbers of one cell.

    Parameters
    ----------
    prep : Prepared
        Model, clean images, labels and clean predictions.
    adv : np.ndarray
        The group's images (the clean images for ``eps == 0``).
    setting : DefenceSetting
    stage : callable, optional
        ``stage(name, done, total)`` progress over the defended images.

    Returns
    -------
    dict
        ``metrics`` (:func:`engine.metrics.summarize`, fooling rate relative to
        the clean undefended predictions), ``psnr_mean`` and ``ssim_mean`` of
        the defended images against the clean ones, ``per_image`` predictions,
        and ``seconds``.
    """
    t0 = time.perf_counter()
    defended = _defend(setting.defence, adv, stage, f"defence {setting.key}")
    # Image distances (OpenCV/NumPy) run beside the prediction (TensorFlow):
    # both release the GIL, so neither waits for the other.
    with ThreadPoolExecutor(max_workers=1) as side:
        distances = side.submit(metrics.image_distances, prep.x, defended)
        if np.array_equal(defended, prep.x):
            probs = prep.probs_clean  # the same images: the same numbers, no second pass
        else:
            probs = predict(prep.model, defended)
        dist = distances.result()
    summary = metrics.summarize(
        prep.y,
        probs,
        n_classes=prep.n_classes,
        positive=prep.meta.positive_indices,
        pred_clean=prep.pred_clean,
    )
    rows = np.arange(len(prep.y))
    pred = probs.argmax(axis=1)
    return {
        "metrics": summary,
        "psnr_mean": _mean_psnr(dist["psnr"]),
        "ssim_mean": float(np.mean(dist["ssim"])),
        "per_image": {
            "pred": pred.tolist(),
            "confidence": probs[rows, pred].tolist(),
            "true_confidence": probs[rows, prep.y].tolist(),
        },
        "seconds": time.perf_counter() - t0,
    }
