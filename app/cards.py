"""Model cards: a readable summary of a bundle, generated from its metadata.

``python -m app.cards BUNDLE [BUNDLE ...]`` writes ``card.md`` into each
bundle folder. The card is built only from ``meta.json``, ``history.csv`` and
the dataset registry, so it can always be regenerated and never drifts from
the model it describes. The dashboard renders the same text.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import datasets
from engine.bundle import BACKBONE_INFO, BUNDLE_HISTORY, BundleMeta, read_meta
from engine.errors import EngineError, run_cli

CARD = "card.md"

#: Notes that only apply to one dataset's models.
DATASET_NOTES: dict[str, str] = {
    "ham10000": (
        "**Patient view.** Malignant (positive) classes are melanoma (mel), basal cell "
        "carcinoma (bcc) and actinic keratoses / intraepithelial carcinoma (akiec); "
        "nv, bkl, df and vasc count as benign. Seed 001 counted melanocytic nevi (nv) "
        "as cancerous, so its sensitivity / NPV figures are not comparable with ours.\n\n"
        "**Licence.** HAM10000 is CC BY-NC 4.0: this model was trained on it and may be "
        "used for non-commercial purposes only (research, teaching, this demo), with "
        "attribution."
    ),
    "chest_xray_covid": (
        "**Source confounding.** NORMAL and PNEUMONIA images are pediatric X-rays from one "
        "hospital (Kermany et al.); COVID-19 images are adult X-rays from another "
        "(Hannover). The model can tell the sources apart by age, anatomy and equipment "
        "without learning anything about COVID-19: its COVID-19 accuracy says little "
        "about clinical use."
    ),
}


def _backbone_title(backbone: str) -> str:
    info = BACKBONE_INFO.get(backbone)
    return info.title if info else backbone


def _pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * float(x):.1f} %"


def _matrix(cm: list[list[int]], rows: list[str], cols: list[str] | None = None) -> str:
    cols = cols or rows
    head = "| true \\ predicted | " + " | ".join(cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    body = [
        f"| {r} | " + " | ".join(str(v) for v in row) + " |"
        for r, row in zip(rows, cm, strict=True)
    ]
    return "\n".join([head, sep, *body])


def read_history(bundle: str | Path) -> list[dict[str, float]]:
    """The training curve (one dict per epoch), or an empty list."""
    path = Path(bundle) / BUNDLE_HISTORY
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def model_card(bundle: str | Path) -> str:
    """Markdown model card for a bundle folder."""
    bundle = Path(bundle)
    meta: BundleMeta = read_meta(bundle)
    try:
        spec = datasets.get_dataset(meta.dataset_id)
    except EngineError:
        spec = None
    t = meta.training
    m = meta.clean_metrics
    sizes = t.get("split_sizes", {})
    title = spec.title if spec else meta.dataset_id
    lines = [
        f"# {_backbone_title(meta.backbone)} on {title}",
        "",
        f"*Bundle `{bundle.name}` · created {meta.created} · model SHA-256 "
        f"`{meta.model_sha256[:16]}…`*",
        "",
        "## Model",
        f"- Backbone: **{_backbone_title(meta.backbone)}** (`{meta.backbone}`), "
        f"input {meta.input_size}×{meta.input_size} RGB "
        "(0–255, preprocessing inside the model).",
        f"- Weights: **{meta.weights}**"
        + (
            " (trained from scratch: ImageNet weights could not be downloaded where it was "
            "trained)."
            if meta.weights == "none"
            else "."
        )
        + _provenance(meta),
        f"- Classes: {', '.join(meta.classes)}"
        + (
            f"; positive (sick) for the patient view: {', '.join(meta.positive)}."
            if meta.positive
            else "."
        ),
        "",
        "## Data",
        f"- Dataset: **{title}** (`{meta.dataset_id}`).",
        f"- Split sizes: train {sizes.get('train', '?')}, validation {sizes.get('val', '?')}, "
        f"test {sizes.get('test', '?')}.",
        "- Split fingerprints: "
        + ", ".join(f"{k} `{v}`" for k, v in meta.data_fingerprints.items())
        + ".",
    ]
    if spec is not None:
        lines += [f"- Licence: {spec.licence}.", f"- Credit: {spec.attribution}"]
    lines += [
        "",
        "## Training",
        f"- Command: `{t.get('command') or 'python -m engine.train ...'}`",
        f"- Epochs run: {t.get('epochs_run', '?')} (best epoch {t.get('best_epoch', '?')}"
        + (", stopped early" if t.get("stopped_early") else "")
        + f"), batch {t.get('batch_size', '?')}, learning rate {t.get('learning_rate', '?')}, "
        f"augmentation {'on' if t.get('augment') else 'off'}"
        + (" (with mirroring)" if t.get("augment_flip") else "")
        + (" (any rotation)" if t.get("augment_rotate") else "")
        + f", class weights {'on' if t.get('class_weights') else 'off'}.",
        f"- Training time: {float(t.get('train_seconds', 0)) / 60:.1f} min on CPU.",
        *_defence_lines(t),
        "",
        "## Clean test metrics",
        f"- Accuracy **{_pct(m.get('accuracy'))}**, macro recall {_pct(m.get('macro_recall'))}, "
        f"macro specificity {_pct(m.get('macro_specificity'))} "
        f"on {m.get('n_images', '?')} test images.",
    ]
    if meta.positive:
        lines.append(
            f"- Patient view: sensitivity {_pct(m.get('sensitivity'))}, specificity "
            f"{_pct(m.get('specificity'))}, NPV {_pct(m.get('npv'))}, "
            f"false-negative rate {_pct(m.get('fnr'))}."
        )
    if m.get("confusion"):
        lines += ["", _matrix(m["confusion"], meta.classes)]
    if meta.positive and m.get("confusion_binary"):
        lines += ["", _matrix(m["confusion_binary"], ["healthy", "sick"])]
    lines += _decision_lines(meta.decision, " or ".join(meta.positive))
    note = DATASET_NOTES.get(meta.dataset_id)
    if note:
        lines += ["", "## Notes", note]
    if meta.notes and meta.dataset_id not in DATASET_NOTES:
        lines += ["", "## Notes", meta.notes]
    lines += [
        "",
        "## Limits",
        "Clean accuracy says nothing about robustness: see the recap curves for how the "
        "metrics fall under attack, and under which threat model. Not a medical device.",
        "",
    ]
    return "\n".join(lines)


def _provenance(meta: BundleMeta) -> str:
    """Where pretrained weights came from and under which licence ("" where none)."""
    if meta.weights != "imagenet":
        return ""
    path = (
        Path(__file__).resolve().parents[1]
        / "assets"
        / "weights"
        / f"{meta.backbone}_imagenet.json"
    )
    try:
        p = json.loads(path.read_text())
        return (
            f" ImageNet weights from the `{p['source_package']['name']}` "
            f"{p['source_package']['version']} package ({p['licence']}), {p['origin']}; converted "
            f"to Keras by `{p['converter']}` and checked against PyTorch (record: "
            f"`assets/weights/{path.name}`)."
        )
    except (OSError, ValueError, KeyError, TypeError):
        return " ImageNet weights as published by Keras."


def _defence_lines(t: dict[str, Any]) -> list[str]:
    """The card's lines on a training-time defence and the base model (none: no lines)."""
    out: list[str] = []
    base, d, check = t.get("base_model"), t.get("defence"), t.get("robust_check")
    if isinstance(base, dict):
        out.append(
            f"- Fine-tuned from `{Path(str(base.get('path'))).name}` (model SHA-256 "
            f"`{str(base.get('model_sha256'))[:16]}…`, clean accuracy "
            f"{_pct(base.get('clean_accuracy'))})"
            + (
                f", itself made by `{base['command']}` ({base.get('epochs_run')} epochs, best "
                f"{base.get('best_epoch')}, {float(base.get('train_seconds') or 0) / 60:.1f} min)."
                if base.get("command")
                else "."
            )
        )
    if isinstance(d, dict):
        out.append(f"- Training-time defence: **{d.get('label')}** — {d.get('paper')}.")
        if d.get("kind") == "adversarial":
            p = d.get("params") or {}
            out.append(
                f"  Cut for CPU: {t.get('epochs_run', '?')} epoch(s) of fine-tuning (published "
                f"adversarial training runs for tens to hundreds), {p.get('steps', 1)} attack "
                f"step(s) per batch, ε {p.get('eps')}; batch norm frozen while it trains."
            )
        if d.get("kind") == "filter":
            out.append(
                "  The filter is the model's first layer: every image, and every attack, goes "
                "through it (white-box, exact gradient)."
            )
    if isinstance(check, dict):
        hist = ", ".join(_pct(v) for v in check.get("balanced_accuracy_per_epoch", []))
        p = check.get("params", {})
        out.append(
            f"- Robustness check each epoch: balanced accuracy under PGD-{p.get('steps')} at "
            f"eps {p.get('eps')} on {check.get('images')} validation images: {hist or 'none'}."
        )
        if check.get("catastrophic_overfitting_epoch") is not None:
            out.append(
                f"- **Catastrophic overfitting** at epoch "
                f"{int(check['catastrophic_overfitting_epoch']) + 1}: PGD accuracy collapsed "
                "while training went on against the single-step attack; training stopped and "
                "the best checkpoint before it was kept."
            )
    return out


