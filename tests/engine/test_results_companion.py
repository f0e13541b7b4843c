"""A results folder's adaptive companion sweep (``adaptive/``): merged on read, checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.errors import EngineError
from engine.evaluation import check_stale, load_results
from engine.evaluation.results import companion_dir
from engine.threat import THREAT_TRANSFER, is_adaptive

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "assets" / "results" / "synthetic__tiny"
BUNDLE = ROOT / "assets" / "models" / "synthetic__tiny"

pytestmark = pytest.mark.skipif(
    companion_dir(TINY) is None, reason="the synthetic model ships no adaptive sweep"
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "synthetic__tiny"
    shutil.copytree(TINY, out)
    return out


def _edit(path: Path, **changes) -> None:
    manifest = json.loads(path.read_text())
    for dotted, value in changes.items():
        node = manifest
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    path.write_text(json.dumps(manifest))


def test_the_companion_adds_adaptive_rows_and_its_own_settings(folder):
    import pandas as pd

    main_only, manifest = load_results(folder, companion=False)
    assert "adaptive_sweep" not in manifest
    assert not main_only["threat_model"].map(is_adaptive).any()
    merged, manifest = load_results(folder)
    assert manifest["adaptive_sweep"]["spec"]["name"] == "adaptive"
    extra = pd.read_csv(folder / "adaptive" / "results.csv")
    n_sub = manifest["adaptive_sweep"]["data"]["n_images"]

    added = merged.iloc[len(main_only) :]
    # every adaptive row, on the companion's images
    assert (
        added["threat_model"].map(is_adaptive).sum() >= extra["threat_model"].map(is_adaptive).sum()
    )
    assert (added["n_images"] == n_sub).all()
    # the undefended rows read as the adaptive attack through no defence, same images
    none = added[(added["defence_key"] == "none")]
    assert len(none) and (none["eps"] > 0).all()
    assert none["threat_model"].map(is_adaptive).all()
    # settings only the companion has (bit depth, random resize-and-pad) come with their
    # transfer and clean rows; settings both have keep the main table's transfer rows
    own = set(extra["defence_key"]) - set(main_only["defence_key"])
    assert own == {"bit_depth:bits=5", "resize_pad"}
    for key in own:
        rows = added[added["defence_key"] == key]
        assert (rows["threat_model"] == THREAT_TRANSFER).any() and (rows["eps"] == 0).any()
    shared = added[added["defence_key"].isin(set(main_only["defence_key"]) - {"none"})]
    assert shared["threat_model"].map(is_adaptive).all()


def test_a_companion_of_another_model_is_refused_and_stale(folder):
    _edit(folder / "adaptive" / "manifest.json", model__model_sha256="0" * 64)
    with pytest.raises(EngineError, match="does not accompany"):
        load_results(folder)
    reasons = check_stale(folder, BUNDLE)
    assert any(r.startswith("Adaptive sweep (adaptive/)") for r in reasons), reasons
    assert load_results(folder, companion=False)[0]["threat_model"].notna().all()


def test_a_partial_companion_makes_the_folder_stale(folder):
    assert check_stale(folder, BUNDLE) == []
    _edit(folder / "adaptive" / "manifest.json", status="partial")
    reasons = check_stale(folder, BUNDLE)
    assert len(reasons) == 1 and "partial" in reasons[0] and reasons[0].startswith("Adaptive")
    assert check_stale(folder, BUNDLE, companion=False) == []


def test_an_adaptive_none_row_is_not_doubled_by_the_transfer_one():
    import pandas as pd

    from engine.evaluation.results import _companion_rows
    from engine.threat import adaptive_label

    own, bpda = adaptive_label("exact"), "bpda-identity"
    rows = pd.DataFrame(
        {
            "attack": ["pgd", "pgd", "fgsm", "pgd"],
            "eps": [8.0, 8.0, 8.0, 8.0],
            "defence_key": ["none", "none", "none", "median:kernel=3"],
            "threat_model": [THREAT_TRANSFER, own, THREAT_TRANSFER, adaptive_label(bpda)],
            "accuracy": [0.2, 0.1, 0.3, 0.4],
        }
    )
    main = pd.DataFrame({"defence_key": ["none", "median:kernel=3"]})
    out = _companion_rows(main, rows)
    got = sorted(zip(out["attack"], out["defence_key"], out["accuracy"], strict=True))
    assert got == [("fgsm", "none", 0.3), ("pgd", "median:kernel=3", 0.4), ("pgd", "none", 0.1)]
    assert out["threat_model"].map(is_adaptive).all(), "the fgsm transfer row is read as adaptive"
