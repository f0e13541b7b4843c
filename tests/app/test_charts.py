"""app.charts: traces, hover text, titles and units of the dashboard's figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from app import charts, labels
from app.charts.style import (
    ADAPTIVE_LEGEND,
    ADAPTIVE_MARKER_LEGEND,
    ONLY_TRANSFER_NOTE,
    TRANSFER_LEGEND,
    TRANSFER_MARKER_LEGEND,
)
from engine.errors import ParamError
from engine.threat import ADAPTIVE, THREAT_TRANSFER, TRANSFER, adaptive_label
from tests.engine.tables import ACC, make_table

MANIFEST = {"model": {"classes": ["ok", "bad"], "positive": ["bad"]}}


@pytest.fixture
def table():
    return make_table()


def _annotations(fig: go.Figure) -> str:
    return " | ".join(a.text or "" for a in fig.layout.annotations)


def _title(fig: go.Figure) -> str:
    return fig.layout.title.text.replace("<br>", " ")


def _subtitle(fig: go.Figure) -> str:
    return fig.layout.title.subtitle.text.replace("<br>", " ")


# --------------------------------------------------------------------------- metric vs eps


def test_metric_vs_eps_one_trace_per_setting(table):
    keys = ["none", "median:kernel=3", "median:kernel=5", "nlm+median:kernel=3"]
    fig = charts.metric_vs_eps(table, metric="accuracy", attack="fgsm", defence_keys=keys)
    assert len(fig.data) == len(keys)
    assert [t.name for t in fig.data] == [labels.setting_label(k) for k in keys]
    none = fig.data[0]
    assert list(none.x) == [0.0, 4.0, 8.0]
    assert list(none.y) == pytest.approx([0.90, 0.30, 0.10])


def test_metric_vs_eps_units_hover_and_threat_model(table):
    fig = charts.metric_vs_eps(
        table, metric="accuracy", attack="fgsm", defence_keys=["none", "median:kernel=5"]
    )
    assert fig.layout.xaxis.title.text == "ε (L∞, 0–255 pixel levels)"
    assert fig.layout.yaxis.title.text == "Accuracy (%)"
    assert fig.layout.yaxis.tickformat == ".0%"
    assert "FGSM" in _title(fig)
    subtitle = _subtitle(fig)
    assert THREAT_TRANSFER in subtitle and "Athalye" in subtitle
    hover = fig.data[1].hovertext[2]  # median:kernel=5 at eps 8
    assert "Images evaluated: 50" in hover
    assert "Accuracy: 50.00 %" in hover
    assert "Median(kernel=5)" in hover  # the full defence label
    assert f"Threat model: {THREAT_TRANSFER}" in hover
    assert fig.data[0].hovertemplate == "%{hovertext}<extra></extra>"


def test_no_defence_is_dark_and_families_share_a_colour(table):
    keys = ["none", "median:kernel=3", "median:kernel=5", "jpeg:quality=50"]
    fig = charts.metric_vs_eps(table, metric="accuracy", attack="fgsm", defence_keys=keys)
    colours = [t.line.color for t in fig.data]
    assert colours[0] == charts.FAMILY_COLOURS["none"] == "#222222"
    assert colours[1] == colours[2] == charts.family_colour("median")
    assert len(set(colours)) == 3
    assert fig.data[1].line.dash != fig.data[2].line.dash  # same family, told apart by dash
    assert charts.family_colour("nlm+median") != charts.family_colour("nlm")
    assert charts.family_colour("unknown") == charts.family_colour("unknown")  # stable


def test_metric_vs_eps_gaps_for_infinite_psnr(table):
    fig = charts.metric_vs_eps(table, metric="psnr_mean", attack="fgsm", defence_keys=["none"])
    assert fig.data[0].y[0] is None  # inf: identical images
    assert fig.layout.yaxis.title.text == "PSNR (dB)"
    assert "infinite" in _subtitle(fig)


def test_metric_vs_eps_errors(table):
    with pytest.raises(ParamError, match=r"Unknown metric 'auc'; known: accuracy"):
        charts.metric_vs_eps(table, metric="auc", attack="fgsm", defence_keys=["none"])
    with pytest.raises(ParamError, match=r"Unknown attack 'cw'; this table has: fgsm, pgd"):
        charts.metric_vs_eps(table, metric="accuracy", attack="cw", defence_keys=["none"])
    with pytest.raises(ParamError, match=r"Unknown defence setting 'bm3d'.*: none, median"):
        charts.metric_vs_eps(table, metric="accuracy", attack="fgsm", defence_keys=["bm3d"])
    with pytest.raises(ParamError, match="at least one defence setting"):
        charts.metric_vs_eps(table, metric="accuracy", attack="fgsm", defence_keys=[])


def _with_adaptive(table: pd.DataFrame, keys, attack: str = "fgsm") -> pd.DataFrame:
    """``table`` plus an adaptive copy (accuracy 0.02 lower per ε step) of ``keys``' attacked
    rows of ``attack``, the copies first."""
    rows = table[(table["attack"] == attack) & (table["eps"] > 0) & table["defence_key"].isin(keys)]
    rows = rows.copy()
    rows["threat_model"] = adaptive_label("bpda-identity")
    rows["accuracy"] = rows["accuracy"] - 0.005 * rows["eps"]
    return pd.concat([rows, table], ignore_index=True)


KEYS = ["none", "median:kernel=3", "median:kernel=5", "jpeg:quality=50"]


def test_metric_vs_eps_draws_adaptive_dashed_in_the_same_colour(table):
    before = charts.metric_vs_eps(table, metric="accuracy", attack="fgsm", defence_keys=KEYS)
    both = _with_adaptive(table, ["median:kernel=3", "median:kernel=5"])
    fig = charts.metric_vs_eps(both, metric="accuracy", attack="fgsm", defence_keys=KEYS)
    transfer = [t for t in fig.data if t.legendgroup == TRANSFER_LEGEND]
    adaptive = [t for t in fig.data if t.legendgroup == ADAPTIVE_LEGEND]
    assert len(transfer) == len(KEYS) and len(adaptive) == 2 and len(fig.data) == 6
    for old, new in zip(before.data, transfer, strict=True):  # transfer numbers as before
        assert (list(new.x), list(new.y)) == (list(old.x), list(old.y))
        assert (new.line.color, new.marker.symbol) == (old.line.color, old.marker.symbol)
        assert new.line.dash == "solid"
    for t, key in zip(adaptive, ["median:kernel=3", "median:kernel=5"], strict=True):
        twin = transfer[KEYS.index(key)]
        assert t.line.dash == "dash" and t.line.color == twin.line.color
        assert t.marker.symbol == twin.marker.symbol and t.name == twin.name
        accs = ACC[key]
        assert list(t.x) == [0.0, 4.0, 8.0]
        assert list(t.y) == pytest.approx([accs[0], accs[4] - 0.02, accs[8] - 0.04])
        assert f"Threat model: {adaptive_label('bpda-identity')}" in t.hovertext[1]
    assert fig.data[2].legendgroup == ADAPTIVE_LEGEND  # right after its transfer twin
    assert transfer[0].name == "No defence (the same under both threat models)"
    assert "does not know the defence (transfer)" in TRANSFER_LEGEND
    assert "knows the defence (adaptive: BPDA/EOT)" in ADAPTIVE_LEGEND
    assert {t.legendgrouptitle.text.replace("<br>", " ") for t in fig.data} == {
        TRANSFER_LEGEND,
        ADAPTIVE_LEGEND,
    }
    subtitle = _subtitle(fig)
    assert f"solid = {TRANSFER.label}" in subtitle
    assert f"dashed = {ADAPTIVE.label} (bpda-identity)" in subtitle
    assert "only transfer rows" not in subtitle


def test_metric_vs_eps_adaptive_no_defence_drawn_when_it_has_rows(table):
    both = _with_adaptive(table, ["none"])
    fig = charts.metric_vs_eps(both, metric="accuracy", attack="fgsm", defence_keys=KEYS[:2])
    assert [t.line.dash for t in fig.data] == ["solid", "dash", "solid"]
    assert fig.data[0].name == fig.data[1].name == "No defence"
    assert list(fig.data[1].y) == pytest.approx([0.90, 0.28, 0.06])


def test_metric_vs_eps_without_adaptive_rows_is_transfer_only_and_says_so(table):
    other = _with_adaptive(table, ["median:kernel=3"], attack="pgd")  # not the drawn attack
    for df in (table, other):
        fig = charts.metric_vs_eps(df, metric="accuracy", attack="fgsm", defence_keys=KEYS)
        assert len(fig.data) == len(KEYS)
        assert [t.name for t in fig.data] == [labels.setting_label(k) for k in KEYS]
        for t, key in zip(fig.data, KEYS, strict=True):
            assert list(t.y) == pytest.approx([ACC[key][e] for e in (0, 4, 8)])
            assert t.legendgroup is None
        assert [t.line.dash for t in fig.data] == ["solid", "solid", "dash", "solid"]
        subtitle = _subtitle(fig)
        assert subtitle.count("an attacker who knows the defence does better") == 1
        assert subtitle.endswith(
            "· only transfer rows: no adaptive attack in this table for these settings"
        )
    alone = charts.metric_vs_eps(table, metric="accuracy", attack="fgsm", defence_keys=["none"])
    assert "only transfer rows" not in _subtitle(alone)  # no defence drawn: nothing to know


# --------------------------------------------------------------------------- two panel


def test_two_panel_model_and_patient(table):
    fig = charts.two_panel(table, attack="fgsm", defence_key="median:kernel=3", manifest=MANIFEST)
    assert len(fig.data) == 8
    left = [t for t in fig.data if t.xaxis == "x"]
    right = [t for t in fig.data if t.xaxis == "x2"]
    assert [t.name.split(" (")[0] for t in left] == [
        "Accuracy",
        "Macro recall",
        "Macro specificity",
        "Fooling rate",
    ]
    assert [t.name.split(" (")[0] for t in right] == [
        "Accuracy",
        "Sensitivity",
        "NPV",
        "False-negative rate",
    ]
    assert all(t.legend == "legend2" for t in right)
    titles = _annotations(fig)
    assert "Model performance" in titles and "sick = bad" in titles
    assert "Median kernel=3" in _title(fig)
    assert fig.layout.xaxis2.title.text == labels.EPS_AXIS
    fnr = right[3]
    assert fnr.line.dash == "dash"  # lower is better
    assert list(fnr.y) == pytest.approx([1 - 0.90, 1 - 0.65, 1 - 0.45])


def _group_title(trace) -> str:
    return (trace.legendgrouptitle.text or "").replace("<br>", " ")


def test_two_panel_draws_adaptive_dashed_in_the_same_colour(table):
    key = "median:kernel=3"
    before = charts.two_panel(table, attack="fgsm", defence_key=key, manifest=MANIFEST)
    both = _with_adaptive(table, [key])
    fig = charts.two_panel(both, attack="fgsm", defence_key=key, manifest=MANIFEST)
    assert len(fig.data) == 2 * len(before.data) == 16
    transfer, adaptive = fig.data[::2], fig.data[1::2]  # each curve followed by its twin
    for old, solid, dashed in zip(before.data, transfer, adaptive, strict=True):
        assert (solid.name, dashed.name) == (old.name, old.name)
        assert list(solid.y) == list(old.y) and solid.line.color == old.line.color
        assert solid.line.dash == "solid" and dashed.line.dash == "dash"
        assert dashed.line.color == solid.line.color
        assert dashed.marker.symbol == solid.marker.symbol is not None
        assert (
            (solid.legend, solid.xaxis) == (dashed.legend, dashed.xaxis) == (old.legend, old.xaxis)
        )
        assert _group_title(solid) == TRANSFER_LEGEND and _group_title(dashed) == ADAPTIVE_LEGEND
        assert "Threat model: adaptive" in dashed.hovertext[2]
    fnr = transfer[-1]
    assert fnr.name == "False-negative rate (lower is better)" and fnr.line.dash == "solid"
    accuracy = adaptive[0]
    assert list(accuracy.x) == [0.0, 4.0, 8.0]
    assert list(accuracy.y) == pytest.approx([0.85, 0.60 - 0.02, 0.40 - 0.04])
    # one marker per metric within a panel, and each legend's groups its own
    assert len({t.marker.symbol for t in transfer[:4]}) == 4
    assert {t.legendgroup for t in transfer[:4]}.isdisjoint(t.legendgroup for t in transfer[4:])
    assert len({t.legendgroup for t in fig.data}) == 4
    assert fig.layout.legend.groupclick == fig.layout.legend2.groupclick == "toggleitem"
    assert fig.layout.margin.b > before.layout.margin.b  # room for the longer legends
    subtitle = _subtitle(fig)
    assert f"solid = {TRANSFER.label}" in subtitle
    assert f"dashed = {ADAPTIVE.label} (bpda-identity)" in subtitle
    assert ONLY_TRANSFER_NOTE not in subtitle and "attack on" not in subtitle  # same images


def test_two_panel_transfer_only_says_so(table):
    key = "median:kernel=3"
    other = _with_adaptive(table, ["median:kernel=5"])  # adaptive rows, not for this setting
    for df in (table, other):
        fig = charts.two_panel(df, attack="fgsm", defence_key=key, manifest=MANIFEST)
        assert len(fig.data) == 8 and all(t.legendgroup is None for t in fig.data)
        assert fig.data[3].line.dash == "dash"  # fooling rate: lower is better
        assert _subtitle(fig).endswith(ONLY_TRANSFER_NOTE)
    none = charts.two_panel(other, attack="fgsm", manifest=MANIFEST)
    assert len(none.data) == 8
    assert ONLY_TRANSFER_NOTE not in _subtitle(none)  # no defence: nothing to know


def test_two_panel_adaptive_no_defence_and_fewer_images(table):
    both = _with_adaptive(table, ["none"])
    both.loc[both["threat_model"] != THREAT_TRANSFER, "n_images"] = 20
    both.loc[both["eps"] == 0, "n_images"] = 50
    fig = charts.two_panel(both, attack="fgsm", manifest=MANIFEST)
    assert len(fig.data) == 16
    assert [t.line.dash for t in fig.data[:2]] == ["solid", "dash"]
    assert list(fig.data[1].y) == pytest.approx([0.90, 0.28, 0.06])
    assert "adaptive attack on 20 images, transfer on 50" in _subtitle(fig)
    assert "Images evaluated: 20" in fig.data[1].hovertext[1]


def test_two_panel_without_patient_view():
    fig = charts.two_panel(make_table(patient=False), attack="fgsm")
    assert len(fig.data) == 4
    assert {t.xaxis for t in fig.data} == {"x"}
    assert "No patient view" in _subtitle(fig)


def test_patient_metric_undefined_is_said(table):
    fig = charts.metric_vs_eps(
        make_table(patient=False), metric="sensitivity", attack="fgsm", defence_keys=["none"]
    )
    assert "no “sick” classes" in _subtitle(fig)
    assert "Undefined for this dataset" in _annotations(fig)


# --------------------------------------------------------------------------- metric vs param


def test_metric_vs_param_with_reference_lines(table):
    fig = charts.metric_vs_param(
        table, metric="accuracy", attack="fgsm", eps=8, family="nlm", param="h"
    )
    assert len(fig.data) == 1
    assert list(fig.data[0].x) == [5, 10]
    assert list(fig.data[0].y) == pytest.approx([0.30, 0.35])
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert sorted(s.y0 for s in lines) == pytest.approx([0.10, 0.90])  # no defence, clean
    assert any(s.line.dash == "dash" and s.y0 == pytest.approx(0.10) for s in lines)
    assert "no defence: 10.0 %" in _annotations(fig)
    assert "h_color varies with h" in _subtitle(fig)
    assert "Strength on lightness" in fig.layout.xaxis.title.text


def test_metric_vs_param_maps_eps_and_rejects_unknown_params(table):
    fig = charts.metric_vs_param(
        table, metric="accuracy", attack="fgsm", eps=7, family="median", param="kernel"
    )
    assert "ε 8" in _title(fig)
    assert "ε 7 is not precomputed; showing ε 8 (nearest)" in _subtitle(fig)
    with pytest.raises(ParamError, match=r"Median blur has no parameter 'sigma'.*known: kernel"):
        charts.metric_vs_param(
            table, metric="accuracy", attack="fgsm", eps=8, family="median", param="sigma"
        )


def test_metric_vs_param_draws_adaptive_dashed_where_it_has_rows(table):
    both = _with_adaptive(table, ["median:kernel=3", "median:kernel=5"])
    fig = charts.metric_vs_param(
        both, metric="accuracy", attack="fgsm", eps=8, family="median", param="kernel"
    )
    assert len(fig.data) == 2
    solid, dashed = fig.data
    assert (list(solid.x), list(solid.y)) == ([3, 5], pytest.approx([0.40, 0.50]))
    assert (list(dashed.x), list(dashed.y)) == ([3, 5], pytest.approx([0.36, 0.46]))
    assert solid.line.dash == "solid" and dashed.line.dash == "dash"
    assert dashed.line.color == solid.line.color == charts.family_colour("median")
    assert dashed.marker.symbol == solid.marker.symbol and dashed.name == solid.name
    assert (solid.legendgroup, dashed.legendgroup) == (TRANSFER_LEGEND, ADAPTIVE_LEGEND)
    assert (_group_title(solid), _group_title(dashed)) == (TRANSFER_LEGEND, ADAPTIVE_LEGEND)
    assert f"Threat model: {adaptive_label('bpda-identity')}" in dashed.hovertext[0]
    subtitle = _subtitle(fig)
    assert f"dashed = {ADAPTIVE.label} (bpda-identity)" in subtitle
    assert ONLY_TRANSFER_NOTE not in subtitle
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert sorted((s.y0, s.line.dash) for s in lines) == [(0.10, "solid"), (0.90, "dot")]
    # only the values with an adaptive row get an adaptive point
    some = _with_adaptive(table, ["median:kernel=5"])
    fig = charts.metric_vs_param(
        some, metric="accuracy", attack="fgsm", eps=8, family="median", param="kernel"
    )
    assert [list(t.x) for t in fig.data] == [[3, 5], [5]]
    assert list(fig.data[1].y) == pytest.approx([0.46])


def test_metric_vs_param_adaptive_no_defence_reference(table):
    both = _with_adaptive(table, ["none", "median:kernel=3"])
    fig = charts.metric_vs_param(
        both, metric="accuracy", attack="fgsm", eps=8, family="median", param="kernel"
    )
    lines = sorted((s.y0, s.line.dash) for s in fig.layout.shapes if s.type == "line")
    assert lines == [(pytest.approx(0.06), "dash"), (0.10, "solid"), (0.90, "dot")]
    assert "no defence, adaptive (50 images): 6.0 %" in _annotations(fig)
    assert "no defence: 10.0 %" in _annotations(fig)


def test_metric_vs_param_transfer_only_says_so(table):
    other = _with_adaptive(table, ["median:kernel=3"], attack="pgd")  # another attack
    for df in (table, other):
        fig = charts.metric_vs_param(
            df, metric="accuracy", attack="fgsm", eps=8, family="median", param="kernel"
        )
        assert len(fig.data) == 1 and fig.data[0].legendgroup is None
        assert ONLY_TRANSFER_NOTE in _subtitle(fig)
    clean = charts.metric_vs_param(
        table, metric="accuracy", attack="fgsm", eps=0, family="median", param="kernel"
    )
    assert ONLY_TRANSFER_NOTE not in _subtitle(clean)  # no attack drawn


# --------------------------------------------------------------------------- trade-off


def test_tradeoff_points_and_guides(table):
    fig = charts.tradeoff(table, attack="fgsm", eps=8)
    points = {
        label: (x, y)
        for t in fig.data
        if t.name != "No defence"
        for label, x, y in zip(t.customdata, t.x, t.y, strict=True)
    }
    assert len(points) == len(ACC) - 1
    shown = [text for t in fig.data if t.name != "No defence" for text in t.text if text]
    assert 0 < len(shown) <= 5  # only the best few are labelled; hover has every point
    x, y = points["Median kernel=5"]
    assert (x, y) == (pytest.approx(20.0), pytest.approx(40.0))  # percentage points
    assert points["JPEG quality=50"][1] == pytest.approx(-5.0)
    assert "top-left" in _title(fig)
    assert "percentage points" in fig.layout.xaxis.title.text
    guides = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(guides) == 2  # x = 0 and y = 0
    origin = next(t for t in fig.data if t.name == "No defence")
    assert (origin.x[0], origin.y[0]) == (0.0, 0.0)
    assert origin.marker.color == charts.FAMILY_COLOURS["none"]
    assert any(
        "Images evaluated: 50" in h for t in fig.data if t.name != "No defence" for h in t.hovertext
    )


def test_tradeoff_draws_adaptive_open_markers_joined_by_dotted_lines(table):
    keys = ["median:kernel=3", "median:kernel=5", "nlm:h=5,h_color=5"]
    before = charts.tradeoff(table, attack="fgsm", eps=8)
    fig = charts.tradeoff(_with_adaptive(table, keys), attack="fgsm", eps=8)
    filled = [t for t in fig.data if t.mode == "markers+text" and t.name != "No defence"]
    opened = [
        t for t in fig.data if t.legendgroup == ADAPTIVE_MARKER_LEGEND and t.mode == "markers"
    ]
    dotted = [t for t in fig.data if t.mode == "lines"]
    (key,) = [t for t in fig.data if t.mode == "lines+markers"]  # the legend's open marker
    old = [t for t in before.data if t.name != "No defence"]
    assert [(t.name, list(t.x), list(t.y), t.legendgroup) for t in filled] == [
        (t.name, list(t.x), list(t.y), None) for t in old
    ]  # the transfer markers as before: one legend entry per family
    assert all(t.legendgroup is None for t in before.data)
    assert before.layout.legend.title.text is None
    assert fig.layout.legend.title.text.replace("<br>", " ") == TRANSFER_MARKER_LEGEND
    # one legend entry for every adaptive trace: a click shows or hides them all
    assert all(t.showlegend is False for t in (*opened, *dotted))
    assert key.legendgroup == ADAPTIVE_MARKER_LEGEND and key.showlegend is not False
    assert key.name.replace("<br>", " ") == f"{ADAPTIVE_MARKER_LEGEND}; dotted: its drop"
    assert key.marker.symbol == "circle-open" and key.line.dash == "dot"
    assert list(key.x) == [None] and fig.layout.legend.groupclick is None  # togglegroup
    assert [t.name for t in opened] == ["Median blur", "Non-local means"]  # no JPEG: no rows
    for t in opened:
        twin = next(f for f in filled if f.name == t.name)
        assert t.marker.symbol == "circle-open" and twin.marker.symbol == "circle"
        assert (
            t.marker.color
            == twin.marker.color
            == charts.family_colour("median" if t.name == "Median blur" else "nlm")
        )
    median = dict(
        zip(opened[0].customdata, zip(opened[0].x, opened[0].y, strict=True), strict=True)
    )
    # the adaptive rows are 4 points lower at eps 8; "none" has none: its transfer row is the base
    assert median["Median kernel=5"] == (pytest.approx(20.0), pytest.approx(36.0))
    assert median["Median kernel=3"] == (pytest.approx(5.0), pytest.approx(26.0))
    hover = opened[0].hovertext[list(opened[0].customdata).index("Median kernel=5")]
    assert "attacker knows the defence" in hover and "Against the transfer attack: +40.00" in hover
    assert len(dotted) == 2 and all(t.line.dash == "dot" and t.line.width == 1 for t in dotted)
    assert all(t.legendgroup == ADAPTIVE_MARKER_LEGEND and t.hoverinfo == "skip" for t in dotted)
    assert fig.data[0] is dotted[0]  # drawn first: under the markers
    line = dotted[0]
    segments = [tuple(line.x[i : i + 2]) + tuple(line.y[i : i + 2]) for i in (0, 3)]
    assert sorted(segments) == [
        pytest.approx((5.0, 5.0, 30.0, 26.0)),  # kernel=3: x, x (same clean cost), y, y
        pytest.approx((20.0, 20.0, 40.0, 36.0)),
    ]
    assert line.x[2] is None and line.line.color == opened[0].marker.color
    assert "attacker does not know the defence (transfer)" in TRANSFER_MARKER_LEGEND
    assert "attacker knows it (adaptive" in ADAPTIVE_MARKER_LEGEND
    subtitle = _subtitle(fig)
    assert f"filled = {TRANSFER.label}" in subtitle
    assert f"open = {ADAPTIVE.label} (bpda-identity)" in subtitle
    assert ONLY_TRANSFER_NOTE not in subtitle
    low, high = fig.layout.yaxis.range  # the open markers are inside the axes
    assert low < min(y for t in opened for y in t.y) and high > max(y for t in filled for y in t.y)


def test_tradeoff_labels_never_overlap(table):
    same = table.copy()
    twin = same["defence_key"] == "median:kernel=3"
    for eps in (0.0, 8.0):  # kernel=3 at kernel=5's point: their labels would overlap
        five = same[(same["defence_key"] == "median:kernel=5") & (same["eps"] == eps)]
        same.loc[twin & (same["eps"] == eps), "accuracy"] = float(five["accuracy"].iloc[0])
    fig = charts.tradeoff(same, attack="fgsm", eps=8)
    shown = [text for t in fig.data if t.name != "No defence" for text in t.text if text]
    assert len([text for text in shown if text.startswith("Median")]) == 1
    assert 0 < len(shown) <= 5


def test_tradeoff_adaptive_baseline_is_its_own_undefended_row(table):
    both = _with_adaptive(table, ["none", "median:kernel=5"])
    both.loc[both["threat_model"] != THREAT_TRANSFER, "n_images"] = 20
    both.loc[both["eps"] == 0, "n_images"] = 50
    fig = charts.tradeoff(both, attack="fgsm", eps=8)
    (opened,) = [
        t for t in fig.data if t.legendgroup == ADAPTIVE_MARKER_LEGEND and t.mode == "markers"
    ]
    # 0.46 with the defence against 0.06 without it, on the adaptive images
    assert list(opened.y) == pytest.approx([40.0]) and list(opened.x) == pytest.approx([20.0])
    assert "Images evaluated: 20" in opened.hovertext[0]
    assert "adaptive attack on 20 images, transfer on 50" in _subtitle(fig)
    origin = next(t for t in fig.data if t.name == "No defence")
    assert "Under the adaptive attack's images: 6.0 %" in origin.hovertext[0]


def test_tradeoff_transfer_only_says_so(table):
    other = _with_adaptive(table, ["median:kernel=3"], attack="pgd")
    for df, attack in ((table, "fgsm"), (other, "fgsm"), (table, "pgd")):
        fig = charts.tradeoff(df, attack=attack, eps=8)
        assert all(t.legendgroup is None for t in fig.data)
        assert not any("open" in (t.marker.symbol or "") for t in fig.data)
        assert fig.layout.legend.title.text is None
        assert ONLY_TRANSFER_NOTE in _subtitle(fig)


# --------------------------------------------------------------------------- single cells


def test_confusion_heatmap_row_normalised_with_counts():
    fig = charts.confusion_heatmap([[3, 1], [0, 4]], ["ok", "bad"], title="Clean")
    heat = fig.data[0]
    assert np.allclose(np.asarray(heat.z, dtype=float), [[75.0, 25.0], [0.0, 100.0]])
    assert list(heat.text[0]) == ["75.0 %", "25.0 %"]
    assert "1 images" in heat.hovertext[0][1] and "predicted bad" in heat.hovertext[0][1]
    assert fig.layout.yaxis.title.text == "True class"
    assert fig.layout.xaxis.title.text == "Predicted class"
    assert fig.layout.yaxis.autorange == "reversed"  # first class on top, as printed


def test_confusion_heatmap_patient_default_labels_and_empty_rows():
    fig = charts.confusion_heatmap([[5, 0], [0, 0]], title="Patient view")
    heat = fig.data[0]
    assert list(heat.x) == ["healthy", "sick"]
    assert list(heat.text[1]) == ["–", "–"]  # no sick patients: shares undefined


def test_confusion_heatmap_errors():
    with pytest.raises(ParamError, match="no “sick” classes"):
        charts.confusion_heatmap(None, title="x")
    with pytest.raises(ParamError, match=r"cm is 2 x 2 but 3 classes"):
        charts.confusion_heatmap([[1, 0], [0, 1]], ["a", "b", "c"], title="x")
    with pytest.raises(ParamError, match="square"):
        charts.confusion_heatmap([[1, 0, 2]], ["a"], title="x")


def test_topk_bars():
    fig = charts.topk_bars([0.1, 0.6, 0.3], ["a", "b", "c"], k=2, title="t", true_label="a")
    bar = fig.data[0]
    assert list(bar.y) == ["b", "c"]  # most probable first
    assert list(bar.x) == pytest.approx([0.6, 0.3])
    assert bar.marker.color[0] == "#d62728"  # wrong top prediction
    assert _subtitle(fig) == "Wrong: the true class is a (10.0 %, rank 3)"
    fig = charts.topk_bars([0.1, 0.6, 0.3], ["a", "b", "c"], k=5, title="t", true_label=1)
    assert len(fig.data[0].y) == 3 and fig.data[0].marker.color[0] == "#2ca02c"
    with pytest.raises(ParamError, match="one probability per class"):
        charts.topk_bars([0.5, 0.5], ["a", "b", "c"], title="t")
    with pytest.raises(ParamError, match="Unknown true label 'z'"):
        charts.topk_bars([0.5, 0.5], ["a", "b"], title="t", true_label="z")


def test_overlay_live_adds_one_trace(table):
    fig = charts.metric_vs_eps(table, metric="accuracy", attack="fgsm", defence_keys=["none"])
    live = [
        {"eps": 8, "accuracy": 0.125, "n_images": 8},
        {"eps": 0, "accuracy": 0.875, "n_images": 8},
    ]
    out = charts.overlay_live(fig, live, metric="accuracy")
    assert out is fig and len(fig.data) == 2
    trace = fig.data[-1]
    assert trace.name == "live (8 images)"
    assert list(trace.x) == [0, 8]  # sorted
    assert list(trace.y) == pytest.approx([0.875, 0.125])
    assert "Images evaluated: 8" in trace.hovertext[0]
    panel = charts.two_panel(table, attack="fgsm")
    charts.overlay_live(
        panel, [{"h": 5, "sensitivity": 0.5}], metric="sensitivity", x="h", row=1, col=2
    )
    assert panel.data[-1].xaxis == "x2" and panel.data[-1].name == "live (a few images)"
    with pytest.raises(ParamError, match=r"Live result 0 has no 'accuracy'; it has: eps"):
        charts.overlay_live(fig, [{"eps": 1}], metric="accuracy")


def test_chart_configs():
    assert charts.CHART_CONFIG["toImageButtonOptions"]["format"] == "png"
    assert charts.CHART_CONFIG["toImageButtonOptions"]["scale"] == 2
    assert charts.CHART_CONFIG["toImageButtonOptions"]["filename"]
    assert charts.CHART_CONFIG_SVG["toImageButtonOptions"]["format"] == "svg"
    assert charts.chart_config("recap_fgsm")["toImageButtonOptions"]["filename"] == "recap_fgsm"
    with pytest.raises(ParamError, match="Unknown image format 'gif'"):
        charts.chart_config(fmt="gif")


# --------------------------------------------------------------------------- transfer vs adaptive


def test_threat_gap_pairs_each_setting_under_both_threat_models(table):
    keys = ["none", "median:kernel=3", "median:kernel=5"]
    fig = charts.threat_gap(_with_adaptive(table, keys), attack="fgsm", eps=8)
    markers = [t for t in fig.data if t.mode == "markers" and t.x != (None,)]
    transfer, adaptive = markers
    assert transfer.marker.symbol == "circle" and adaptive.marker.symbol == "circle-open"
    # sorted by adaptive accuracy, best on top (plotly draws the first category lowest)
    assert list(adaptive.y) == ["Median kernel=3", "Median kernel=5"]
    # FGSM eps 8: transfer 40 % / 50 %, adaptive 0.04 lower
    assert list(transfer.x) == pytest.approx([40.0, 50.0])
    assert list(adaptive.x) == pytest.approx([36.0, 46.0])
    assert list(transfer.marker.color) == list(adaptive.marker.color)  # the family's colour
    lines = [t for t in fig.data if t.mode == "lines"]
    assert [v for t in lines for v in t.x] == pytest.approx([40.0, 36.0, 50.0, 46.0])
    keys_shown = [t for t in fig.data if t.x == (None,)]
    assert [t.name.replace("<br>", " ") for t in keys_shown] == [
        TRANSFER_MARKER_LEGEND,
        ADAPTIVE_MARKER_LEGEND,
    ]
    # the undefended model (adaptive: through no defence) as a reference line
    refs = [s for s in fig.layout.shapes if s.type == "line"]
    assert refs and refs[0].x0 == pytest.approx(100 * (0.10 - 0.04))
    assert any("most common answer" in a.text for a in fig.layout.annotations)


def test_threat_gap_without_adaptive_rows_says_so(table):
    fig = charts.threat_gap(table, attack="fgsm", eps=8)
    assert not fig.data
    assert "No attack crafted through the defences" in fig.layout.annotations[0].text
