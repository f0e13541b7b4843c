"""The TensorFlow half of the training-time defences: what runs while a model trains.

:mod:`engine.hardening` parses a ``--defence`` spec (no TensorFlow); this
module crafts the adversarial training batches, checks robustness every epoch
(:class:`RobustValidation`), builds a filter-trained model
(:func:`with_filter`), labels a distillation run (:func:`soft_labeller`), and
holds the small glue :mod:`engine.train` calls for ``--base``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from engine.errors import ParamError
from engine.hardening import TrainingDefence, check_steps, robust_params, robust_score

if TYPE_CHECKING:
    from engine.models import Bundle

log = logging.getLogger(__name__)

__all__ = [
    "RobustValidation",
    "adversarial_images",
    "base_record",
    "freeze_batchnorm",
    "hardener",
    "load_base",
    "robust_record",
    "scale_logits",
    "soft_labeller",
    "unfreeze_top",
    "with_filter",
]


def adversarial_images(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    defence: TrainingDefence,
    *,
    seed: int,
) -> np.ndarray:
    """``images`` with a seeded fraction ``defence.mix`` replaced by adversarial ones.

    The adversarial images are crafted on ``model`` as it is now (inference
    mode) with the true ``labels``, through :func:`engine.attacks.run_attack`
    (budget enforced, uint8). Returns a new uint8 array; ``images`` is unchanged.
    """
    from engine.attacks import run_attack

    rng = np.random.default_rng(seed)
    out = np.array(images, dtype=np.uint8, copy=True)
    n = len(out)
    k = n if defence.mix >= 1.0 else int(rng.binomial(n, defence.mix))
    if k == 0:
        return out
    pick = np.sort(rng.permutation(n)[:k])
    params = dict(defence.params)
    if defence.info.attack == "pgd":
        params["seed"] = int(rng.integers(0, 2**31 - 1))
    out[pick] = run_attack(
        defence.info.attack, model, out[pick], labels[pick], params, batch_size=len(pick)
    )
    return out


class RobustValidation(keras.callbacks.Callback):
    """Each epoch: FGSM and PGD-10 accuracy on a fixed held-out batch; stop on a collapse.

    Adds ``val_fgsm_acc``, ``val_pgd_acc`` and ``val_pgd_balanced`` (macro
    recall under PGD) to the epoch's logs, appends the last to
    ``state["pgd_history"]``, and when it collapses (:func:`engine.hardening.check_steps`)
    records ``state["catastrophic_overfitting"] = epoch``, warns and stops
    training; the best checkpoint (by ``val_robust_score``,
    :func:`engine.hardening.robust_score`) is the one kept.
    Put it after the batch-norm recalibration and before the checkpointer.
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, eps: float, n_classes: int, state: dict[str, Any]
    ) -> None:
        super().__init__()
        self.x, self.y, self.eps, self.n_classes, self.state = x, y, eps, n_classes, state

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from engine.attacks import run_attack
        from engine.gradients import predict
        from engine.metrics import summarize

        if logs is None or not len(self.y):
            return
        fgsm = run_attack("fgsm", self.model, self.x, self.y, {"eps": self.eps})
        pgd = run_attack("pgd", self.model, self.x, self.y, robust_params(self.eps))
        logs["val_fgsm_acc"] = float((predict(self.model, fgsm).argmax(1) == self.y).mean())
        probs = predict(self.model, pgd)
        logs["val_pgd_acc"] = float((probs.argmax(1) == self.y).mean())
        balanced = float(summarize(self.y, probs, n_classes=self.n_classes)["macro_recall"])
        logs["val_pgd_balanced"] = balanced
        clean = summarize(self.y, predict(self.model, self.x), n_classes=self.n_classes)
        logs["val_robust_score"] = robust_score(
            float(clean["macro_recall"]), balanced, self.n_classes
        )
        history = [float(v) for v in self.state.get("pgd_history", [])] + [balanced]
        self.state["pgd_history"] = history
        if check_steps(history):
            self.state["catastrophic_overfitting"] = epoch
            log.warning(
                "catastrophic overfitting at epoch %d: balanced PGD accuracy fell from %.3f "
                "to %.3f (FGSM accuracy %.3f); stopping and keeping the best checkpoint",
                epoch + 1,
                max(history[:-1]),
                balanced,
                logs["val_fgsm_acc"],
            )
            self.model.stop_training = True


def with_filter(model: keras.Model, defence: TrainingDefence) -> keras.Model:
    """``model`` with the filter of a ``filter:`` defence as its first layer.

    ``model`` must be a chain of layers after its input, as
    :func:`engine.models.build_classifier` makes; the backbone is shared, the
    head copied with its weights, and the ``"logits"`` / ``"probs"`` contract
    is kept.
    """
    from engine.layers import filter_layer

    if defence.kind != "filter":
        raise ParamError(f"with_filter needs a filter defence; got {defence.kind!r}.")
    if any(layer.name == "train_filter" for layer in model.layers):
        raise ParamError("This model already has a training-time filter; start from one without.")
    if len(model.inputs) != 1:
        raise ParamError("with_filter needs a model with one input.")
    inputs = keras.Input(tuple(model.inputs[0].shape[1:]), name="image")
    x = filter_layer(defence.method, defence.params)(inputs)
    for layer in model.layers[1:]:
        if isinstance(layer, keras.Model):  # the backbone: shared, called as one operation
            x = layer(x)
            continue
        # the head: fresh copies with the same weights, so that their outputs (the
        # "logits" the attacks read) belong to this graph
        twin = layer.__class__.from_config(layer.get_config())
        x = twin(x)
        twin.set_weights(layer.get_weights())
    return keras.Model(inputs, x, name=model.name)


