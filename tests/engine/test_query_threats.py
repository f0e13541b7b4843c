"""A table that also holds adaptive rows reads, by default, exactly as its transfer rows:
every query, view and chart gives the same output (the shipped synthetic results, no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.evaluation import load_results, query
from engine.threat import THREAT_CLEAN, THREAT_TRANSFER, adaptive_label

RESULTS = Path(__file__).resolve().parents[2] / "assets" / "results" / "synthetic__tiny"
ADAPTIVE = adaptive_label("bpda-identity")


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The shipped table, and the same with an adaptive copy of every attacked row (other
    numbers: accuracy halved, confusion rolled), the copies interleaved with the originals."""
    table, manifest = load_results(RESULTS, companion=False)  # the transfer sweep alone
    attacked = table[table["eps"] > 0].copy()
    attacked["threat_model"] = ADAPTIVE
    for col in ("accuracy", "patient_accuracy", "sensitivity", "macro_recall", "fooling_rate"):
        attacked[col] = attacked[col] / 2 + 0.01
    attacked["confusion"] = [
        np.roll(np.asarray(c), 1, axis=1).tolist() for c in attacked["confusion"]
    ]
    both = pd.concat([attacked.iloc[::2], table, attacked.iloc[1::2]], ignore_index=True)
    assert len(both) == len(table) + len(attacked)
    return table, both, manifest


def test_threats_of_the_tables(tables):
    table, both, _ = tables
    assert query.threats(table) == ["transfer"]
    assert query.threats(both) == ["transfer", "adaptive"]
    assert query.for_threat(table) is table, "a transfer-only table is read as it is"
    pd.testing.assert_frame_equal(query.for_threat(both).reset_index(drop=True), table)
    adaptive = query.for_threat(both, "adaptive")
    assert set(adaptive["threat_model"]) == {THREAT_CLEAN, ADAPTIVE}
    assert len(adaptive) == len(table)
    old = table.drop(columns="threat_model")
    assert set(query.threats(old)) == {"transfer"} and query.for_threat(old) is old
    assert THREAT_TRANSFER in set(table["threat_model"])


def test_queries_pick_the_transfer_row_by_default(tables):
    table, both, _ = tables
    for attack, eps, key in (("fgsm", 8.0, "none"), ("pgd", 4.0, "jpeg:quality=75")):
        pd.testing.assert_series_equal(
            query.find_row(both, attack, eps, key),
            query.find_row(table, attack, eps, key),
            check_names=False,
        )
        assert query.find_row(both, attack, eps, key, threat="adaptive")["threat_model"] == ADAPTIVE
    for fam, params in (("median", {"kernel": 4}), ("nlm", {"h": 6}), (None, None)):
        a, note_a = query.nearest_setting(
            both, attack="pgd", eps=5, defence_family=fam, params=params
        )
        b, note_b = query.nearest_setting(
            table, attack="pgd", eps=5, defence_family=fam, params=params
        )
        pd.testing.assert_series_equal(a, b, check_names=False)
        assert note_a == note_b
    assert query.eps_values(both, "fgsm") == query.eps_values(table, "fgsm")
    assert query.attacked(both) == query.attacked(table)
    assert query.resolve_eps(both, "pgd", 3, "none") == query.resolve_eps(table, "pgd", 3, "none")


def _same_figure(a, b) -> None:
    assert a.to_json() == b.to_json()


def _transfer_traces_kept(both, table) -> None:
    """Every trace of the transfer-only figure is drawn, unchanged, in the figure with
    adaptive rows too (which adds its adaptive traces: dashed lines, open markers)."""
    drawn = [(t.x, t.y) for t in both.data]
    for t in table.data:
        if t.x is not None and len(t.x):
            assert (t.x, t.y) in drawn, t.name
    assert len(both.data) > len(table.data)


