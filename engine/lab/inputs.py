"""What the Live lab and the mini sweep accept, checked before any model work.

Every function here raises an :mod:`engine.errors` exception whose message
names the argument, what is allowed and what was given. They are public
because the model worker (:mod:`app.worker`) checks a sweep's images and
labels with them before it sends the first batch, and resizes a ``predict``
batch with :func:`image_batch`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import defences as dfn
from engine.errors import ImageError, ModelError, ParamError
from engine.images import resize_image
from engine.params import as_dict, declared, param, validate

if TYPE_CHECKING:
    from engine.attacks import AttackInfo
    from engine.gradients import Compiled

__all__ = [
    "DefenceLike",
    "LiveAttacker",
    "ProgressFn",
    "as_defence",
    "attack_info",
    "attack_values",
    "check_classes",
    "check_defences",
    "check_eps_values",
    "check_image",
    "check_label",
    "check_labels",
    "count_images",
    "image_batch",
    "input_hw",
    "live_attacker",
]

#: ``progress(done, total, message)``, called after each unit of work.
ProgressFn = Callable[[int, int, str], None]
#: What a defence argument accepts: ``None`` (no defence), a registry id string
#: (``"nlm"``, ``"nlm+bilateral+guided"``), a spec from :func:`engine.defences.to_spec`
#: (dict, or list of dicts for a chain) or a :class:`engine.defences.Defence`.
DefenceLike = dfn.Defence | str | Mapping[str, Any] | Sequence[Any] | None


@declared
@dataclass(frozen=True, kw_only=True)
class LiveAttacker:
    """What the Live lab's attacker knows, declared once (the lab's switch and its EOT draws).

    Parameters
    ----------
    adaptive : bool, default=False
        The attacker knows the defence and crafts the attack through it
        (``engine.attacks.run_attack(..., defence=D)``): the defence's exact
        gradient where it is differentiable, the identity on the backward pass
        where it is not (BPDA). ``False``: crafted on the undefended model
        (transfer).
    eot_samples : int, default=4
        Draws of a *randomised* defence (random resize-and-pad) whose gradients
        an adaptive attacker averages at every step (EOT), in [1, 32]; fresh
        draws each step. Each draw costs one more gradient, so the live lab
        keeps it small (the engine allows more,
        :class:`engine.attacks.adaptive.AdaptiveParams`). Ignored for a
        deterministic defence and for the transfer attacker.
    """

    adaptive: bool = param(
        False,
        help="Off: the attack is made on the model alone and the defence is applied "
        "afterwards. On: the attacker knows the defence and attacks straight through it. "
        "BPDA: where the defence has no usable gradient (a filter, a codec), the attacker "
        "pretends it lets the image through unchanged when working out which way to push "
        "the pixels. EOT: against a random defence, the attacker averages its push over "
        "several random draws of the defence, so that it works whichever draw comes.",
    )
    eot_samples: int = param(
        4,
        1,
        32,
        1,
        "Random draws of a randomised defence averaged at every attack step (EOT)",
        widget="number",
    )

    def __post_init__(self) -> None:
        validate(self, "Live lab attacker")


def live_attacker(adaptive: object, eot_samples: object) -> LiveAttacker:
    """The lab's attacker; ``eot_samples=None`` takes the declared default."""
    values = {"adaptive": adaptive} | ({} if eot_samples is None else {"eot_samples": eot_samples})
    return LiveAttacker(**values)  # type: ignore[arg-type]


def input_hw(comp: Compiled) -> tuple[int, int]:
    """The model's fixed input ``(height, width)``; :class:`ModelError` when it has none."""
    h, w = comp.input_shape[0], comp.input_shape[1]
    if h is None or w is None:
        raise ModelError(
            "The lab needs a model with a fixed input size; this one accepts any size "
            f"({comp.input_shape})."
        )
    return int(h), int(w)


def check_classes(classes: Sequence[str], k: int) -> list[str]:
    """``classes`` as a list of ``k`` names, one per model output."""
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise ParamError(f"classes must be a list of {k} class names; got {classes!r}.")
    names = [str(c) for c in classes]
    if len(names) != k:
        raise ParamError(
            f"classes must name the model's {k} outputs; got {len(names)} names ({names})."
        )
    return names


def check_label(label: object, k: int) -> int | None:
    """A class index in ``[0, k)``, or ``None``."""
    if label is None:
        return None
    if isinstance(label, bool) or not isinstance(label, int | np.integer):
        raise ParamError(f"label must be a class index in [0, {k - 1}] or None; got {label!r}.")
    if not 0 <= int(label) < k:
        raise ParamError(f"label must be a class index in [0, {k - 1}] or None; got {label}.")
    return int(label)


