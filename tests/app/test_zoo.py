"""app.zoo: the standard model beside its training-time-defence variants, adaptive attacker."""

from __future__ import annotations

import pandas as pd
import pytest

from app import catalog, zoo
from app.charts.zoo import model_bars

CLEAN = "clean (no attack)"
TRANSFER = "crafted on the undefended model, tested through the defence"
EXACT = "adaptive: crafted through the defence (exact)"
BPDA = "adaptive: crafted through the defence (bpda-identity)"


def _row(key, eps, threat, acc, bal, n=200):
    return {
        "attack": "pgd",
        "eps": float(eps),
        "defence_key": key,
        "threat_model": threat,
        "accuracy": acc,
        "macro_recall": bal,
        "n_images": n,
    }


def _table(alone, jpeg, median, clean=0.9):
    return pd.DataFrame(
        [
            _row("none", 0, CLEAN, clean, clean - 0.05),
            _row("jpeg:quality=75", 0, CLEAN, clean - 0.02, clean - 0.1),
            _row("median:kernel=3", 0, CLEAN, clean - 0.03, clean - 0.08),
            _row("none", 4, TRANSFER, alone, alone),
            _row("jpeg:quality=75", 4, TRANSFER, 0.8, 0.8),
            _row("median:kernel=3", 4, TRANSFER, 0.7, 0.7),
            _row("none", 4, EXACT, alone, alone),
            _row("jpeg:quality=75", 4, BPDA, *jpeg),
            _row("median:kernel=3", 4, BPDA, *median),
        ]
    )


STANDARD = catalog.Entry("chest_xray", "resnet50")
VARIANT = catalog.Entry("chest_xray", "resnet50", variant="adversarial_fgsm_rs")


def test_each_model_alone_and_with_its_best_input_defence_by_balanced_accuracy():
    std = _table(0.0, jpeg=(0.63, 0.50), median=(0.55, 0.52))  # jpeg: accuracy, but no skill
    adv = _table(0.58, jpeg=(0.60, 0.55), median=(0.50, 0.49), clean=0.8)
    t = zoo.comparison([(STANDARD, std), (VARIANT, adv)], attack="pgd", eps=[4])
    assert list(t["kind"]) == ["alone", "best", "alone", "best"]
    best_std = t[(t["variant"] == "") & (t["kind"] == "best")].iloc[0]
    assert best_std["defence_key"] == "median:kernel=3", "chosen by balanced accuracy"
    assert best_std["clean_accuracy"] == 0.9 - 0.03
    alone = t[(t["variant"] != "") & (t["kind"] == "alone")].iloc[0]
    assert alone["balanced"] == 0.58 and alone["threat_model"] == EXACT
    said = zoo.answer(t, 4)
    assert "adversarial fgsm rs model keeps the most: balanced accuracy 58.0%" in said
    assert "The standard model's best keeps 52.0% balanced accuracy (Median" in said
    fig = model_bars(t, attack="pgd", eps=4)
    assert [tr.name for tr in fig.data] == ["model alone", "model + its best input defence"]
    assert list(fig.data[0].x) == pytest.approx([0.0, 58.0])


def test_the_best_input_defence_is_chosen_among_the_settings_every_model_was_swept_with():
    std = _table(0.0, jpeg=(0.63, 0.50), median=(0.55, 0.52))
    extra = _row("webp_flip:quality=90", 4, BPDA, 0.7, 0.7)  # only the standard model has it
    std = pd.concat([std, pd.DataFrame([extra])], ignore_index=True)
    adv = _table(0.58, jpeg=(0.60, 0.55), median=(0.50, 0.49), clean=0.8)
    both = zoo.comparison([(STANDARD, std), (VARIANT, adv)], attack="pgd", eps=[4])
    best = both[(both["variant"] == "") & (both["kind"] == "best")].iloc[0]
    assert best["defence_key"] == "median:kernel=3"
    alone = zoo.comparison([(STANDARD, std)], attack="pgd", eps=[4])
    assert alone[alone["kind"] == "best"].iloc[0]["defence_key"] == "webp_flip:quality=90"
    # a model without adaptive input-defence rows (a sweep still running) constrains nothing
    bare = adv[~adv["threat_model"].isin([BPDA])]
    third = catalog.Entry("chest_xray", "resnet50", variant="filter_gaussian")
    t = zoo.comparison([(STANDARD, std), (third, bare)], attack="pgd", eps=[4])
    assert list(t["kind"]) == ["alone", "best", "alone"]
    assert t.iloc[1]["defence_key"] == "webp_flip:quality=90"


