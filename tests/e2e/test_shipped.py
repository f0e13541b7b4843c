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
    own = ["manifest.json", "per_image.csv.gz", "results.csv"]
    assert sorted(p.name for p in results.iterdir() if p.name != "adaptive") == own
    bundle = ROOT / "assets" / "models" / manifest["model"]["id"]
    assert manifest["model"]["model_sha256"] == read_meta(bundle).model_sha256

    from engine.evaluation import check_stale

    assert check_stale(results, bundle) == []


ADAPTIVE = [p / "adaptive" for p in RESULTS if (p / "adaptive" / "manifest.json").is_file()]


def test_the_chest_and_synthetic_models_ship_adaptive_rows():
    assert {"chest_xray__mobilenet_v3_large", "synthetic__tiny"} <= {
        p.parent.name for p in ADAPTIVE
    }


@pytest.mark.parametrize("companion", ADAPTIVE, ids=lambda p: p.parent.name)
def test_shipped_adaptive_sweeps_are_complete_fresh_and_on_a_recorded_subset(companion):
    import pandas as pd

    from engine.evaluation import check_stale, load_results
    from engine.threat import is_adaptive, parse_adaptive

    manifest = json.loads((companion / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["format"] == 2
    assert sorted(p.name for p in companion.iterdir()) == [
        "manifest.json",
        "per_image.csv.gz",
        "results.csv",
    ]
    data = manifest["data"]
    assert data["limit"] >= 200 and len(data["indices"]) == data["n_images"] == data["limit"]
    table = pd.read_csv(companion / "results.csv")
    adaptive = table[table["threat_model"].map(is_adaptive)]
    assert len(adaptive) > 0 and (adaptive["n_images"] == data["n_images"]).all()
    # PGD with at least 10 steps, at every budget the issue names
    pgd = adaptive[adaptive["attack"] == "pgd"]
    assert {1.0, 2.0, 4.0, 8.0, 16.0, 32.0} <= set(pgd["eps"])
    assert all(json.loads(p)["steps"] >= 10 for p in pgd["attack_params"])
    # the randomised defence is attacked with EOT
    eot = {
        parse_adaptive(t).eot
        for t in adaptive.loc[adaptive["defence"] == "resize_pad", "threat_model"]
    }
    assert eot == {8}
    bundle = ROOT / "assets" / "models" / manifest["model"]["id"]
    assert check_stale(companion.parent, bundle) == []
    merged, main = load_results(companion.parent)
    assert main["adaptive_sweep"]["spec"]["name"] == "adaptive"
    # plus the undefended transfer rows, read as adaptive, of the cells not attacked
    # adaptively through "none" (an [[adaptive]] attack of its own attacks it itself)
    none = table[(table["defence_key"] == "none") & (table["eps"] > 0)]
    mine = none[none["threat_model"].map(is_adaptive)]
    own = set(zip(mine["attack"], mine["eps"], strict=True))
    transfer = none[~none["threat_model"].map(is_adaptive)]
    cells = zip(transfer["attack"], transfer["eps"], strict=True)
    read_as = sum(c not in own for c in cells)
    assert merged["threat_model"].map(is_adaptive).sum() == len(adaptive) + read_as


@pytest.mark.slow
@pytest.mark.parametrize("companion", ADAPTIVE, ids=lambda p: p.parent.name)
def test_a_shipped_adaptive_cell_reproduces_exactly(companion):
    """``--only fgsm:4:median:kernel=3 --threat adaptive`` gives the shipped numbers."""
    from engine.errors import DatasetError
    from engine.evaluation import reproduce_cell

    manifest = json.loads((companion / "manifest.json").read_text())
    bundle = ROOT / "assets" / "models" / manifest["model"]["id"]
    try:
        report = reproduce_cell(
            companion, bundle, "pgd", 4, "median:kernel=3", threat="adaptive", limit=64
        )
    except DatasetError as exc:
        pytest.skip(f"the dataset is not on this machine: {exc}")
    assert report["identical"] and report["per_image_checked"] > 0, report


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