def test_views_and_charts_show_the_transfer_rows_as_before(tables):
    from app import grid, views
    from app.charts import curves, model, tradeoff
    from app.charts.param import metric_vs_param  # tradeoff: the chart function

    table, both, manifest = tables
    for attack, eps in (("fgsm", 8), ("pgd", 5)):
        h_both = views.headline(both, attack=attack, eps=eps)
        h = views.headline(table, attack=attack, eps=eps)
        # the transfer numbers are the same; the best is chosen by the adaptive number
        # (every setting's adaptive copy keeps the transfer order here, so the same one)
        assert h["adaptive"] is None and h_both["adaptive"] is not None
        same = ("clean_accuracy", "attacked_accuracy", "drop", "n_images", "threat_model")
        assert {k: h_both[k] for k in same} == {k: h[k] for k in same}
        assert h_both["transfer_best_key"] == h["transfer_best_key"] == h["best_key"]
        assert h_both["best_by"] == "adaptive" and h["best_by"] == "transfer"
        a = views.tradeoff_table(both, attack=attack, eps=eps)
        b = views.tradeoff_table(table, attack=attack, eps=eps)
        pd.testing.assert_frame_equal(a, b)
        assert a.attrs == b.attrs
        _transfer_traces_kept(
            tradeoff(both, attack=attack, eps=eps), tradeoff(table, attack=attack, eps=eps)
        )
    keys = ["none", "median:kernel=3", "jpeg:quality=75", "nlm+bilateral+guided"]
    for metric in ("accuracy", "sensitivity", "psnr_mean"):  # the one chart of both models
        a = curves.metric_vs_eps(both, metric=metric, attack="pgd", defence_keys=keys)
        b = curves.metric_vs_eps(table, metric=metric, attack="pgd", defence_keys=keys)
        assert len(a.data) == 2 * len(b.data)  # every setting's adaptive curve added, dashed
        for old, new, ad in zip(b.data, a.data[::2], a.data[1::2], strict=True):
            same = ("name", "x", "y", "hovertext")
            assert [new[k] for k in same] == [old[k] for k in same]
            assert new.line.color == old.line.color and new.line.dash == "solid"
            assert (ad.name, ad.line.color, ad.line.dash) == (old.name, old.line.color, "dash")
            if metric == "accuracy":  # the adaptive copies' numbers: halved + 0.01 when attacked
                want = [old.y[0], *(v / 2 + 0.01 for v in old.y[1:])]
                assert list(ad.y) == pytest.approx(want) and list(ad.x) == list(old.x)
    for key in ("none", "webp_flip:quality=90"):
        _transfer_traces_kept(
            curves.two_panel(both, attack="fgsm", defence_key=key, manifest=manifest),
            curves.two_panel(table, attack="fgsm", defence_key=key, manifest=manifest),
        )
    for family, param in (("nlm", "h"), ("guided", "radius"), ("webp_flip", "quality")):
        _transfer_traces_kept(
            metric_vs_param(
                both, metric="accuracy", attack="fgsm", eps=8, family=family, param=param
            ),
            metric_vs_param(
                table, metric="accuracy", attack="fgsm", eps=8, family=family, param=param
            ),
        )
    classes = manifest["model"]["classes"]
    for key in ("none", "median:kernel=5"):
        a = query.find_row(both, "pgd", 8.0, key)
        b = query.find_row(table, "pgd", 8.0, key)
        _same_figure(
            model.confusion_heatmap(a["confusion"], classes),
            model.confusion_heatmap(b["confusion"], classes),
        )
    assert views.settings_table(both).equals(views.settings_table(table))
    assert views.defence_options(both) == views.defence_options(table)
    assert views.demo_case(both, None, attack="fgsm", eps=8) == views.demo_case(
        table, None, attack="fgsm", eps=8
    )
    for spec in ({"id": "webp_flip", "params": {"quality": 80}}, {"id": "median"}, None):
        assert grid.setting_for(both, spec, attack="fgsm") == grid.setting_for(
            table, spec, attack="fgsm"
        )
    assert grid.live_param_settings(both, family="nlm", param="h", midpoints=True) == (
        grid.live_param_settings(table, family="nlm", param="h", midpoints=True)
    )