def test_no_skill_is_said_and_one_model_has_nothing_to_compare():
    std = _table(0.0, jpeg=(0.6, 0.5), median=(0.5, 0.5))
    adv = _table(0.5, jpeg=(0.6, 0.52), median=(0.5, 0.5))
    t = zoo.comparison([(STANDARD, std), (VARIANT, adv)], attack="pgd", eps=[4])
    assert "close to no skill" in zoo.answer(t, 4)
    alone = zoo.comparison([(STANDARD, std)], attack="pgd", eps=[4])
    assert zoo.answer(alone, 4) == ""
    assert zoo.comparison([(STANDARD, std)], attack="fgsm", eps=[4]).empty
    assert "No model has adaptive results" in str(
        model_bars(alone.iloc[0:0], attack="pgd", eps=4).layout
    )


def test_siblings_are_the_same_pair_with_results_standard_first(tmp_path):
    d = tmp_path
    entries = [
        catalog.Entry("chest_xray", "resnet50", variant="filter_gaussian", results_dir=d),
        catalog.Entry("chest_xray", "resnet50", results_dir=d),
        catalog.Entry("chest_xray", "resnet50", variant="adversarial_fgsm"),  # no results
        catalog.Entry("ham10000", "resnet50", results_dir=d),
    ]
    got = zoo.siblings(entries[1], entries)
    assert [e.variant for e in got] == ["", "filter_gaussian"]


def test_training_curves_show_robust_accuracy_of_an_adversarial_run():
    from app.charts.model import training_curves

    plain = [{"epoch": 0, "acc": 0.8, "val_acc": 0.9, "loss": 0.4, "val_loss": 0.3}]
    names = [t.name for t in training_curves(plain).data]
    assert names == ["training accuracy", "validation accuracy", "training loss", "validation loss"]
    adv = [dict(plain[0], val_fgsm_acc=0.68, val_pgd_balanced=0.15)]
    adv.append(dict(plain[0], epoch=1, val_fgsm_acc=0.66, val_pgd_balanced=0.02))
    fig = training_curves(adv)
    pgd = next(t for t in fig.data if t.name == "validation balanced accuracy under PGD-10")
    assert list(pgd.y) == [0.15, 0.02]
    assert "under attack on 128 of its images" in fig.layout.title.subtitle.text.replace(
        "<br>", " "
    )


def test_model_curves_start_at_clean_balanced_accuracy_and_draw_the_best_defence_dotted():
    from app.charts.zoo import model_curves

    std = _table(0.0, jpeg=(0.63, 0.50), median=(0.55, 0.52))
    adv = _table(0.58, jpeg=(0.60, 0.55), median=(0.50, 0.49), clean=0.8)
    at4 = zoo.comparison([(STANDARD, std), (VARIANT, adv)], attack="pgd", eps=[4])
    at8 = at4.assign(eps=8.0, balanced=at4["balanced"] / 2)
    fig = model_curves(pd.concat([at4, at8], ignore_index=True), attack="pgd")
    names = [tr.name for tr in fig.data]
    assert names == [
        "standard training",
        "standard training + best input defence",
        "adversarial fgsm rs",
        "adversarial fgsm rs + best input defence",
    ]
    alone = fig.data[2]
    assert list(alone.x) == [0.0, 4.0, 8.0]
    assert list(alone.y) == pytest.approx([75.0, 58.0, 29.0])  # clean balanced 0.8 - 0.05
    assert fig.data[3].line.dash == "dot" and list(fig.data[3].x) == [4.0, 8.0]
    assert "No model has adaptive results" in str(model_curves(at4.iloc[0:0], attack="pgd").layout)


def test_a_distilled_model_that_keeps_the_most_is_said_to_mask_gradients():
    from types import SimpleNamespace

    from engine import hardening

    assert "gradient masking" in hardening.caveat("distill", "defensive")
    assert hardening.caveat("adversarial", "pgd") == "" == hardening.caveat("x", "y")
    meta = SimpleNamespace(training={"defence": {"kind": "distill", "method": "defensive"}})
    distilled = catalog.Entry("chest_xray", "resnet50", meta=meta, variant="distill_defensive")
    std = _table(0.0, jpeg=(0.63, 0.50), median=(0.55, 0.52))
    masked = _table(0.59, jpeg=(0.60, 0.58), median=(0.50, 0.49))
    t = zoo.comparison([(STANDARD, std), (distilled, masked)], attack="pgd", eps=[4])
    said = zoo.answer(t, 4)
    assert "keeps the most" in said and "gradient masking, not robustness" in said
    assert "gradient masking" in model_bars(t, attack="pgd", eps=4).data[0].hovertext[1]
