"""app.catalog: which model and results go with a (dataset, backbone) choice."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from pathlib import Path

import pytest

import engine
from app import catalog
from engine.bundle import BundleMeta
from engine.errors import ParamError

SHIPPED = ("chest_xray", "mobilenet_v3_large")
EMPTY_SHA = hashlib.sha256(b"").hexdigest()  # the fake bundles' model.keras is an empty file


# --------------------------------------------------------------------------- the shipped assets


def test_find_shipped_model_and_results():
    e = catalog.find(*SHIPPED)
    assert e.has_model and e.shipped
    assert e.key == "chest_xray__mobilenet_v3_large"
    assert e.model_dir == catalog.ASSETS / "models" / e.key
    assert e.results_dir == catalog.ASSETS / "results" / e.key
    assert e.meta is not None and e.meta.classes == ["NORMAL", "PNEUMONIA"]
    assert e.title == "Pediatric chest X-rays (Kermany) · MobileNetV3 Large"


def test_entries_list_the_shipped_model_first():
    found = catalog.entries()
    keys = [e.key for e in found]
    assert "chest_xray__mobilenet_v3_large" in keys
    assert found[0].shipped
    # shipped entries come before every user-trained one
    flags = [e.shipped for e in found]
    assert flags == sorted(flags, reverse=True)
    assert all(e.has_model for e in catalog.entries(with_model_only=True))


@pytest.mark.parametrize(
    ("dataset_id", "backbone", "match"),
    [
        ("nope", "mobilenet_v3_large", "Unknown dataset 'nope'; known: synthetic, chest_xray"),
        ("chest_xray", "vgg16", "Unknown backbone 'vgg16'; known: mobilenet_v3_large"),
    ],
)
def test_find_unknown_ids(dataset_id, backbone, match):
    with pytest.raises(ParamError, match=match):
        catalog.find(dataset_id, backbone)


def test_train_command_mobilenet_from_scratch():
    cmd = catalog.train_command("ham10000", "mobilenet_v3_large")
    assert cmd == (
        "python -m engine.train --dataset ham10000 --backbone mobilenet_v3_large "
        "--weights none --input-size 160 --epochs 15 --out runs/models/ham10000__mobilenet_v3_large"
    )


def test_train_command_other_backbones():
    args = shlex.split(catalog.train_command("faces", "resnet50"))
    assert args[:3] == ["python", "-m", "engine.train"]
    assert "--weights" not in args  # ImageNet transfer learning: the default weights
    assert args[-2:] == ["--out", "runs/models/faces__resnet50"]
    tiny = shlex.split(catalog.train_command("synthetic", "tiny"))
    assert tiny[tiny.index("--weights") + 1] == "none"
    assert "--input-size" not in tiny


@pytest.mark.parametrize(
    ("dataset_id", "backbone", "match"),
    [("nope", "resnet50", "Unknown dataset 'nope'"), ("faces", "vgg", "Unknown backbone 'vgg'")],
)
def test_train_command_unknown_ids(dataset_id, backbone, match):
    with pytest.raises(ParamError, match=match):
        catalog.train_command(dataset_id, backbone)


def test_recap_command_for_the_shipped_model():
    cmd = catalog.recap_command(catalog.find(*SHIPPED))
    assert shlex.split(cmd) == [
        "python",
        "-m",
        "engine.evaluation",
        "--spec",
        "assets/specs/default.toml",
        "--model",
        "assets/models/chest_xray__mobilenet_v3_large",
        "--out",
        "assets/results/chest_xray__mobilenet_v3_large",
    ]
    adaptive = shlex.split(catalog.recap_command(catalog.find(*SHIPPED), adaptive=True))
    assert adaptive[4] == "assets/specs/adaptive.toml"
    assert adaptive[-1] == "assets/results/chest_xray__mobilenet_v3_large/adaptive"


def test_a_shipped_variant_is_swept_with_the_variants_spec_into_its_own_folder():
    entry = catalog.find(*SHIPPED, "filter_gaussian")
    assert entry is not None and entry.variant == "filter_gaussian"
    args = shlex.split(catalog.recap_command(entry))
    assert args[4] == "assets/specs/variants.toml"
    assert args[-1] == "assets/results/chest_xray__mobilenet_v3_large__filter_gaussian"
    assert catalog.results_status(entry).ok, catalog.results_status(entry).message()


def test_recap_command_needs_a_model():
    entry = catalog.Entry("faces", "resnet50")
    with pytest.raises(ParamError, match=r"No model for Celebrity faces .*: train it first"):
        catalog.recap_command(entry)


def test_results_status_messages():
    assert catalog.ResultsStatus("fresh").ok
    assert not catalog.ResultsStatus("partial", ["x"]).ok
    assert catalog.ResultsStatus("missing").message() == "No precomputed results for this model."
    msg = catalog.ResultsStatus("stale", ["The model differs."]).message()
    assert msg == "These results may not describe the current model: The model differs."
    assert catalog.results_status(catalog.Entry("faces", "resnet50")).state == "missing"


# --------------------------------------------------------------------------- a temporary project


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Empty shipped and user roots for models and results, wired into the catalog."""
    roots = {
        "assets_models": tmp_path / "assets" / "models",
        "runs_models": tmp_path / "runs" / "models",
        "assets_results": tmp_path / "assets" / "results",
        "runs_recap": tmp_path / "runs" / "recap",
    }
    for p in roots.values():
        p.mkdir(parents=True)
    monkeypatch.setattr(
        catalog, "model_roots", lambda: [roots["assets_models"], roots["runs_models"]]
    )
    monkeypatch.setattr(
        catalog, "results_roots", lambda: [roots["assets_results"], roots["runs_recap"]]
    )
    return roots


