"""The dashboard's robustness report: headline, recap charts, trade-off, an example, credits.

:func:`robustness_report` assembles the parts a user picks (:data:`REPORT_PARTS`)
from a sweep's results table with :mod:`app.views` and :mod:`app.charts`, with
the sanity findings (:mod:`engine.evaluation.sanity`) under the chart each
concerns and all of them in a section of their own, and
hands them to the generic builder (:func:`app.report.html.build_report`) with
the dataset's credit line (:func:`dataset_credit`) and the provenance of the
model and the results (:func:`bundle_provenance`, :func:`manifest_provenance`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from plotly.basedatatypes import BaseFigure

from app import charts, labels, views
from app.report.html import build_report
from app.report.section import ReportImage, ReportNote, ReportSection
from engine.attacks import DEFAULT_ATTACK
from engine.bundle import BundleMeta
from engine.datasets import get_dataset
from engine.errors import ParamError
from engine.evaluation import query, sanity
from engine.evaluation.keys import NO_DEFENCE
from engine.threat import is_adaptive

if TYPE_CHECKING:  # engine.lab's types only; the report never runs a model
    from engine.lab import LabResult, Prediction

__all__ = [
    "REPORT_PARTS",
    "bundle_provenance",
    "dataset_credit",
    "manifest_provenance",
    "robustness_report",
]


def dataset_credit(dataset: str) -> str:
    """One credit line for a dataset: its title, licence and attribution.

    Parameters
    ----------
    dataset : str
        A registry id (see :data:`engine.datasets.REGISTRY`) or a dataset folder.

    Returns
    -------
    str
        Plain text, e.g. ``"Pediatric chest X-rays (Kermany). Licence: CC BY 4.0.
        Source: Kermany, Zhang, Goldbaum, ..."``. Show the dataset's ``caveat`` as well,
        in the report's ``caveats``.

    Raises
    ------
    DatasetError
        For an unknown id.
    """
    spec = get_dataset(dataset)
    parts = [spec.title]
    if spec.licence:
        parts.append(f"Licence: {spec.licence}")
    if spec.attribution:
        parts.append(f"Source: {spec.attribution}")
    return " ".join(p if p.endswith(".") else p + "." for p in parts)


def bundle_provenance(meta: BundleMeta) -> dict[str, str]:
    """Provenance rows describing a model bundle (for :func:`build_report`).

    Parameters
    ----------
    meta : BundleMeta
        From :func:`engine.bundle.read_meta`.

    Returns
    -------
    dict of str to str
        Model, hash, dataset, creation time, data fingerprints and library versions;
        empty fields are left out.
    """
    rows = {
        "Model": f"{meta.backbone} ({meta.weights} weights), input {meta.input_size} px",
        "Model hash (SHA-256)": meta.model_sha256,
        "Trained on": meta.dataset_id,
        "Model created": meta.created,
    }
    for split, fingerprint in meta.data_fingerprints.items():
        rows[f"Data fingerprint ({split})"] = str(fingerprint)
    for lib, version in meta.versions.items():
        rows[f"{lib} version"] = str(version)
    return {k: v for k, v in rows.items() if v}


def manifest_provenance(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Provenance rows describing a results folder's ``manifest.json``.

    Parameters
    ----------
    manifest : mapping
        From :func:`engine.evaluation.results.load_manifest`; missing fields are skipped.

    Returns
    -------
    dict of str to str
        Sweep name and spec hash, status, engine version, code version, model hash,
        dataset, split, fingerprint, image count, seed and run times.
    """

    def get(*keys: str) -> Any:
        node: Any = manifest
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        return node

    commit = get("git", "commit")
    if commit and get("git", "dirty"):
        commit = f"{commit} (with uncommitted changes)"
    split = get("data", "split")
    dataset = get("data", "dataset_id")
    rows = {
        "Results": get("spec", "name"),
        "Results status": get("status"),
        "Results spec hash (SHA-256)": get("spec", "sha256"),
        "Results engine version": get("engine_version"),
        "Results code version (git)": commit,
        "Results model hash (SHA-256)": get("model", "model_sha256"),
        "Results dataset": f"{dataset}, {split} split" if dataset and split else dataset,
        "Results data fingerprint": get("data", "fingerprint"),
        "Test images": get("data", "n_images"),
        "Seed": get("seeds", "spec"),
        "Results started": get("started"),
        "Results finished": get("ended"),
    }
    return {k: str(v) for k, v in rows.items() if v is not None and v != ""}