def freeze_batchnorm(model: keras.Model) -> int:
    """Freeze every batch-norm layer of ``model`` (inference mode); return how many.

    Adversarial training crafts its images on the model in inference mode. If
    batch norm trained on, the network being optimised would be the one with
    the batch's statistics, not the one attacked: fine-tuning the chest model
    so (PGD-3 and FGSM-RS) raised FGSM accuracy while PGD-10 accuracy fell to
    3 %. Frozen, the attacked and the trained function are the same.
    """
    from engine.models import _flat_layers

    n = 0
    for layer in _flat_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            layer.trainable = False
            n += 1
    return n


def unfreeze_top(model: keras.Model, n_layers: int) -> int:
    """Unfreeze the top ``n_layers`` of a frozen pretrained backbone inside ``model``.

    For fine-tuning a ``--base`` bundle whose backbone was frozen (batch norm
    stays frozen, as in :func:`engine.models.build_classifier`). Returns the
    number of backbone layers now trainable (0 when ``model`` has no nested
    backbone).
    """
    from engine.models import _flat_layers, _unfreeze_top

    if n_layers <= 0:
        return 0
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not nested:
        return 0
    backbone = nested[0]
    _unfreeze_top(backbone, n_layers)
    return sum(1 for layer in _flat_layers(backbone) if layer.trainable and layer.weights)


# --------------------------------------------------------------------------- training glue
def load_base(path: str, dataset: str, backbone: str | None, input_size: int | None) -> Bundle:
    """The ``--base`` bundle to fine-tune, checked against the run's settings."""
    from engine.models import load_bundle

    base = load_bundle(path)
    m = base.meta
    if m.dataset_id != dataset:
        raise ParamError(f"--base {path} was trained on {m.dataset_id!r}, not {dataset!r}.")
    for name, given, have in (
        ("--backbone", backbone, m.backbone),
        ("--input-size", input_size, m.input_size),
    ):
        if given is not None and given != have:
            raise ParamError(f"{name} {given} differs from the --base bundle's {have}.")
    return base


def base_record(base: Bundle | None) -> dict[str, Any] | None:
    """What a fine-tuned bundle records of its base (``training.base_model``)."""
    if base is None:
        return None
    t = base.meta.training or {}
    return {
        "path": str(base.path),
        "model_sha256": base.meta.model_sha256,
        "backbone": base.meta.backbone,
        "clean_accuracy": base.meta.clean_metrics.get("accuracy"),
        "defence": t.get("defence"),
        # how the base was made, so that a fine-tuned bundle is reproducible on its own
        "command": t.get("command"),
        "epochs_run": t.get("epochs_run"),
        "best_epoch": t.get("best_epoch"),
        "train_seconds": t.get("train_seconds"),
        "base_model": t.get("base_model"),
    }


def robust_record(
    state: dict[str, Any], defence: TrainingDefence | None, images: int
) -> dict[str, Any] | None:
    """The per-epoch PGD check of an adversarial run (``training.robust_check``)."""
    if defence is None or defence.kind != "adversarial":
        return None
    return {
        "attack": "pgd",
        "params": robust_params(defence.eps),
        "images": images,
        "balanced_accuracy_per_epoch": state.get("pgd_history", []),
        "catastrophic_overfitting_epoch": state.get("catastrophic_overfitting"),
    }


def hardener(
    model: keras.Model, defence: TrainingDefence | None
) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None:
    """The batch transform of an adversarial-training run (``None`` otherwise)."""
    if defence is None or defence.kind != "adversarial":
        return None
    adv = defence

    def harden(xb: np.ndarray, yb: np.ndarray, seed: int) -> np.ndarray:
        return adversarial_images(model, xb, yb, adv, seed=seed)

    return harden


def soft_labeller(
    teacher: keras.Model | None, defence: TrainingDefence | None
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The soft targets of a distillation run: the teacher's probabilities (``None`` otherwise).

    Papernot et al. train the teacher at temperature ``T`` and label with
    ``softmax(F(x) / T)``. A network trained at ``T`` with logits ``F`` is a
    network trained at 1 with logits ``z = F / T`` (the last layer absorbs the
    scale), so the labels are the ``--base`` model's ordinary probabilities,
    ``softmax(z(x))``. The student (initialised from the base) trains at 1 on
    them with logits ``g``; deployed at temperature 1 its logits are
    ``T * g`` (:func:`scale_logits`), which is what makes its softmax saturate.
    """
    if teacher is None or defence is None or defence.kind != "distill":
        return None
    from engine.gradients import predict

    def soft(xb: np.ndarray) -> np.ndarray:
        return predict(teacher, xb, batch_size=len(xb)).astype(np.float32)

    return soft


def scale_logits(model: keras.Model, factor: float) -> None:
    """Multiply the ``"logits"`` layer's kernel and bias by ``factor`` in place."""
    layer = model.get_layer("logits")
    layer.set_weights([w * np.float32(factor) for w in layer.get_weights()])