def _bundle(root: Path, dataset_id: str, backbone: str, *, notes: str = "") -> Path:
    d = root / catalog.key(dataset_id, backbone)
    d.mkdir(parents=True)
    meta = BundleMeta(
        dataset_id=dataset_id,
        classes=["a", "b"],
        positive=["b"],
        input_size=64,
        backbone=backbone,
        weights="none",
        clean_metrics={"accuracy": 0.5, "n_images": 10},
        model_sha256=EMPTY_SHA,
        notes=notes,
    )
    (d / "meta.json").write_text(json.dumps(dataclasses.asdict(meta)))
    (d / "model.keras").write_bytes(b"")
    return d


def _results(root: Path, name: str, *, status: str = "complete", sha: str = EMPTY_SHA) -> Path:
    d = root / name
    d.mkdir(parents=True)
    manifest = {
        "status": status,
        "engine_version": engine.__version__,
        "cells": {"done": 3, "total": 10},
        "model": {"model_sha256": sha},
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    (d / "results.csv").write_text("attack,eps\n")
    return d


def test_user_trained_bundle_is_found(project):
    d = _bundle(project["runs_models"], "synthetic", "tiny")
    e = catalog.find("synthetic", "tiny")
    assert e.has_model and not e.shipped
    assert e.model_dir == d
    assert e.meta is not None and e.meta.classes == ["a", "b"]
    assert e.results_dir is None
    assert [x.key for x in catalog.entries()] == ["synthetic__tiny"]


def test_shipped_bundle_wins_over_a_trained_one(project):
    shipped = _bundle(project["assets_models"], "chest_xray", "resnet50", notes="shipped")
    _bundle(project["runs_models"], "chest_xray", "resnet50", notes="trained")
    e = catalog.find("chest_xray", "resnet50")
    assert e.shipped and e.model_dir == shipped
    assert e.meta is not None and e.meta.notes == "shipped"
    assert len(catalog.entries()) == 1


def test_results_are_looked_for_beside_the_model(project):
    name = catalog.key("synthetic", "tiny")
    _bundle(project["runs_models"], "synthetic", "tiny")
    shipped_results = _results(project["assets_results"], name)
    run_results = _results(project["runs_recap"], name)
    # a user-trained model reads runs/recap first
    assert catalog.find("synthetic", "tiny").results_dir == run_results
    # a shipped model reads assets/results first
    _bundle(project["assets_models"], "chest_xray", "tiny")
    _results(project["runs_recap"], catalog.key("chest_xray", "tiny"))
    shipped_first = _results(project["assets_results"], catalog.key("chest_xray", "tiny"))
    assert catalog.find("chest_xray", "tiny").results_dir == shipped_first
    assert shipped_results != run_results


def test_results_without_a_model_are_listed(project):
    _results(project["assets_results"], catalog.key("ham10000", "resnet50"))
    (e,) = catalog.entries()
    assert e.key == "ham10000__resnet50"
    assert not e.has_model and e.results_dir is not None
    assert catalog.entries(with_model_only=True) == []


def test_damaged_meta_is_skipped(project):
    bad = _bundle(project["assets_models"], "synthetic", "tiny")
    (bad / "meta.json").write_text("{not json")
    assert not catalog.find("synthetic", "tiny").has_model
    # a good user-trained bundle of the same name is used instead
    good = _bundle(project["runs_models"], "synthetic", "tiny")
    e = catalog.find("synthetic", "tiny")
    assert e.model_dir == good and not e.shipped


def test_bundle_without_model_file_is_ignored(project):
    d = _bundle(project["runs_models"], "synthetic", "tiny")
    (d / "model.keras").unlink()
    assert not catalog.find("synthetic", "tiny").has_model


def test_entries_skip_unknown_folder_names(project):
    for name in ("notes", "nope__tiny", "synthetic__vgg", "synthetic_tiny"):
        (project["runs_models"] / name).mkdir()
    assert catalog.entries() == []


def test_results_status_fresh_partial_stale_missing(project):
    _bundle(project["runs_models"], "synthetic", "tiny")
    assert catalog.results_status(catalog.find("synthetic", "tiny")).state == "missing"

    d = _results(project["runs_recap"], "synthetic__tiny")
    status = catalog.results_status(catalog.find("synthetic", "tiny"))
    assert status.state == "fresh" and status.reasons == []

    (d / "manifest.json").write_text(
        json.dumps(
            {
                "status": "partial",
                "engine_version": engine.__version__,
                "cells": {"done": 3, "total": 10},
                "model": {"model_sha256": EMPTY_SHA},
            }
        )
    )
    status = catalog.results_status(catalog.find("synthetic", "tiny"))
    assert status.state == "partial"
    assert status.message().startswith("These results are incomplete: The sweep is partial")
    assert any("3 of 10 cells" in r for r in status.reasons)


def test_results_status_stale_model_and_damaged_manifest(project):
    _bundle(project["runs_models"], "synthetic", "tiny")
    d = _results(project["runs_recap"], "synthetic__tiny", sha="0" * 64)
    status = catalog.results_status(catalog.find("synthetic", "tiny"))
    assert status.state == "stale"
    assert any(r.startswith("The model differs") for r in status.reasons)

    (d / "manifest.json").write_text("{oops")
    status = catalog.results_status(catalog.find("synthetic", "tiny"))
    assert status.state == "stale"
    assert "is damaged" in status.reasons[0]


def test_recap_command_for_a_trained_model_without_results(project):
    _bundle(project["runs_models"], "synthetic", "tiny")
    args = shlex.split(catalog.recap_command(catalog.find("synthetic", "tiny")))
    assert args[args.index("--out") + 1] == "runs/recap/synthetic__tiny"
    # the bundle lies outside the project: its absolute path is used
    assert args[args.index("--model") + 1] == str(project["runs_models"] / "synthetic__tiny")


def test_convergence_of_the_shipped_synthetic_adaptive_sweep():
    import json

    path = catalog.PROJECT_ROOT / "bench" / "results" / "convergence_synthetic__tiny.json"
    found = json.loads(path.read_text())
    conv = catalog.convergence(catalog.find("synthetic", "tiny"))
    assert conv is not None
    assert (conv.steps, conv.steps_more) == (
        found["cells"][0]["steps"],
        found["cells"][0]["steps_more"],
    )
    assert conv.converged == found["converged"] == (conv.largest_change < 1)
    moved = [c for c in found["cells"] if abs(c["change_points"]) >= 1]
    assert len(conv.worst) == len(moved)
    assert all(abs(d) >= 1 for _, _, d in conv.worst)
    assert [abs(d) for _, _, d in conv.worst] == sorted(
        (abs(d) for _, _, d in conv.worst), reverse=True
    )
    if conv.worst:
        assert abs(conv.worst[0][2]) == conv.largest_change


def test_convergence_unmeasured_or_unreadable_is_none(tmp_path, monkeypatch):
    entry = catalog.find("synthetic", "tiny")
    monkeypatch.setattr(catalog, "PROJECT_ROOT", tmp_path)
    assert catalog.convergence(entry) is None
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "convergence_synthetic__tiny.json").write_text("{oops")
    assert catalog.convergence(entry) is None


