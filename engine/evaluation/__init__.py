"""Recap sweeps: metrics against attack strength for every defence setting, precomputed.

The dashboard's recap curves (seed 001, figures 5.1-5.2: model performance and
impact on health against attack strength) come from a *sweep*: every attack
of a spec at every budget, through every defence setting, on a fixed set of
test images. A sweep is a build output with provenance (house rule 10): it
records how it was made, and :func:`check_stale` says when it no longer
matches the model or the code.

Command line::

    python -m engine.evaluation --spec assets/specs/default.toml \\
        --model runs/models/chest_xray__mobilenet_v3_large --out runs/recap/chest_xray
    python -m engine.evaluation ... --only pgd:8:jpeg:quality=75   # recompute one cell, compare
    python -m engine.evaluation ... --only pgd:8:jpeg:quality=75 --threat adaptive
    python -m engine.evaluation --model BUNDLE --out DIR --check     # fresh or stale?

Running the same command again continues an interrupted sweep; running it with
a spec that adds budgets, attacks, defence settings or adaptive cells extends a
finished one (only the new cells are computed).

Python::

    >>> from engine.evaluation import load_spec, run_sweep, load_results  # doctest: +SKIP
    >>> run_sweep(load_spec("assets/specs/smoke.toml"), bundle, "runs/recap/x")   # doctest: +SKIP
    >>> table, manifest = load_results("runs/recap/x")                          # doctest: +SKIP
    >>> check_stale("runs/recap/x", bundle)                                     # doctest: +SKIP
    []

The spec format is documented in :mod:`engine.evaluation.spec`, the order of work
and the resume rules in :mod:`engine.evaluation.sweep`, the journal of finished
cells in :mod:`engine.evaluation.journal`, what a manifest records and what must
match to reuse a folder in :mod:`engine.evaluation.manifest`.

Threat model
------------
Every row says who knew what in ``threat_model``: ``"clean (no attack)"`` for
``eps = 0``; ``"crafted on the undefended model, tested through the
defence"`` for the transfer rows (the attacker does not know the defence; an
adaptive attacker does better, Athalye et al. 2018). A spec's ``[[adaptive]]``
entries add adaptive rows, crafted through each defence setting
(:mod:`engine.evaluation.threats`); they name what they were crafted through
(:func:`engine.threat.adaptive_label` of the setting's backward pass and EOT
samples, e.g. ``"adaptive: crafted through the defence (exact, EOT 8)"``). A
cell is ``(attack, eps, defence setting, threat model)``; the queries read
the transfer rows unless asked for another threat model
(:func:`engine.evaluation.query.for_threat`). A table without adaptive rows,
or made before they existed, is all-transfer.

Output folder
-------------
``results.csv``
    One row per cell ``(attack, eps, defence setting, threat model)``; the clean cells
    (``eps = 0``) are computed once and repeated for every attack that lists
    0, so each attack's curve starts at its clean point. Tidy, read with plain
    ``pandas.read_csv``; list and dict columns hold JSON text
    (:func:`load_results` decodes them). ``NaN`` means "undefined for this
    data" (see :mod:`engine.metrics`).
``per_image.csv.gz``
    For a fixed, seeded, stratified subset of the images (``per_image`` in the
    spec): one row per image and cell, so the dashboard can show which images
    flip. Gzip-compressed CSV: ``pandas.read_csv`` reads it as is
    (:func:`per_image_file` also finds a format-1 folder's ``per_image.csv``).
``manifest.json``
    Provenance: format (2), status (``"partial"``/``"complete"``), engine version, git
    commit and dirty flag, the spec's full text and SHA-256, the model bundle
    (path, id, backbone, ``model_sha256`` from its metadata, the file's own
    hash and whether they match), dataset id, split, split fingerprint, the
    image indices used (and the per-image subset with its refs), seeds,
    attack batch size, start/end times, elapsed seconds, each run (resumes
    included), and the machine (platform, CPUs, Python, TensorFlow, Keras,
    OpenCV, NumPy, pandas versions).
``cells/``
    Only while a sweep runs (or after it was interrupted): its journal, one
    JSON file per finished cell (written atomically, with every image's
    prediction). A completed sweep folds them into the tables and removes the
    folder; the tables, read back exactly, are then the record of its finished
    cells, for extending it and for :func:`reproduce_cell`.

``results.csv`` columns
-----------------------
=========================  ================================================================
column                     meaning
=========================  ================================================================
dataset                    dataset id (e.g. ``chest_xray``)
split                      split evaluated (``test`` by default)
model                      model id: the bundle's folder name
backbone                   backbone id (e.g. ``mobilenet_v3_large``)
attack                     attack id (``fgsm``, ``pgd``, ...)
attack_params              JSON: the attack's full parameters at this eps
                           (``{"eps": 0.0}`` for clean rows); an adaptive row's
                           also ``eot_samples``, ``restarts`` and the cell's
                           ``eot_seed``
eps                        L-inf budget, 0-255 units; 0 = clean images
defence                    defence id; ``+``-joined for a chain; ``none``
defence_key                unique name of the setting within the spec,
                           e.g. ``nlm:h=5``
defence_label              :func:`engine.defences.describe` of the setting
defence_params             JSON: :func:`engine.defences.to_spec` (a list for chains)
threat_model               see "Threat model" above
n_images                   images evaluated
accuracy                   share of correct predictions
macro_recall               mean per-class recall (NaN classes skipped)
macro_specificity          mean per-class specificity
recall_per_class           JSON list, one per class (class order of the manifest)
specificity_per_class      JSON list, one per class
confusion                  JSON K x K counts, rows = true class, columns = predicted
fooling_rate               share of images the clean *undefended* model got right
                           whose prediction is now wrong (relative to
                           ``pred_clean`` of :func:`engine.metrics.summarize`)
mean_confidence            mean top-class probability
true_class_confidence      mean probability of the true class
confusion_binary           JSON [[TN, FP], [FN, TP]] of the patient view; empty
                           (NaN) when the dataset has no "sick" classes
patient_accuracy           patient-view accuracy (sick vs healthy)
sensitivity                TP / (TP + FN): sick patients caught
specificity                TN / (TN + FP): healthy patients cleared
npv                        TN / (TN + FN): trust in a "healthy" call
ppv                        TP / (TP + FP): trust in a "sick" call
fnr                        FN / (TP + FN): sick patients missed
pert_l2_mean, pert_l2_max  mean / max per-image L2 norm of (adversarial - clean),
                           0-255 units, before the defence
pert_linf_mean,            mean / max per-image L-inf norm of (adversarial - clean)
pert_linf_max
psnr_mean                  mean per-image PSNR (dB) of the *defended* images against
                           the clean ones, over the images that differ; ``inf``
                           when none differs (clean, no defence)
ssim_mean                  mean per-image SSIM of the defended images against the
                           clean ones (:func:`engine.metrics.ssim`)
seconds                    wall time of this cell: defence + prediction + metrics
attack_seconds             wall time of the group's attack, shared by its cells
                           (0 for clean rows)
=========================  ================================================================

``per_image.csv.gz`` columns
-------------------------
``image_index`` (position in the split), ``ref`` (the dataset's reference
of the image, e.g. its relative path), ``true_label`` (class index),
``attack``, ``eps``, ``defence``, ``defence_key``, ``pred`` (predicted class
index), ``correct`` (``pred == true_label``), ``confidence`` (probability of
the predicted class), ``true_confidence`` (probability of the true class),
``threat_model`` (as in ``results.csv``; a table without it is all-transfer).

Determinism
-----------
Same spec, model and data give the same numbers (except the timing columns):
the image subsets and PGD's random start are seeded from the spec's
``seed``, an adaptive cell's EOT draws from a seed derived from the cell
(:func:`engine.evaluation.threats.cell_seed`), attacks run in fixed batches of
:data:`ATTACK_BATCH`, and a randomised defence draws from its own ``seed``.
:func:`reproduce_cell` recomputes a cell and reports the largest difference
per metric.
"""

