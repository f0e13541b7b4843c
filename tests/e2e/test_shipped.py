"""The shipped assets: bundles match their metadata, result tables read with pandas alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.models import file_sha256, read_meta

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p for p in (ROOT / "assets" / "models").glob("*") if (p / "meta.json").exists())
RESULTS = sorted(
    p
    for p in (ROOT / "assets" / "results").glob("*")
    if (p / "manifest.json").exists()
    and json.loads((p / "manifest.json").read_text()).get("status") == "complete"
)


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_shipped_bundle_matches_its_metadata_and_has_a_card(bundle):
    meta = read_meta(bundle)
    assert file_sha256(bundle / "model.keras") == meta.model_sha256
    assert (bundle / "model.keras").stat().st_size < 20 * 2**20, "keep shipped files under 20 MB"
    assert (bundle / "card.md").read_text().startswith("# ")
    assert 0.5 < meta.clean_metrics["accuracy"] <= 1.0
    assert set(meta.data_fingerprints) == {"train", "val", "test"}


@pytest.mark.parametrize("results", RESULTS, ids=lambda p: p.name)
def test_shipped_results_read_with_plain_pandas_and_are_fresh(results):
    import pandas as pd

    table = pd.read_csv(results / "results.csv")
    manifest = json.loads((results / "manifest.json").read_text())
    assert len(table) == manifest["rows"] > 0
    assert {"attack", "eps", "defence_key", "threat_model", "accuracy", "fooling_rate"} <= set(
        table.columns
    )
    assert table["accuracy"].between(0, 1).all()
    per_image = pd.read_csv(results / "per_image.csv.gz")
    assert len(per_image) == len(table) * len(manifest["data"]["per_image"]["positions"])
    # stored once: the tables and the manifest, no journal copy of the rows
    assert manifest["format"] == 2
    assert sorted(p.name for p in results.iterdir()) == [
        "manifest.json",
        "per_image.csv.gz",
        "results.csv",
    ]
    bundle = ROOT / "assets" / "models" / manifest["model"]["id"]
    assert manifest["model"]["model_sha256"] == read_meta(bundle).model_sha256

    from engine.evaluation import check_stale

    assert check_stale(results, bundle) == []


@pytest.mark.slow
@pytest.mark.parametrize("results", RESULTS, ids=lambda p: p.name)
def test_a_shipped_cell_reproduces_exactly(results):
    """Re-running a cell on the shipped model gives the shipped numbers (needs the data)."""
    from engine.errors import DatasetError
    from engine.evaluation import reproduce_cell

    manifest = json.loads((results / "manifest.json").read_text())
    bundle = ROOT / "assets" / "models" / manifest["model"]["id"]
    try:
        report = reproduce_cell(results, bundle, "fgsm", 4, "none", limit=64)
    except DatasetError as exc:
        pytest.skip(f"the dataset is not on this machine: {exc}")
    assert report["identical"] and report["per_image_checked"] > 0, report


@pytest.mark.slow
def test_a_whole_shipped_cell_reproduces_exactly():
    """Every metric of a whole attacked, defended cell (the synthetic data is generated)."""
    from engine.evaluation import reproduce_cell

    results = ROOT / "assets" / "results" / "synthetic__tiny"
    bundle = ROOT / "assets" / "models" / "synthetic__tiny"
    report = reproduce_cell(results, bundle, "pgd", 8, "jpeg:quality=75")
    assert report["identical"] and report["n_images"] == 500, report
    assert report["per_image_checked"] == 64 and "accuracy" in report["max_abs_diff"]
