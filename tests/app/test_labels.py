"""app.labels: the metric registry, titles from the engine's registries, display formats."""

from __future__ import annotations

import math

import pytest

from app import labels
from engine.attacks import REGISTRY as ATTACKS
from engine.defences import REGISTRY as DEFENCES
from engine.errors import ParamError
from tests.engine.tables import make_table


def test_metric_registry_covers_the_recap_columns():
    wanted = [
        "accuracy",
        "macro_recall",
        "macro_specificity",
        "fooling_rate",
        "mean_confidence",
        "patient_accuracy",
        "sensitivity",
        "specificity",
        "npv",
        "ppv",
        "fnr",
        "psnr_mean",
        "ssim_mean",
        "pert_linf_mean",
        "pert_l2_mean",
    ]
    assert set(wanted) <= set(labels.METRICS)
    assert next(iter(labels.METRICS)) == "accuracy"
    _label, higher, patient, help_text, unit = labels.METRICS["fnr"]
    assert (higher, patient, unit) == (False, True, "share") and "sick" in help_text
    assert labels.METRICS["fooling_rate"].higher_is_better is False
    assert labels.METRICS["psnr_mean"].unit == "dB"
    assert all(labels.METRICS[m].patient for m in labels.PATIENT_PANEL)
    assert not any(labels.METRICS[m].patient for m in labels.MODEL_PANEL)
    # every registry metric is a column of the results table
    assert set(labels.METRICS) <= set(make_table().columns)


def test_format_metric():
    assert labels.format_metric("accuracy", 0.8189) == "81.9 %"
    assert labels.format_metric("psnr_mean", math.inf) == "∞ dB (identical)"
    assert labels.format_metric("npv", math.nan) == "n/a"
    assert labels.format_metric("pert_linf_mean", 4) == "4.0 levels"


def test_check_metric_names_the_allowed_ones():
    with pytest.raises(ParamError, match=r"Unknown metric 'acc'; known: accuracy, macro_recall"):
        labels.check_metric("acc")


def test_labels_and_titles():
    assert labels.setting_label("none") == "No defence"
    assert labels.setting_label("nlm:h=5,h_color=5") == "NLM h=5, h_color=5"
    assert labels.setting_label("nlm+bilateral+guided") == "NLM → Bilateral → Guided"
    assert labels.family_title("median") == "Median blur"
    assert labels.family_title("nlm+median") == "NLM → Median"


def test_attack_titles_come_from_the_attack_registry():
    for attack_id, info in ATTACKS.items():
        assert labels.attack_title(attack_id) == info.title
    assert labels.attack_title("pgd") == "PGD"
    assert labels.attack_title("cw") == "CW"  # unknown ids upper-cased


def test_family_titles_come_from_the_defence_registry():
    for defence_id, cls in DEFENCES.items():
        assert labels.family_title(defence_id) == cls.TITLE
    assert (
        labels.setting_label("webp_flip:quality=50,flip=false") == "WebP+flip quality=50, flip=off"
    )


def test_format_value_for_display():
    assert [labels.format_value(v) for v in (5, 5.0, 0.5, True, False)] == [
        "5",
        "5",
        "0.5",
        "on",
        "off",
    ]
    assert (
        labels.format_value(0.1 + 0.2) == "0.3"
    )  # six significant digits, not the key's exact form


def test_param_help_reads_the_declaration():
    assert "lightness" in labels.param_help("nlm", "h")
    assert labels.param_help("nlm+median", "median.kernel") == labels.param_help("median", "kernel")
    assert labels.param_help("nlm", "nope") == ""
