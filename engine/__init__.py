"""RobustLens engine: datasets, models, attacks, defences and metrics.

Pixel convention (the one and only, for the whole project)
-----------------------------------------------------------
* Images are **RGB**, shape ``(H, W, 3)`` or batches ``(N, H, W, 3)``.
* Values are in **0-255**: ``uint8`` on disk, in defences and in results;
  ``float32`` in 0-255 inside attacks.
* Attack budgets ``eps`` are in the **same 0-255 units**: ``eps=8`` means a
  change of at most 8/255 of the range per pixel and channel (L-infinity).
* Every model takes raw 0-255 RGB: its preprocessing (scaling, channel order,
  mean subtraction) is a layer inside the model, never done by the caller.
* Attacks return images rounded to ``uint8``. Rounding erases any perturbation
  smaller than 0.5 (in 0-255 units), so ``eps < 0.5`` is effectively no attack.

The engine is a library: it never imports the dashboard (``app``, ``ui``) or
streamlit. Submodules are imported on demand so that ``import engine`` stays
cheap. TensorFlow loads on import of ``engine.models``, ``engine.gradients``
and ``engine.train`` only; ``engine.attacks`` and ``engine.lab`` import it
when an attack runs, and OpenCV loads when a filter runs or a model's input is
resized. So the registries and parameter declarations (``engine.attacks``,
``engine.defences``, ``engine.params``) load without either: the dashboard's
process uses them to build its widgets. See ``docs/DESIGN.md`` for the layers.
"""

from __future__ import annotations

__version__ = "0.1.0"

PIXEL_MIN = 0.0
PIXEL_MAX = 255.0