def check_labels(labels: Sequence[int] | np.ndarray, n_images: int) -> np.ndarray:
    """``labels`` as a 1-D array with one class index per image."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n_images:
        raise ParamError(
            f"labels must be one class index per image; got {y.shape} labels for {n_images} images."
        )
    return y


def attack_info(attack: object) -> AttackInfo:
    """The registry entry of an attack id."""
    from engine.attacks import REGISTRY

    info = REGISTRY.get(attack) if isinstance(attack, str) else None
    if info is None:
        raise ParamError(f"Unknown attack {attack!r}; known: {', '.join(REGISTRY)}.")
    return info


def attack_values(info: AttackInfo, attack_params: object) -> dict[str, Any]:
    """The attack parameters given (a dict or the attack's parameter dataclass) as a dict."""
    if attack_params is None:
        return {}
    if isinstance(attack_params, info.params_cls):
        return as_dict(attack_params)
    if isinstance(attack_params, Mapping):
        return dict(attack_params)
    raise ParamError(
        f"{info.title}: attack_params must be a dict of parameters; "
        f"got {type(attack_params).__name__}."
    )


def check_eps_values(eps_values: object) -> list[float]:
    """A non-empty list of budgets (each one is validated by the attack's declaration)."""
    if isinstance(eps_values, str) or not isinstance(eps_values, Sequence | np.ndarray):
        raise ParamError(f"eps_values must be a list of budgets (0-255 units); got {eps_values!r}.")
    values = list(eps_values)
    if not values:
        raise ParamError("eps_values must hold at least one budget; got [].")
    return values


def check_defences(defences: object) -> Sequence[DefenceLike]:
    """A non-empty list of defence specs (each one is checked when it is built)."""
    if isinstance(defences, str | Mapping) or not isinstance(defences, Sequence):
        raise ParamError(f"defences must be a list of defence specs; got {defences!r}.")
    if not defences:
        raise ParamError("defences must hold at least one defence (None for no defence); got [].")
    return defences


def as_defence(defence: DefenceLike) -> dfn.Defence:
    """A :class:`engine.defences.Defence` for anything :data:`DefenceLike` names."""
    if defence is None:
        return dfn.Identity()
    if isinstance(defence, dfn.Defence):
        return defence
    return dfn.from_spec(defence)


def check_image(image: object, name: str = "image") -> np.ndarray:
    """One uint8 image ``(H, W, 3)``, ``(H, W)`` or ``(H, W, 1)``, unchanged."""
    if not isinstance(image, np.ndarray):
        raise ImageError(
            f"{name} must be a numpy uint8 RGB array (H, W, 3) in 0-255; "
            f"got {type(image).__name__} (decode uploads with engine.images.decode_image)."
        )
    if image.dtype != np.uint8:
        raise ImageError(
            f"{name} must hold uint8 pixels in 0-255; got dtype {image.dtype} "
            "(decode uploads with engine.images.decode_image)."
        )
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3))):
        raise ImageError(
            f"{name} must be one image shaped (H, W, 3), (H, W) or (H, W, 1); "
            f"got shape {image.shape}."
        )
    return image


def _image_items(images: object) -> np.ndarray | Sequence[Any]:
    """A uint8 batch array or a sequence of images, after the container checks."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        if images.dtype != np.uint8:
            raise ImageError(f"images must hold uint8 pixels in 0-255; got dtype {images.dtype}.")
        items: np.ndarray | Sequence[Any] = images
    elif isinstance(images, Sequence) and not isinstance(images, str | bytes):
        items = images
    else:
        raise ImageError(
            "images must be a uint8 batch (N, H, W, 3) or a list of uint8 images; "
            f"got {type(images).__name__}"
            + (f" of shape {images.shape}" if isinstance(images, np.ndarray) else "")
            + "."
        )
    if len(items) == 0:
        raise ParamError("images must hold at least one image; got none.")
    return items


def count_images(images: np.ndarray | Sequence[np.ndarray]) -> int:
    """How many images a batch or list holds (at least one), without decoding them."""
    return len(_image_items(images))


def image_batch(images: np.ndarray | Sequence[np.ndarray], h: int, w: int) -> np.ndarray:
    """A ``(N, h, w, 3)`` uint8 batch from a batch array or a list of images of any size.

    Parameters
    ----------
    images : np.ndarray or sequence of np.ndarray
        A uint8 batch ``(N, H, W, 3)``, or uint8 images ``(H, W, 3)``,
        ``(H, W)`` or ``(H, W, 1)`` of any sizes.
    h, w : int
        The size wanted (the model's input).

    Returns
    -------
    np.ndarray
        ``images`` itself when it is already a uint8 ``(N, h, w, 3)`` batch;
        otherwise every image resized with :func:`engine.images.resize_image`
        (aspect ratio not kept, grey expanded to RGB).

    Raises
    ------
    ImageError
        Not a uint8 batch or a list of uint8 images.
    ParamError
        No image at all.
    """
    items = _image_items(images)
    if isinstance(items, np.ndarray) and items.shape[1:] == (h, w, 3):
        return items
    return np.stack(
        [resize_image(check_image(im, f"images[{i}]"), (h, w)) for i, im in enumerate(items)]
    )
