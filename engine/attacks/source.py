"""What an attack asks of a model, as an interface: logits and input gradients.

:class:`GradientSource` is answered by :class:`engine.gradients.Compiled` for a
plain model (the one compiled helper) and by
:class:`engine.attacks.adaptive.Through` for a model behind a defence. This
module loads without TensorFlow, so that the attacks and their registry do.
"""

from __future__ import annotations

import abc

import numpy as np

__all__ = ["GradientSource"]


class GradientSource(abc.ABC):
    """What an attack asks of a model: logits, and the loss gradient with respect to the input.

    :class:`Compiled` answers for a plain model; a subclass may answer for a
    model behind a defence. Images are ``(N, H, W, 3)`` float32-convertible in
    0-255; labels ``(N,)`` integer classes.

    Attributes
    ----------
    input_shape : tuple
        ``(H, W, 3)`` as declared by the model (``None`` where free).
    num_classes : int
        Number of logits ``K``.
    deterministic : bool
        The same input always gives the same logits (``False`` for a model
        seen through a randomised defence, whose every call draws anew).
    """

    input_shape: tuple[int | None, ...]
    num_classes: int
    deterministic: bool = True

    @abc.abstractmethod
    def logits(self, x: np.ndarray) -> np.ndarray:
        """``(N, K)`` float32 logits of a batch."""

    @abc.abstractmethod
    def value_and_grad(
        self, x: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logits ``(N, K)``, per-image cross-entropy ``(N,)`` and its input gradient."""

    def sign_step(self, x: np.ndarray, labels: np.ndarray, step: float) -> np.ndarray:
        """``clip(x + step * sign(d CE(x, labels) / dx), 0, 255)``, float32; ``x`` unchanged."""
        _, _, grad = self.value_and_grad(x, labels)
        out = np.asarray(x, np.float32) + np.float32(step) * np.sign(grad).astype(np.float32)
        return np.clip(out, np.float32(0.0), np.float32(255.0))

    def probs(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities of a batch, ``(N, K)`` float64, rows summing to 1."""
        logits = self.logits(x).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def loss_grad(
        self, x: np.ndarray, labels: np.ndarray, *, targeted: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-image cross-entropy loss and its gradient with respect to ``x``.

        Sign convention: the result is always the gradient of the plain
        cross-entropy ``CE(x, labels)``; nothing is negated here.

        * ``targeted=False``: ``labels`` are the true classes; the attack
          **ascends** the loss (``x + step * sign(grad)``) to leave the class.
        * ``targeted=True``: ``labels`` are the target classes; the attack
          **descends** the loss (``x - step * sign(grad)``) to reach the target.

        ``targeted`` does not change the numbers; it is a required keyword so
        that every call site states which labels it passes and hence which way
        it must step.

        Parameters
        ----------
        x : np.ndarray
            ``(N, H, W, 3)`` RGB in 0-255.
        labels : np.ndarray
            ``(N,)`` integer class indices (true classes, or targets).
        targeted : bool
            Whether ``labels`` are attack targets (see above).

        Returns
        -------
        loss : np.ndarray
            ``(N,)`` float32.
        grad : np.ndarray
            ``(N, H, W, 3)`` float32.
        """
        _, loss, grad = self.value_and_grad(x, labels)
        return loss, grad