#: Parts a robustness report can include, in order (ids -> titles).
REPORT_PARTS: dict[str, str] = {
    "headline": "Headline numbers",
    "accuracy": "Accuracy against attack strength",
    "two_panel": "Model and patient view (seed 001)",
    "tradeoff": "Defence trade-off",
    "threats": "What each defence keeps when the attacker knows it",
    "models": "Model-level defences (training-time)",
    "confusion": "Confusion matrices under attack",
    "sanity": "Sanity checks of the results",
    "example": "A live example",
}


def robustness_report(
    *,
    df: pd.DataFrame,
    manifest: Mapping[str, Any],
    meta: BundleMeta,
    title: str,
    subtitle: str = "",
    attack: str = DEFAULT_ATTACK,
    eps: float = 8.0,
    parts: Sequence[str] = tuple(REPORT_PARTS),
    example: LabResult | None = None,
    generated_at: str | None = None,
    models: pd.DataFrame | None = None,
) -> str:
    """The dashboard's stakeholder report for one model and its recap results.

    Parameters
    ----------
    df, manifest : pandas.DataFrame, mapping
        A recap results table and its manifest (:func:`engine.evaluation.load_results`).
    meta : BundleMeta
        The model's metadata.
    title, subtitle : str
        Shown at the top.
    attack, eps : str, float
        The attack and budget the headline, trade-off and confusion parts use
        (the nearest precomputed budget is used, and said).
    parts : sequence of str
        Keys of :data:`REPORT_PARTS` to include.
    example : engine.lab.LabResult, optional
        A live lab result for the "example" part.
    generated_at : str, optional
        Fixed timestamp (for reproducible files).
    models : pandas.DataFrame, optional
        :func:`app.zoo.comparison` of this model and its training-time-defence
        variants (the "models" part; said to be absent when there are none).

    Returns
    -------
    str
        The HTML document (:func:`build_report`).
    """
    unknown = [p for p in parts if p not in REPORT_PARTS]
    if unknown:
        raise ParamError(
            f"Unknown report part(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(REPORT_PARTS)}."
        )
    if not parts:
        raise ParamError("Choose at least one part for the report.")
    h = views.headline(df, attack=attack, eps=eps)
    used = h["eps"]
    att = labels.attack_title(attack)
    threats = [str(t) for t in dict.fromkeys(df["threat_model"])]
    classes = list(manifest.get("model", {}).get("classes") or meta.classes)
    findings = (
        sanity.check(
            df,
            classes=classes,
            setting_name=labels.setting_phrase,
            attack_name=labels.attack_title,
        )
        if "sanity" in parts
        else []
    )
    note = f" ({h['note']})" if h["note"] else ""
    sections: list[ReportSection] = []
    if "headline" in parts:
        cards = [
            ("Clean accuracy", f"{h['clean_accuracy']:.1%}", f"{h['n_images']} test images"),
            (
                f"Under {att}, ε = {used:g}",
                f"{h['attacked_accuracy']:.1%}",
                "no defence; attack crafted on the model",
            ),
        ]
        text = (
            f"On **{h['n_images']}** test images the model is right **{h['clean_accuracy']:.1%}** "
            f"of the time. An attacker who may change every pixel by at most **{used:g}** of "
            f"255 grey levels{note} brings that down to **{h['attacked_accuracy']:.1%}**."
        )
        a = h["adaptive"]
        if h["best_key"] is not None:
            cards.append(
                (
                    f"{h['best_label']}, attacker unaware",
                    "–" if math.isnan(h["best_accuracy"]) else f"{h['best_accuracy']:.1%}",
                    f"{h['recovered']:+.1%} recovered, {h['best_clean_cost']:+.1%} clean cost",
                )
            )
            cards.append(
                (
                    f"{a['best_label']}, attacker knows it",
                    f"{a['accuracy']:.1%}",
                    f"{a['recovered']:+.1%} recovered; {a['n_images']} images",
                )
                if a is not None
                else ("Attacker knows the defence", "not run", "no adaptive sweep yet")
            )
            text += " " + " ".join(views.headline_sentences(h, att))
            if not math.isnan(h["best_clean_cost"]):
                text += (
                    f" On images nobody attacked, {h['best_label']} costs "
                    f"{h['best_clean_cost']:.1%} of accuracy."
                )
        sections.append(ReportSection("Headline numbers", text, cards=cards))
    keys = [NO_DEFENCE] + [k for k in (h["best_key"], h["transfer_best_key"]) if k]
    keys = list(dict.fromkeys(keys))
    if "nlm+bilateral+guided" in set(df["defence_key"]):
        keys.append("nlm+bilateral+guided")
    charted: dict[str, tuple[str, str, Callable[[], BaseFigure]]] = {
        "accuracy": (
            "Accuracy against attack strength",
            "Each line is one way of cleaning the images before the model sees them. "
            "Further right, the attacker may change pixels more.",
            lambda: charts.metric_vs_eps(df, metric="accuracy", attack=attack, defence_keys=keys),
        ),
        "two_panel": (
            "Model and patient view",
            "Left: how the model scores. Right, for medical data: what it means for "
            "patients; the false-negative rate is the share of sick patients missed.",
            lambda: charts.two_panel(df, attack=attack, manifest=manifest),
        ),
        "tradeoff": (
            "Defence trade-off",
            "Up is good (accuracy won back under attack); left is good (little lost on "
            "clean images).",
            lambda: charts.tradeoff(df, attack=attack, eps=used),
        ),
        "threats": (
            "What each defence keeps when the attacker knows it",
            "Each row is one way of cleaning the images. Filled dot: the attacker does not "
            "know the defence; open dot: the attacker knows it and attacks through it. The "
            "grey line between them is protection that only an unaware attacker leaves.",
            lambda: charts.threat_gap(df, attack=attack, eps=used),
        ),
    }
    transfer_only = "adaptive" not in query.threats(df)
    for part, (heading, text, draw) in charted.items():
        if part == "threats" and transfer_only and part in parts:
            text = (
                "No attack crafted through the defences has been run for this model: every "
                "defended number in this report is for an attacker who does not know the "
                "defence, and is an upper bound."
            )
            sections.append(ReportSection(heading, text))
        elif part in parts:
            notes = _notes(findings, sanity.CHART_EPS, attack, keys) if part == "accuracy" else []
            sections.append(ReportSection(heading, text, figures=[draw()], notes=notes))
    if "models" in parts:
        sections.append(_models_section(models, attack, used))
    if "confusion" in parts:
        figs = []
        for key in keys[:2]:
            row = query.find_row(df, attack, used, key)
            if row is not None:
                figs.append(
                    charts.confusion_heatmap(
                        row["confusion"],
                        classes,
                        title=f"{att} ε={used:g}, {labels.setting_label(key)}",
                    )
                )
        sections.append(
            ReportSection(
                "Confusion matrices under attack",
                "Rows are the true class, columns what the model said.",
                figures=figs,
                notes=_notes(findings, sanity.CHART_CONFUSION, attack, keys[:2], used),
            )
        )
    if "sanity" in parts:
        sections.append(_sanity_section(findings))
    if "example" in parts and example is not None:
        sections.append(_example_section(example))
    spec = get_dataset(meta.dataset_id)
    caveats = [c for c in (spec.caveat, meta.notes) if c]
    if not any(is_adaptive(t) for t in threats):
        caveats.append(
            "Robustness numbers come from attacks crafted on the undefended model; an attacker "
            "who knows the defence (adaptive attack) usually does better."
        )
    provenance = {**bundle_provenance(meta), **manifest_provenance(manifest)}
    return build_report(
        title=title,
        subtitle=subtitle,
        sections=sections,
        threat_models=threats,
        credits=[dataset_credit(meta.dataset_id)],
        provenance=provenance,
        caveats=caveats,
        generated_at=generated_at,
    )


