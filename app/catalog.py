"""What models and precomputed results are available, without loading any model.

The dashboard picks a *dataset* and a *backbone*; this module says which
model bundle and which recap results go with that choice, whether they are
shipped (``assets/``) or trained by the user (``runs/``), whether the results
are fresh, and, when a model is missing, the exact command that trains it.

Folder names follow one convention: ``<dataset>__<backbone>`` under
``assets/models`` / ``runs/models`` (bundles) and ``assets/results`` /
``runs/recap`` (sweeps). TensorFlow is never imported here.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from engine import datasets
from engine.bundle import BACKBONE_INFO, BUNDLE_META, BUNDLE_MODEL, BundleMeta, read_meta
from engine.errors import EngineError, ParamError

__all__ = [
    "ASSETS",
    "PROJECT_ROOT",
    "Convergence",
    "Entry",
    "ResultsStatus",
    "convergence",
    "entries",
    "find",
    "model_roots",
    "recap_command",
    "results_roots",
    "results_status",
    "train_command",
]

#: The project folder (the parent of ``engine/``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Shipped models, specs and results.
ASSETS = PROJECT_ROOT / "assets"

#: Input size of the shipped MobileNetV3 models trained from scratch on 2 CPU cores.
_SCRATCH_INPUT = 160


def model_roots() -> list[Path]:
    """Folders searched for bundles, in priority order (shipped first)."""
    return [ASSETS / "models", PROJECT_ROOT / "runs" / "models"]


def results_roots() -> list[Path]:
    """Folders searched for recap results, in priority order (shipped first)."""
    return [ASSETS / "results", PROJECT_ROOT / "runs" / "recap"]


def key(dataset_id: str, backbone: str, variant: str = "") -> str:
    """Folder name of a (dataset, backbone[, variant]) choice.

    ``variant`` names a model trained with a training-time defence
    (:mod:`engine.hardening`), e.g. ``adversarial_fgsm_rs``: the folder
    ``python -m engine.train ... --defence adversarial:fgsm_rs,...`` writes.
    """
    return f"{dataset_id}__{backbone}" + (f"__{variant}" if variant else "")


def split_key(name: str) -> tuple[str, str, str] | None:
    """``(dataset, backbone, variant)`` of a folder name, or ``None`` if it names no known pair."""
    parts = name.split("__")
    if len(parts) not in (2, 3) or not all(parts):
        return None
    ds_id, backbone = parts[0], parts[1]
    if ds_id not in datasets.REGISTRY or backbone not in BACKBONE_INFO:
        return None
    return ds_id, backbone, parts[2] if len(parts) == 3 else ""


@dataclass(frozen=True)
class ResultsStatus:
    """Whether a results folder can be trusted.

    Attributes
    ----------
    state : {"fresh", "partial", "stale", "missing"}
        ``fresh``: complete and matching the model and code.
    reasons : list of str
        Why it is not fresh (empty when fresh).
    """

    state: str
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the results are complete and describe the current model."""
        return self.state == "fresh"

    def message(self) -> str:
        """One paragraph for the UI."""
        if self.state == "fresh":
            return "Results are complete and match the model."
        if self.state == "missing":
            return "No precomputed results for this model."
        head = {
            "partial": "These results are incomplete",
            "stale": "These results may not describe the current model",
        }[self.state]
        return head + ": " + " ".join(self.reasons)


@dataclass(frozen=True)
class Entry:
    """A (dataset, backbone) choice and what exists for it.

    Attributes
    ----------
    dataset_id, backbone : str
        The choice.
    model_dir : Path or None
        The bundle folder, or ``None`` when no model is trained.
    results_dir : Path or None
        The recap results folder, or ``None`` when none is precomputed.
    meta : BundleMeta or None
        The bundle's metadata (read without loading the model).
    shipped : bool
        True when the model comes with the project (``assets/``).
    variant : str
        ``""`` for the standard model; else the training-time defence it was
        trained with (the folder suffix, e.g. ``adversarial_fgsm_rs``).
    """

    dataset_id: str
    backbone: str
    model_dir: Path | None = None
    results_dir: Path | None = None
    meta: BundleMeta | None = None
    shipped: bool = False
    variant: str = ""

    @property
    def key(self) -> str:
        """``<dataset>__<backbone>[__<variant>]``."""
        return key(self.dataset_id, self.backbone, self.variant)

    @property
    def variant_title(self) -> str:
        """``"standard training"``, or the training-time defence in a few words."""
        if not self.variant:
            return "standard training"
        d = (self.meta.training or {}).get("defence") if self.meta else None
        if isinstance(d, dict) and d.get("short"):
            return str(d["short"])
        return self.variant.replace("_", " ")

    @property
    def has_model(self) -> bool:
        """True when a model bundle exists for this choice."""
        return self.model_dir is not None

    @property
    def title(self) -> str:
        """E.g. ``"Chest X-ray (pneumonia) · MobileNetV3 Large"``."""
        spec = datasets.REGISTRY.get(self.dataset_id)
        ds = spec.title if spec else self.dataset_id
        info = BACKBONE_INFO.get(self.backbone)
        title = f"{ds} · {info.title if info else self.backbone}"
        return title + (f" · {self.variant_title}" if self.variant else "")


