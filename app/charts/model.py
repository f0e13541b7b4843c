"""Figures of one model and its data: confusion matrices, top-k bars, training, class counts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts.style import HOVER, base_layout
from engine.errors import ParamError

__all__ = ["PATIENT_CLASSES", "class_counts", "confusion_heatmap", "topk_bars", "training_curves"]

#: Class names of the 2 x 2 patient confusion matrix ([[TN, FP], [FN, TP]]).
PATIENT_CLASSES: tuple[str, str] = ("healthy", "sick")


def confusion_heatmap(
    cm: Any, classes: Sequence[str] = PATIENT_CLASSES, *, title: str = "Confusion matrix"
) -> go.Figure:
    """Annotated confusion matrix: rows = true class, columns = predicted class.

    Cells show the share of the row (the true class) in percent; hovering
    gives the count. Works for the K x K matrix and the 2 x 2 patient view
    (``[[TN, FP], [FN, TP]]`` with ``classes=PATIENT_CLASSES``).

    Parameters
    ----------
    cm : array-like, shape (K, K)
        Counts (e.g. a results row's ``confusion``).
    classes : sequence of str, default=("healthy", "sick")
        K class names, in the matrix's order.
    title : str, default="Confusion matrix"

    Raises
    ------
    ParamError
        ``cm`` missing (no patient view), not square, negative, or not K x K.
    """
    if cm is None or (isinstance(cm, float) and math.isnan(cm)):
        raise ParamError(
            "No confusion matrix to draw (the patient view is empty when the dataset declares "
            "no “sick” classes)."
        )
    m = np.asarray(cm, dtype=float)
    names = [str(c) for c in classes]
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ParamError(f"cm must be a square K x K matrix of counts; got shape {m.shape}.")
    if m.shape[0] != len(names):
        raise ParamError(f"cm is {m.shape[0]} x {m.shape[0]} but {len(names)} classes were given.")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ParamError("cm must hold non-negative counts.")
    rows = m.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(rows > 0, 100 * m / np.where(rows > 0, rows, 1), np.nan)
    text = [["–" if math.isnan(v) else f"{v:.1f} %" for v in r] for r in share]
    hover = [
        [
            f"True {names[i]}, predicted {names[j]}<br>{int(m[i, j])} images"
            + ("" if math.isnan(share[i, j]) else f" ({share[i, j]:.1f} % of true {names[i]})")
            for j in range(len(names))
        ]
        for i in range(len(names))
    ]
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=names,
            y=names,
            text=text,
            texttemplate="%{text}",
            hovertext=hover,
            hovertemplate=HOVER,
            colorscale="Blues",
            zmin=0,
            zmax=100,
            colorbar={"title": {"text": "% of true class"}},
        )
    )
    k = len(names)
    base_layout(
        fig,
        title,
        f"{int(m.sum())} images · rows: true class, columns: prediction",
        height=max(360, 120 + 60 * k),
    )
    fig.update_xaxes(title_text="Predicted class", type="category")
    fig.update_yaxes(title_text="True class", type="category", autorange="reversed")
    return fig


def topk_bars(
    probs: Any,
    classes: Sequence[str],
    *,
    k: int = 3,
    title: str = "Top predictions",
    true_label: int | str | None = None,
) -> go.Figure:
    """Horizontal bars of the ``k`` most probable classes of one image.

    The predicted class is on top; the true class, when given, is green
    (the predicted class red when it is wrong) and, if outside the top ``k``,
    named in a note with its probability.

    Parameters
    ----------
    probs : array-like, shape (K,)
        Class probabilities of one image.
    classes : sequence of str
        K class names.
    k : int, default=3
        Bars to show (at most K).
    title : str, default="Top predictions"
    true_label : int or str, optional
        The true class, as an index or a name.

    Raises
    ------
    ParamError
        Shapes disagree, probabilities outside [0, 1], bad ``k`` or unknown true label.
    """
    p = np.asarray(probs, dtype=float)
    names = [str(c) for c in classes]
    if p.ndim != 1 or p.shape[0] != len(names) or p.size == 0:
        raise ParamError(
            f"probs must be one probability per class ({len(names)}); got shape {p.shape}."
        )
    if not np.all(np.isfinite(p)) or p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise ParamError("probs must be probabilities in [0, 1] (softmax outputs, not logits).")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ParamError(f"k must be a positive integer; got {k!r}.")
    true_index: int | None = None
    if true_label is not None:
        if isinstance(true_label, str):
            if true_label not in names:
                raise ParamError(f"Unknown true label {true_label!r}; classes: {', '.join(names)}.")
            true_index = names.index(true_label)
        elif isinstance(true_label, int | np.integer) and 0 <= int(true_label) < len(names):
            true_index = int(true_label)
        else:
            raise ParamError(f"true_label must be a class index in [0, {len(names)}) or a name.")
    order = list(np.argsort(-p, kind="stable")[: min(int(k), len(names))])
    top = order[0]
    colours = []
    for i in order:
        if true_index is not None and i == true_index:
            colours.append("#2ca02c")
        elif true_index is not None and i == top:
            colours.append("#d62728")
        elif i == top:
            colours.append("#1f77b4")
        else:
            colours.append("#9e9e9e")
    fig = go.Figure(
        go.Bar(
            x=[float(p[i]) for i in order],
            y=[names[i] for i in order],
            orientation="h",
            marker={"color": colours},
            text=[f"{100 * p[i]:.1f} %" for i in order],
            textposition="auto",
            hovertext=[
                f"{names[i]}: {100 * p[i]:.2f} %" + (" (true class)" if i == true_index else "")
                for i in order
            ],
            hovertemplate=HOVER,
        )
    )
    if true_index is None:
        subtitle = "Probability the model gives each class"
    elif top == true_index:
        subtitle = f"Correct: the true class is {names[true_index]}"
    else:
        subtitle = f"Wrong: the true class is {names[true_index]}"
    if true_index is not None and true_index not in order:
        rank = int(np.sum(p > p[true_index])) + 1
        subtitle += f" ({100 * p[true_index]:.1f} %, rank {rank})"
    base_layout(fig, title, subtitle, height=max(220, 110 + 45 * len(order)))
    fig.update_layout(showlegend=False, margin={"b": 50})
    fig.update_xaxes(title_text="Probability (%)", tickformat=".0%", range=[0, 1])
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


def training_curves(history: Sequence[Mapping[str, float]]) -> go.Figure:
    """Training and validation accuracy and loss per epoch (a bundle's ``history.csv``).

    Parameters
    ----------
    history : sequence of dict
        One dict per epoch with ``epoch`` and any of ``acc``/``val_acc``,
        ``loss``/``val_loss`` (:func:`app.cards.read_history`); an adversarial
        training run's ``val_fgsm_acc`` and ``val_pgd_balanced`` are drawn on
        the accuracy panel too, so a collapse of PGD accuracy (catastrophic
        overfitting) is seen where it happens.
    """
    if not history:
        raise ParamError("history: no epochs to plot (the bundle has no history.csv).")
    epochs = [int(h.get("epoch", i)) + 1 for i, h in enumerate(history)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy", "Loss"))
    series = (
        ("acc", "training accuracy", 1, "#1f77b4", "solid"),
        ("val_acc", "validation accuracy", 1, "#ff7f0e", "solid"),
        ("val_fgsm_acc", "validation accuracy under FGSM", 1, "#2ca02c", "dash"),
        ("val_pgd_balanced", "validation balanced accuracy under PGD-10", 1, "#d62728", "dash"),
        ("loss", "training loss", 2, "#1f77b4", "dot"),
        ("val_loss", "validation loss", 2, "#ff7f0e", "dot"),
    )
    for column, name, col, colour, dash in series:
        values = [h.get(column) for h in history]
        if all(v is None for v in values):
            continue
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=values,
                mode="lines+markers",
                name=name,
                line={"color": colour, "dash": dash},
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="epoch", nticks=6)
    fig.update_yaxes(tickformat=".0%", nticks=5, row=1, col=1)
    fig.update_yaxes(nticks=5, row=1, col=2)
    robust = any(h.get("val_pgd_balanced") is not None for h in history)
    base_layout(
        fig,
        "Training curves",
        "Training accuracy is class-weighted and augmented"
        + (
            " (and adversarial); validation is clean, and under attack on 128 of its images."
            if robust
            else "; validation is clean."
        ),
        height=360,
    )
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0})
    return fig


def class_counts(counts: Mapping[str, Mapping[str, int]], spec: Any = None) -> go.Figure:
    """Images per class in each split (a dataset card), stacked by split.

    Parameters
    ----------
    counts : dict
        ``{split: {class: n}}`` (:func:`app.cards.dataset_card`).
    spec : DatasetSpec, optional
        For readable class names.
    """
    if not counts:
        raise ParamError("counts: no splits to plot.")
    fig = go.Figure()
    for split, per_class in counts.items():
        names = [spec.class_title(c) if spec is not None else c for c in per_class]
        fig.add_trace(
            go.Bar(
                x=names,
                y=list(per_class.values()),
                name=f"{split} ({sum(per_class.values())})",
                hovertemplate="%{x}: %{y} images<extra>" + split + "</extra>",
            )
        )
    fig.update_layout(barmode="stack", xaxis_title="class", yaxis_title="images")
    base_layout(fig, "Images per class and split", "", height=360)
    return fig
