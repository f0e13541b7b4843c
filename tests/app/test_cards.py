"""Model cards are generated from bundle metadata and carry the data's credit."""

from __future__ import annotations

import numpy as np

from app.cards import main, model_card, read_history
from engine.models import BundleMeta, build_classifier, save_bundle


def _bundle(tmp_path, dataset_id="ham10000", positive=("akiec", "bcc", "mel")):
    classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    cm = np.eye(7, dtype=int).tolist()
    meta = BundleMeta(
        dataset_id=dataset_id,
        classes=classes,
        positive=list(positive),
        input_size=0,
        backbone="tiny",
        weights="none",
        training={"split_sizes": {"train": 10, "val": 2, "test": 7}, "epochs_run": 3},
        data_fingerprints={"test": "abcd"},
        clean_metrics={
            "accuracy": 0.857,
            "n_images": 7,
            "confusion": cm,
            "confusion_binary": [[4, 0], [1, 2]],
            "sensitivity": 2 / 3,
        },
    )
    hist = tmp_path / "h.csv"
    hist.write_text("epoch,loss,val_loss\n0,1.5,1.4\n1,1.0,1.1\n")
    model = build_classifier("tiny", 7, weights="none", input_size=32)
    return save_bundle(model, meta, tmp_path / "b", extra_files={"history.csv": hist})


def test_card_has_metrics_confusion_licence_and_patient_note(tmp_path):
    card = model_card(_bundle(tmp_path))
    assert "Accuracy **85.7 %**" in card
    assert "sensitivity 66.7 %" in card
    assert "| mel | 0 | 0 | 0 | 0 | 1 | 0 | 0 |" in card
    assert "CC BY-NC 4.0" in card and "non-commercial" in card
    assert "Seed 001 counted melanocytic nevi (nv)" in card
    assert "Tschandl" in card


def test_history_and_cli(tmp_path, capsys):
    b = _bundle(tmp_path)
    assert [r["epoch"] for r in read_history(b)] == [0.0, 1.0]
    assert main([str(b)]) == 0
    assert (b / "card.md").read_text().startswith("# Tiny CNN (tests, synthetic set) on ")
    assert main([str(tmp_path / "missing")]) == 2
    assert "meta.json is missing" in capsys.readouterr().err


def test_card_states_the_decision_threshold_and_where_it_was_chosen(tmp_path):
    import json

    from engine.threshold import decide

    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 2, n)
        p1 = np.where(y == 1, rng.uniform(0.6, 1.0, n), rng.uniform(0.3, 0.8, n))
        return np.stack([1 - p1, p1], axis=1), y

    b = _bundle(tmp_path)
    assert "Decision threshold" not in model_card(b)
    d = decide(split(50), split(70), positive=[1])
    meta = json.loads((b / "meta.json").read_text())
    meta["decision"] = json.loads(json.dumps(d.__dict__))
    (b / "meta.json").write_text(json.dumps(meta))
    card = model_card(b)
    assert f"≥ **{d.threshold:.3f}**, chosen on the 50 validation images" in card
    assert f"On the 70 test images: sensitivity **{100 * d.test['sensitivity']:.1f} %**" in card
    meta["decision"] = {"threshold": 0.5}  # damaged: no section rather than a crash
    (b / "meta.json").write_text(json.dumps(meta))
    assert "Decision threshold" not in model_card(b)