def _bundle_in(root: Path, name: str) -> Path | None:
    d = root / name
    return d if (d / BUNDLE_META).is_file() and (d / BUNDLE_MODEL).is_file() else None


def find(dataset_id: str, backbone: str, variant: str = "") -> Entry:
    """The model and results for a (dataset, backbone[, variant]) choice.

    Shipped bundles win over user-trained ones of the same name. Results are
    looked for beside the model's root first (``assets/results`` for a
    shipped model, ``runs/recap`` for a trained one).

    Raises
    ------
    ParamError
        If the dataset or backbone id is unknown.
    """
    if dataset_id not in datasets.REGISTRY:
        raise ParamError(f"Unknown dataset {dataset_id!r}; known: {', '.join(datasets.REGISTRY)}.")
    if backbone not in BACKBONE_INFO:
        raise ParamError(f"Unknown backbone {backbone!r}; known: {', '.join(BACKBONE_INFO)}.")
    if variant and (not variant.replace("_", "").isalnum() or "__" in variant):
        raise ParamError(f"Unknown model variant {variant!r}.")
    name = key(dataset_id, backbone, variant)
    model_dir, meta, shipped = None, None, False
    for i, root in enumerate(model_roots()):
        found = _bundle_in(root, name)
        if found is None:
            continue
        try:
            meta = read_meta(found)
        except EngineError:
            continue  # a damaged bundle is reported by the pages that load it
        model_dir, shipped = found, i == 0
        break
    roots = results_roots()
    if model_dir is not None and not shipped:
        roots = roots[::-1]
    results_dir = next((r / name for r in roots if (r / name / "manifest.json").is_file()), None)
    return Entry(dataset_id, backbone, model_dir, results_dir, meta, shipped, variant)


def entries(*, with_model_only: bool = False) -> list[Entry]:
    """Every (dataset, backbone) pair with a model or results, shipped ones first.

    With ``with_model_only`` only pairs that have a model bundle are listed.
    """
    names: set[tuple[str, str, str]] = set()
    for root in model_roots() + results_roots():
        if not root.is_dir():
            continue
        for d in root.iterdir():
            parts = split_key(d.name)
            if parts is not None:
                names.add(parts)
    order = {ds_id: i for i, ds_id in enumerate(datasets.REGISTRY)}
    border = {b: i for i, b in enumerate(BACKBONE_INFO)}
    ranked = sorted(names, key=lambda p: (order[p[0]], border[p[1]], p[2]))
    found = [find(d, b, v) for d, b, v in ranked]
    if with_model_only:
        found = [e for e in found if e.has_model]
    return sorted(found, key=lambda e: not e.shipped)


def results_status(entry: Entry) -> ResultsStatus:
    """Whether the entry's results are complete and match its model and the code."""
    if entry.results_dir is None:
        return ResultsStatus("missing")
    from engine.evaluation.results import check_stale, load_manifest  # TF-free

    try:
        manifest = load_manifest(entry.results_dir)
    except EngineError as exc:
        return ResultsStatus("stale", [str(exc)])
    reasons = check_stale(entry.results_dir, entry.model_dir)
    if not reasons:
        return ResultsStatus("fresh")
    state = "partial" if manifest.get("status") != "complete" else "stale"
    return ResultsStatus(state, reasons)