def _notes(
    findings: Sequence[sanity.Finding],
    chart: str,
    attack: str,
    keys: Sequence[str],
    eps: float | None = None,
) -> list[ReportNote]:
    """The findings about one chart (its attack, settings and budget), as notes under it."""
    return [
        ReportNote(f"**{sanity.CHECKS[f.check].title}.** {f.explanation}", f.severity == "warning")
        for f in findings
        if f.concerns(chart, attack=attack, defence_keys=keys, eps=eps)
    ]


def _models_section(models: pd.DataFrame | None, attack: str, eps: float) -> ReportSection:
    """The standard model beside its training-time-defence variants (or why there is none)."""
    from app import zoo
    from app.charts.zoo import model_bars, model_curves

    heading = REPORT_PARTS["models"]
    said = zoo.answer(models, eps) if models is not None and not models.empty else ""
    if models is None or not said:
        return ReportSection(
            heading,
            "No model trained with a training-time defence (adversarial training, filter "
            "training, distillation) has results beside this one yet.",
        )
    text = (
        "Each bar is a model: trained as usual, or with a defence built into its training. "
        "Grey: the model alone; blue: with its best input defence (among the settings every "
        "model was swept with). Every bar is against an attacker who knows the defence; "
        "50 % balanced accuracy is no skill. " + said
    )
    figures = [model_bars(models, attack=attack, eps=eps)]
    if models["eps"].nunique() > 1:
        text += (
            " The second chart draws each model against the attack budget, from its clean "
            "balanced accuracy (the clean cost of its defence) at ε 0."
        )
        figures.append(model_curves(models, attack=attack))
    return ReportSection(heading, text, figures=figures)