def _decision_lines(d: dict[str, Any], sick: str) -> list[str]:
    """The card's section on the patient view's decision threshold (none: no lines)."""
    try:
        val, test, argmax = d["val"], d["test"], d["test_argmax"]
        return [
            "",
            "## Decision threshold (patient view)",
            f"- Call an image sick when P({sick}) ≥ **{float(d['threshold']):.3f}**, chosen "
            f"on the {val['n_images']} validation images (never the test split) by Youden's "
            f"J (sensitivity + specificity − 1): there, sensitivity {_pct(val['sensitivity'])}"
            f", specificity {_pct(val['specificity'])}.",
            f"- On the {test['n_images']} test images: sensitivity "
            f"**{_pct(test['sensitivity'])}**, specificity **{_pct(test['specificity'])}**, "
            f"accuracy {_pct(test['accuracy'])} (with the argmax decision: "
            f"{_pct(argmax['sensitivity'])}, {_pct(argmax['specificity'])}, "
            f"{_pct(argmax['accuracy'])}).",
            "- The dashboard's predictions, class metrics and robustness sweeps still use the "
            "argmax decision. A gap between validation and test numbers means the test "
            "images differ from the training ones.",
        ]
    except (KeyError, TypeError, ValueError):
        return []


def write_card(bundle: str | Path) -> Path:
    """Write ``card.md`` into the bundle folder; return its path."""
    path = Path(bundle) / CARD
    path.write_text(model_card(bundle))
    return path