from __future__ import annotations

from engine.evaluation._table import COLUMNS, JSON_COLUMNS, PER_IMAGE_COLUMNS
from engine.evaluation.results import (
    check_stale,
    load_manifest,
    load_results,
    per_image_file,
    reproduce_cell,
)
from engine.evaluation.spec import AttackSetting, DefenceSetting, SweepSpec, load_spec, parse_spec
from engine.threat import THREAT_ADAPTIVE, THREAT_CLEAN, THREAT_TRANSFER

_LAZY = ("ATTACK_BATCH", "SweepIdentityError", "run_sweep")


def __getattr__(name: str) -> object:
    """Load the sweep (and TensorFlow) only when it is used, not on import."""
    if name in _LAZY:
        from engine.evaluation import sweep

        return getattr(sweep, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ATTACK_BATCH",
    "COLUMNS",
    "JSON_COLUMNS",
    "PER_IMAGE_COLUMNS",
    "THREAT_ADAPTIVE",
    "THREAT_CLEAN",
    "THREAT_TRANSFER",
    "AttackSetting",
    "DefenceSetting",
    "SweepIdentityError",
    "SweepSpec",
    "check_stale",
    "load_manifest",
    "load_results",
    "load_spec",
    "parse_spec",
    "per_image_file",
    "reproduce_cell",
    "run_sweep",
]