def _sanity_section(findings: Sequence[sanity.Finding]) -> ReportSection:
    """The "Sanity checks" part: what each check asks, then every finding of the table."""
    warnings = sum(f.severity == "warning" for f in findings)
    text = (
        "Before a robustness number can be trusted, the results must pass a few checks "
        "(Carlini et al. 2019, *On Evaluating Adversarial Robustness*): a stronger attack "
        "never does less harm, a many-step attack beats a single step, an attacker who knows "
        "the defence beats one who does not, and a very strong attack brings accuracy down to "
        "what a model without skill scores. "
        + (
            f"**{warnings}** of the **{len(findings)}** findings below say that a number "
            "should not be trusted as it stands; the notes under the charts above point out "
            "the ones about what those charts show."
            if findings
            else "These results pass every check."
        )
    )
    table = pd.DataFrame(
        {
            "Check": [sanity.CHECKS[f.check].title for f in findings],
            "Attack": [labels.attack_title(f.attack) if f.attack else "all" for f in findings],
            "Setting": [
                labels.setting_label(f.defence_key) if f.defence_key else "all" for f in findings
            ],
            "Threat model": [f.threat_model or "all" for f in findings],
            "ε": [", ".join(labels.format_value(e) for e in f.eps) for f in findings],
            "Finding": [f.message for f in findings],
        }
    )
    return ReportSection("Sanity checks of the results", text, table=table if findings else None)


def _example_section(example: LabResult) -> ReportSection:
    """The "A live example" part: one image clean, its perturbation, attacked and defended."""

    def says(pred: Prediction) -> str:
        return f"model says {example.classes[pred.label]} ({pred.confidence:.0%})"

    return ReportSection(
        "A live example",
        f"One image, attacked with {example.attack_title} at ε = "
        f"{example.attack_params.get('eps', 0):g} and cleaned with "
        f"{example.defence_title}. {example.perturbation_scale}.",
        images=[
            ReportImage("Original", example.original, says(example.pred_clean)),
            ReportImage("Perturbation (amplified)", example.perturbation_view),
            ReportImage("Attacked", example.adversarial, says(example.pred_adv)),
            ReportImage(
                "Defended",
                example.defended,
                says(example.pred_defended)
                + (
                    "; mirrored left-right by the defence, as the model sees it"
                    if example.mirrored
                    else ""
                ),
            ),
        ],
    )