@dataclass(frozen=True)
class Convergence:
    """What ``python -m bench.convergence`` measured on an entry's shipped adaptive sweep.

    Attributes
    ----------
    steps, steps_more : int
        The shipped PGD steps and the steps it was re-run with.
    largest_change : float
        The largest change of accuracy, in points (0-100).
    worst : tuple of (str, float, float)
        ``(defence key, eps, change in points)`` of the cells that moved by 1 point or more,
        largest first.
    """

    steps: int
    steps_more: int
    largest_change: float
    worst: tuple[tuple[str, float, float], ...]

    @property
    def converged(self) -> bool:
        """Every cell moved by less than 1 point (Carlini et al. 2019, §4.2)."""
        return self.largest_change < 1


def convergence(entry: Entry) -> Convergence | None:
    """The convergence check of the entry's adaptive sweep, or ``None`` without one.

    Read from ``bench/results/convergence_<key>.json`` (``python -m bench.convergence``);
    a missing or unreadable file is ``None``, and so is one measured on another
    adaptive spec than the shipped sweep's (its ``spec_sha256``): a check of an
    attack the sweep no longer runs says nothing about its numbers.
    """
    import json

    from engine.evaluation.results import companion_dir, load_manifest

    path = PROJECT_ROOT / "bench" / "results" / f"convergence_{entry.key}.json"
    try:
        found = json.loads(path.read_text())
        sweep = companion_dir(entry.results_dir) if entry.results_dir is not None else None
        if sweep is None:
            return None
        shipped = load_manifest(sweep)["spec"]["sha256"]
        if found["spec_sha256"] != shipped:
            return None
        cells = found["cells"]
        worst = sorted(
            ((str(c["defence_key"]), float(c["eps"]), float(c["change_points"])) for c in cells),
            key=lambda c: -abs(c[2]),
        )
        return Convergence(
            steps=int(cells[0]["steps"]),
            steps_more=int(cells[0]["steps_more"]),
            largest_change=float(found["largest_change_points"]),
            worst=tuple(c for c in worst if abs(c[2]) >= 1),
        )
    except (OSError, ValueError, KeyError, IndexError, TypeError, EngineError):
        return None


def train_command(dataset_id: str, backbone: str) -> str:
    """The exact command that trains the model for a (dataset, backbone) choice.

    From scratch at 160 px for the MobileNetV3 backbones (what 2 CPU cores
    allow), ImageNet transfer learning elsewhere when the weights can be
    downloaded. The output goes to ``runs/models``, where the dashboard finds it.
    """
    if dataset_id not in datasets.REGISTRY:
        raise ParamError(f"Unknown dataset {dataset_id!r}.")
    info = BACKBONE_INFO.get(backbone)
    if info is None:
        raise ParamError(f"Unknown backbone {backbone!r}.")
    name = key(dataset_id, backbone)
    args = ["python", "-m", "engine.train", "--dataset", dataset_id, "--backbone", backbone]
    if backbone.startswith("mobilenet_v3"):
        args += ["--weights", "none", "--input-size", str(_SCRATCH_INPUT)]
    elif not info.imagenet:
        args += ["--weights", "none"]
    args += ["--epochs", "15", "--out", os.path.join("runs", "models", name)]
    return shlex.join(args)


def recap_command(entry: Entry, spec: str | None = None, *, adaptive: bool = False) -> str:
    """The command that (re)computes the recap results for an entry's model.

    ``spec``: default ``assets/specs/default.toml``; for a training-time-defence
    variant ``assets/specs/variants.toml`` (both threat models in one sweep).

    ``adaptive``: the adaptive companion sweep instead (``assets/specs/adaptive.toml``
    into the results folder's ``adaptive/``, :data:`engine.evaluation.results.ADAPTIVE_DIR`).
    """
    if entry.model_dir is None:
        raise ParamError(f"No model for {entry.title}: train it first.")
    try:
        model = entry.model_dir.relative_to(PROJECT_ROOT)
    except ValueError:
        model = entry.model_dir
    out = os.path.join("runs", "recap", entry.key)
    if entry.results_dir is not None:
        try:
            out = str(entry.results_dir.relative_to(PROJECT_ROOT))
        except ValueError:
            out = str(entry.results_dir)
    if adaptive:
        from engine.evaluation.results import ADAPTIVE_DIR  # TF-free

        spec, out = "assets/specs/adaptive.toml", os.path.join(out, ADAPTIVE_DIR)
    elif spec is None:
        spec = "assets/specs/variants.toml" if entry.variant else "assets/specs/default.toml"
    return shlex.join(
        ["python", "-m", "engine.evaluation", "--spec", spec, "--model", str(model), "--out", out]
    )
