"""Input defences: image transformations applied before the classifier.

A defence is a frozen parameter dataclass (house rule 5). Each tunable
parameter is declared once, as a field made by :func:`engine.params.param`
(collected in ``PARAMS``); construction validates them, and calling the
instance transforms images::

    >>> import numpy as np
    >>> from engine.defences import NLM, Chain, Bilateral, GuidedFilter
    >>> images = np.zeros((4, 32, 32, 3), np.uint8)
    >>> chain = Chain((NLM(), Bilateral(), GuidedFilter()))
    >>> chain(images).shape
    (4, 32, 32, 3)
    >>> chain.TITLE
    'NLM → Bilateral → Guided'

Available defences (``REGISTRY`` maps each id to its class):

* ``none`` -- :class:`Identity`, "no defence" as a first-class setting;
* ``nlm`` -- :class:`NLM`, non-local means (``cv2.fastNlMeansDenoisingColored``);
* ``bilateral`` -- :class:`Bilateral` (``cv2.bilateralFilter``);
* ``guided`` -- :class:`GuidedFilter`, self-guided (``cv2.ximgproc.guidedFilter``);
* ``gaussian`` -- :class:`GaussianBlur` (``cv2.GaussianBlur``);
* ``median`` -- :class:`MedianBlur` (``cv2.medianBlur``);
* ``webp_flip`` -- :class:`WebPFlip`, the "low-level transformation": WebP
  re-encoding then a horizontal flip;
* ``jpeg`` -- :class:`JPEG` re-encoding;
* ``bit_depth`` -- :class:`BitDepth`, bit-depth reduction (feature squeezing);
* ``resize_pad`` -- :class:`RandomResizePad`, random resize-and-pad (Xie et
  al. 2018), randomised with a seed;
* :class:`Chain` -- defences applied in order; :data:`SEED_CHAIN` is the
  seed papers' NLM → bilateral → guided filter chain with default settings.

Images
------
Pixels follow the engine convention (see :mod:`engine`): RGB, ``uint8``,
0-255. Every defence accepts one image ``(H, W, 3)``, a grey image ``(H, W)``
or ``(H, W, 1)``, or a batch ``(N, H, W, 3)`` (or ``(N, H, W, 1)``) and
returns a new array of the same shape and dtype; the input is never modified.
Anything else raises :class:`~engine.errors.ImageError` saying what was given.
Grey images are processed as grey: every OpenCV function used here has a
single-channel variant (``fastNlMeansDenoising`` for NLM, single-channel
JPEG/WebP encoding, and the filters work per channel), so nothing is
replicated to three channels. OpenCV's colour-aware functions (NLM's Lab
conversion, JPEG/WebP's YCbCr conversion) expect BGR, so colour images are
swapped RGB → BGR on the way in and back on the way out.

Batches are spread over a thread pool by :func:`apply_batch` (OpenCV releases
the GIL); the result is identical to applying the defence image by image.

Modules: :mod:`~engine.defences.base` (the :class:`Defence` base class, image
checks, :func:`apply_batch`, the backward-pass vocabulary),
:mod:`~engine.defences.filters`, :mod:`~engine.defences.codecs`,
:mod:`~engine.defences.randomised`, :mod:`~engine.defences.chain`,
:mod:`~engine.defences.linear` (the linear maps' forward and adjoint); this
module holds the registry and the specs. OpenCV is imported when a defence first
filters, so the registry and the declarations load without it.

Limits of input-transformation defences
---------------------------------------
Athalye, Carlini & Wagner (2018), "Obfuscated Gradients Give a False Sense of
Security" (ICML), broke every such defence they examined: an adaptive attacker
differentiates *through* the transformation, replacing a non-differentiable
step by a differentiable stand-in on the backward pass (BPDA, usually the
identity). Robustness measured with attacks crafted on the undefended model
(the transfer, or "grey-box", setting that this dashboard shows by default)
therefore **overstates** the security a defence gives against an attacker who
knows it is there. Each defence here has a backward pass,
:meth:`Defence.estimate_gradient` (exact or BPDA, named by
:attr:`Defence.backward`), an attacker's forward pass on float pixels,
:meth:`Defence.forward`, and, when randomised, a sampler,
:meth:`Defence.sample` (EOT), so that an adaptive attack
(``engine.attacks.run_attack(..., defence=...)``) can pass through it:

=============================================  ==============  ==========
defence                                        backward        randomised
=============================================  ==============  ==========
none, gaussian, resize_pad (per draw)          exact           resize_pad
nlm, bilateral, guided, median, bit_depth      bpda-identity
jpeg, webp_flip (its flip exact)               bpda-identity
chain                                          the members'    if a member is
=============================================  ==============  ==========
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.defences.base import BACKWARD_BPDA, BACKWARD_EXACT, Defence, apply_batch
from engine.defences.chain import Chain
from engine.defences.codecs import JPEG, WebPFlip
from engine.defences.filters import (
    NLM,
    Bilateral,
    BitDepth,
    GaussianBlur,
    GuidedFilter,
    Identity,
    MedianBlur,
)
from engine.defences.randomised import RandomResizePad, ResizePadDraw
from engine.errors import ParamError
from engine.params import as_dict, build, format_number

__all__ = [
    "BACKWARD_BPDA",
    "BACKWARD_EXACT",
    "JPEG",
    "NLM",
    "REGISTRY",
    "SEED_CHAIN",
    "Bilateral",
    "BitDepth",
    "Chain",
    "Defence",
    "GaussianBlur",
    "GuidedFilter",
    "Identity",
    "MedianBlur",
    "RandomResizePad",
    "ResizePadDraw",
    "WebPFlip",
    "apply_batch",
    "describe",
    "from_spec",
    "make_defence",
    "seed_chain",
    "to_spec",
]


def _fmt(value: Any) -> str:
    """A parameter value in a label: ``on``/``off`` for bools, ``10`` for ``10.0``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return format_number(value)
    return str(value)


