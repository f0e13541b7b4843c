"""A chain of defences applied in order (the seed papers' NLM → bilateral → guided)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.defences.base import BACKWARD_EXACT, Defence, apply_batch
from engine.errors import ParamError

__all__ = ["Chain"]


@dataclass(frozen=True)
class Chain(Defence):
    """Several defences applied in order, e.g. the seed chain NLM → bilateral → guided.

    Nested chains are flattened. ``TITLE`` and ``ID`` are derived from the
    members' labels and ids (``"NLM → Bilateral → Guided"``,
    ``"nlm+bilateral+guided"``). Forward pass exact (the members in order);
    backward pass: the members' backward passes applied in reverse order
    (every backward pass here ignores the image, so no intermediate outputs
    are needed). A chain with a randomised member is randomised; one draw of
    it draws each member.

    Parameters
    ----------
    defences : tuple of Defence
        Non-empty; applied first to last.
    """

    defences: tuple[Defence, ...]

    def __post_init__(self) -> None:
        members = self.defences
        if isinstance(members, Defence) or not isinstance(members, (tuple, list)):
            raise ParamError(
                f"Chain: 'defences' must be a non-empty tuple of defences; "
                f"got {type(members).__name__}."
            )
        flat: list[Defence] = []
        for i, m in enumerate(members):
            if isinstance(m, Chain):
                flat.extend(m.defences)
            elif isinstance(m, Defence):
                flat.append(m)
            else:
                raise ParamError(f"Chain: member {i} must be a defence (e.g. NLM()); got {m!r}.")
        if not flat:
            raise ParamError("Chain: 'defences' must be a non-empty tuple of defences; got ().")
        object.__setattr__(self, "defences", tuple(flat))

    @property
    def ID(self) -> str:  # type: ignore[override]
        """``"+"``-joined member ids, e.g. ``"nlm+bilateral+guided"``."""
        return "+".join(m.ID for m in self.defences)

    @property
    def TITLE(self) -> str:  # type: ignore[override]
        """Arrow-joined member labels, e.g. ``"NLM → Bilateral → Guided"``."""
        return " → ".join(m.LABEL for m in self.defences)

    @property
    def LABEL(self) -> str:  # type: ignore[override]
        """Same as :attr:`TITLE`."""
        return self.TITLE

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        """True only if every member is differentiable."""
        return all(m.differentiable for m in self.defences)

    @property
    def backward(self) -> str:  # type: ignore[override]
        """``"exact"`` when every member's is, else the members' other kinds joined by ``+``."""
        kinds = [m.backward for m in self.defences if m.backward != BACKWARD_EXACT]
        return "+".join(dict.fromkeys(kinds)) or BACKWARD_EXACT

    @property
    def mirrors(self) -> bool:  # type: ignore[override]
        """True when an odd number of members mirror (two flips cancel)."""
        return sum(m.mirrors for m in self.defences) % 2 == 1

    @property
    def randomised(self) -> bool:  # type: ignore[override]
        """True if any member is randomised."""
        return any(m.randomised for m in self.defences)

    @property
    def batchwise(self) -> bool:  # type: ignore[override]
        """True if any member's draws depend on the place in the batch."""
        return any(m.batchwise for m in self.defences)

    def _one(self, img: np.ndarray) -> np.ndarray:
        out = img
        for m in self.defences:
            out = m._one(out)
        return out

    def _batch(self, images: np.ndarray, workers: int) -> np.ndarray:
        out = images
        for m in self.defences:
            out = apply_batch(m, out, workers=workers)
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The members' forward passes in order (each exactly as deployed)."""
        for m in self.defences:
            x = m.forward(x)
        return x

    def sample(self, rng: np.random.Generator) -> Defence:
        """One draw of each member, in order (deterministic members are themselves)."""
        return Chain(tuple(m.sample(rng) for m in self.defences)) if self.randomised else self

    def estimate_gradient(self, images: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """The members' backward passes applied last to first."""
        for m in reversed(self.defences):
            grad = m.estimate_gradient(images, grad)
        return grad