def test_convergence_measured_on_another_spec_is_not_shown(tmp_path, monkeypatch):
    import json

    entry = catalog.find("synthetic", "tiny")
    shipped = catalog.PROJECT_ROOT / "bench" / "results" / "convergence_synthetic__tiny.json"
    found = json.loads(shipped.read_text())
    (tmp_path / "bench" / "results").mkdir(parents=True)
    path = tmp_path / "bench" / "results" / "convergence_synthetic__tiny.json"
    monkeypatch.setattr(catalog, "PROJECT_ROOT", tmp_path)
    path.write_text(json.dumps(found))
    assert catalog.convergence(entry) is not None
    path.write_text(json.dumps({**found, "spec_sha256": "0" * 64}))
    assert catalog.convergence(entry) is None, "a check of an attack the sweep no longer runs"


def test_a_training_time_defence_variant_is_its_own_entry(project):
    _bundle(project["runs_models"], "chest_xray", "resnet50")
    d = project["runs_models"] / catalog.key("chest_xray", "resnet50", "adversarial_fgsm_rs")
    d.mkdir(parents=True)
    meta = json.loads((project["runs_models"] / "chest_xray__resnet50" / "meta.json").read_text())
    meta["training"] = {"defence": {"short": "fast adversarial training (FGSM-RS), ε 4"}}
    (d / "meta.json").write_text(json.dumps(meta))
    (d / "model.keras").write_bytes(b"")
    keys = [e.key for e in catalog.entries()]
    assert keys == ["chest_xray__resnet50", "chest_xray__resnet50__adversarial_fgsm_rs"]
    e = catalog.find("chest_xray", "resnet50", "adversarial_fgsm_rs")
    assert e.model_dir == d and e.variant == "adversarial_fgsm_rs"
    assert e.title.endswith("· ResNet50 · fast adversarial training (FGSM-RS), ε 4")
    assert catalog.find("chest_xray", "resnet50").variant_title == "standard training"
    assert catalog.split_key("chest_xray__resnet50__x__y") is None
    assert catalog.split_key("nope__resnet50__x") is None
    with pytest.raises(ParamError, match="Unknown model variant"):
        catalog.find("chest_xray", "resnet50", "../etc")