# --------------------------------------------------------------------------- registry & specs

REGISTRY: dict[str, type[Defence]] = {
    cls.ID: cls
    for cls in (
        Identity,
        NLM,
        Bilateral,
        GuidedFilter,
        GaussianBlur,
        MedianBlur,
        WebPFlip,
        JPEG,
        BitDepth,
        RandomResizePad,
    )
}
"""Defence id -> class. Chains are built from these (see :func:`make_defence`)."""


def seed_chain() -> Chain:
    """The seed papers' chain: NLM → bilateral → guided filter, default settings."""
    return Chain((NLM(), Bilateral(), GuidedFilter()))


SEED_CHAIN: Chain = seed_chain()
"""NLM → bilateral → guided filter with default settings (id ``nlm+bilateral+guided``)."""


def make_defence(defence_id: str, params: Mapping[str, Any] | None = None) -> Defence:
    """Build a defence from its id and a dict of parameters.

    Parameters
    ----------
    defence_id : str
        A key of :data:`REGISTRY` (e.g. ``"nlm"``), or ``"+"``-joined keys for a
        :class:`Chain` (e.g. ``"nlm+bilateral+guided"``).
    params : dict, optional
        Parameter values; missing ones take their declared defaults. For a
        chain, a dict from member id to that member's parameters (a member id
        that occurs twice gets the same parameters each time).

    Returns
    -------
    Defence

    Raises
    ------
    ParamError
        Unknown id (the message lists the known ids), unknown parameter, or a
        value outside its declared range.
    """
    if not isinstance(defence_id, str):
        raise ParamError(f"Defence id must be a string; got {defence_id!r}.")
    if params is not None and not isinstance(params, Mapping):
        raise ParamError(f"Defence parameters must be a dict; got {type(params).__name__}.")
    if "+" in defence_id:
        ids = defence_id.split("+")
        per_member = dict(params or {})
        unknown = sorted(set(per_member) - set(ids))
        if unknown:
            raise ParamError(
                f"Chain {defence_id}: parameters given for {', '.join(unknown)}, "
                f"which is not in the chain; members: {', '.join(ids)}."
            )
        return Chain(tuple(make_defence(i, per_member.get(i)) for i in ids))
    cls = REGISTRY.get(defence_id)
    if cls is None:
        raise ParamError(
            f"Unknown defence {defence_id!r}; known: {', '.join(REGISTRY)} "
            f"(join ids with '+' for a chain)."
        )
    if params and not cls.PARAMS:
        raise ParamError(f"{cls.TITLE}: takes no parameters; got {', '.join(sorted(params))}.")
    return build(cls, dict(params or {}), owner=cls.TITLE)


def to_spec(defence: Defence) -> dict[str, Any] | list[dict[str, Any]]:
    """JSON-able description of a defence, for result files.

    A single defence gives ``{"id": ..., "params": {...}}``; a chain gives the
    list of its members' specs. :func:`from_spec` inverts it.
    """
    if isinstance(defence, Chain):
        return [{"id": m.ID, "params": as_dict(m)} for m in defence.defences]
    if not isinstance(defence, Defence):
        raise ParamError(f"to_spec: expected a defence; got {defence!r}.")
    return {"id": defence.ID, "params": as_dict(defence)}


def from_spec(spec: str | Mapping[str, Any] | Sequence[Any]) -> Defence:
    """Rebuild a defence from :func:`to_spec` output (or from a bare id string).

    Raises
    ------
    ParamError
        Malformed spec, unknown id or invalid parameters.
    """
    if isinstance(spec, str):
        return make_defence(spec)
    if isinstance(spec, Mapping):
        extra = sorted(set(spec) - {"id", "params"})
        if "id" not in spec or extra:
            raise ParamError(
                f"Defence spec must be {{'id': ..., 'params': {{...}}}}; got {dict(spec)!r}."
            )
        return make_defence(spec["id"], spec.get("params"))
    if isinstance(spec, Sequence):
        if not spec:
            raise ParamError("Defence spec: a chain needs at least one member; got [].")
        return Chain(tuple(from_spec(s) for s in spec))
    raise ParamError(f"Defence spec must be a dict, a list or an id; got {spec!r}.")


def describe(defence: Defence) -> str:
    """Short label with parameters, e.g. ``NLM(h=10, h_color=10, template_window=7, ...)``.

    Chains join their members with arrows; :class:`Identity` is ``"None"``.
    """
    if isinstance(defence, Chain):
        return " → ".join(describe(m) for m in defence.defences)
    if not defence.PARAMS:
        return defence.LABEL
    inner = ", ".join(f"{p.name}={_fmt(getattr(defence, p.name))}" for p in defence.PARAMS)
    return f"{defence.LABEL}({inner})"