# --------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class DatasetCard:
    """What the dashboard shows about a dataset, whether or not its files are here.

    Attributes
    ----------
    spec : DatasetSpec
        The registry entry (title, classes, licence, attribution, caveat...).
    present : bool
        True when the data was found (or is generated).
    location : str
        Where it was found, or the message saying where it was looked for.
    counts : dict
        ``{split: {class: n}}`` when present, else empty.
    how_to_get : str
        The download command, or the exact manual steps.
    """

    spec: datasets.DatasetSpec
    present: bool
    location: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    how_to_get: str = ""


def dataset_card(dataset_id: str) -> DatasetCard:
    """A :class:`DatasetCard` for a registered dataset (indexes it when present; no pixels)."""
    from engine.datasets.download import manual_steps

    spec = datasets.get_dataset(dataset_id)
    if spec.generated:
        how = "Generated in code: nothing to download."
    elif spec.downloadable:
        how = f"python -m engine.datasets download {spec.id}"
    else:
        how = manual_steps(spec)
    try:
        splits = datasets.load_splits(spec)
    except EngineError as exc:
        return DatasetCard(spec, False, str(exc), {}, how)
    if spec.generated:
        location = "generated in code"
    else:
        found = [datasets.find_dataset_dir(spec), *map(datasets.find_dataset_dir, spec.parts)]
        location = ", ".join(dict.fromkeys(str(d) for d in found))
    counts = {name: datasets.class_counts(idx) for name, idx in splits.items()}
    return DatasetCard(spec, True, location, counts, how)


def sample_refs(
    index: datasets.SplitIndex, *, per_class: int = 4, seed: int = 0
) -> dict[str, list[int]]:
    """A seeded handful of item positions per class of a split (for sample grids)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {}
    for k, name in enumerate(index.classes):
        where = np.flatnonzero(index.labels == k)
        take = rng.choice(where, size=min(per_class, len(where)), replace=False)
        out[name] = sorted(int(i) for i in take)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: write a card for each bundle given."""
    p = argparse.ArgumentParser(prog="python -m app.cards", description=__doc__.split("\n")[0])
    p.add_argument("bundles", nargs="+")
    args = p.parse_args(argv)

    def body() -> None:
        for b in args.bundles:
            print(write_card(b))

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
