"""The "Live lab" and the "Explorer" mini sweep: attack one image, or a few, and defend them.

:func:`run_lab` (in :mod:`engine.lab.live`) takes one image of any size,
resizes it to the model's input, crafts an adversarial version with a
registered attack (through :func:`engine.attacks.run_attack`, which enforces
the budget), passes it through a defence and reports the three predictions,
the perturbation (raw and amplified for display), its size and the image
similarity, with timings (a defence that mirrors the image, :func:`mirrors`,
is flipped back before it is compared with the original).
:func:`run_mini_sweep` (in :mod:`engine.lab.sweep`)
does the same for a small batch over several budgets and defences and returns
one metrics row per (eps, defence) cell; it runs in batches
(:func:`plan_mini_sweep` and :func:`combine_mini_sweep` in
:mod:`engine.lab.batches`, which need no model; :func:`run_sweep_batch`)
that a scheduler can interleave with other work, with the same result as one
pass. :mod:`engine.lab.inputs` checks what both accept.

Threat models
-------------
By default attacks are crafted on the **undefended** model and then tested
through the defence (the transfer, "grey-box" setting): see
:data:`engine.threat.THREAT_TRANSFER`. This overstates what a defence achieves
against an attacker who knows it is there (Athalye, Carlini & Wagner 2018);
see :mod:`engine.defences`. ``run_lab(..., adaptive=True)`` is that attacker:
the attack is crafted *through* the defence (exact gradients where it is
differentiable, BPDA where it is not, EOT over
:attr:`LiveAttacker.eot_samples` draws where it is randomised), and the
result's ``threat_model`` is the adaptive label naming the backward pass
(:func:`engine.threat.adaptive_label`). ``run_mini_sweep(..., adaptive=True)``
is the same attacker for a batch: each defence setting's images are crafted
through that setting (one attack per budget and setting, so batches are planned
per setting: ``plan_mini_sweep(..., adaptive=True)``), and every attacked row's
``threat_model`` is that adaptive label.

Importing this package is cheap: it never imports TensorFlow or Keras at
import time (the dashboard runs the functions in a separate model worker
process, :mod:`app.worker`, and only needs the result types here).
TensorFlow loads when a function runs.

Pixels follow the engine convention (see :mod:`engine`): RGB ``uint8`` 0-255,
``eps`` in the same units.

Example
-------
>>> from engine.models import load_bundle                          # doctest: +SKIP
>>> bundle = load_bundle("assets/models/chest_xray__mobilenet_v3_large")  # doctest: +SKIP
>>> res = run_lab(bundle.model, bundle.meta.classes, image, attack="pgd",
...               attack_params={"eps": 4}, defence="nlm+bilateral+guided")  # doctest: +SKIP
>>> res.flipped, res.restored, res.linf <= 4                       # doctest: +SKIP
(True, True, True)
"""

from __future__ import annotations

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
    check_labels,
    count_images,
    image_batch,
)
from engine.lab.live import (
    LABEL_FROM_MODEL,
    LABEL_TRUE,
    MAX_GAIN,
    TOP_K,
    LabResult,
    Prediction,
    mirrors,
    run_lab,
)
from engine.lab.sweep import MiniSweepOptions, run_mini_sweep, run_sweep_batch
from engine.threat import THREAT_CLEAN, THREAT_TRANSFER

__all__ = [
    "IMAGES_PER_BATCH",
    "LABEL_FROM_MODEL",
    "LABEL_TRUE",
    "MAX_GAIN",
    "THREAT_CLEAN",
    "THREAT_TRANSFER",
    "TOP_K",
    "DefenceLike",
    "LabResult",
    "LiveAttacker",
    "MiniSweepOptions",
    "Prediction",
    "ProgressFn",
    "SweepBatch",
    "SweepCell",
    "SweepPart",
    "SweepRow",
    "check_labels",
    "combine_mini_sweep",
    "count_images",
    "image_batch",
    "mirrors",
    "plan_mini_sweep",
    "run_lab",
    "run_mini_sweep",
    "run_sweep_batch",
]
