"""The tables of a sweep as its journal: values written to CSV read back exactly (no model)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pandas as pd
import pytest

from engine.evaluation import load_spec, per_image_file
from engine.evaluation._table import CELL_COLUMNS, METRIC_COLUMNS, Cell, group_name, write_tables
from engine.evaluation.journal import read_journal
from engine.fileio import to_json

SMOKE = Path(__file__).resolve().parents[2] / "assets" / "specs" / "smoke.toml"

#: Floats a CSV round trip gets wrong when it is not exact.
AWKWARD = [
    0.1 + 0.2,
    1 / 3,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -0.0,
    0.9999999999999999,
    123456789.12345679,
    math.inf,
    -math.inf,
    math.nan,
]


def awkward_journal() -> tuple[dict, dict]:
    """Every cell of the smoke spec with awkward values, and a manifest for them."""
    spec = load_spec(SMOKE)
    manifest = {
        "model": {"id": "synthetic__tiny", "backbone": "tiny"},
        "data": {
            "dataset_id": "synthetic",
            "split": "test",
            # refs that plain pandas would read as numbers or as missing values
            "per_image": {
                "positions": [3, 0, 2],
                "indices": [30, 5, 12],
                "refs": ["007", "None", "NA"],
                "labels": [1, 0, 3],
            },
        },
    }
    journal = {}
    for n, (attack, eps, setting) in enumerate(
        (a, e, d) for a in spec.attacks for e in a.eps for d in spec.defences
    ):
        key = (group_name(attack.id, eps), setting.key)
        if key in journal:
            continue  # the clean cell, shared by both attacks
        pick = [AWKWARD[(n + i) % len(AWKWARD)] for i in range(len(METRIC_COLUMNS) + 8)]
        values = {
            "attack_params": attack.params_at(eps),
            "defence": setting.id,
            "defence_key": setting.key,
            "defence_label": setting.label,  # "None" for no defence: text, not missing
            "defence_params": setting.spec,
            "threat_model": "clean (no attack)" if eps == 0 else "transfer",
            **dict(zip(METRIC_COLUMNS, pick, strict=False)),
            "n_images": 40,
            "recall_per_class": [math.nan, 0.1 + 0.2, math.inf, 1.0],
            "specificity_per_class": pick[:4],
            "confusion": [[10, 0], [n, 2**40]],
            "confusion_binary": None if n % 2 else [[1, 2], [3, 4]],
            **dict(zip(CELL_COLUMNS[-8:], pick[-8:], strict=True)),
        }
        records = {pos: (pos % 4, AWKWARD[pos % 11], AWKWARD[(pos + n) % 11]) for pos in range(40)}
        journal[key] = Cell(values, records)
    return journal, manifest


def test_tables_read_back_bit_for_bit(tmp_path):
    spec = load_spec(SMOKE)
    journal, manifest = awkward_journal()
    assert write_tables(tmp_path, spec, journal, manifest) == 24
    back = read_journal(tmp_path, manifest)
    assert back.keys() == journal.keys()
    subset = manifest["data"]["per_image"]["positions"]
    for key, cell in journal.items():
        for col in CELL_COLUMNS:
            assert to_json(back[key].values[col]) == to_json(cell.values[col]), (key, col)
        want = {p: cell.records[p] for p in sorted(subset)}
        assert to_json(dict(sorted(back[key].records.items()))) == to_json(want), key
    # written again from what was read: the same bytes (the gzip stream included)
    again = tmp_path / "again"
    again.mkdir()
    write_tables(again, spec, back, manifest)
    for name in ("results.csv", "per_image.csv.gz"):
        assert (again / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_tables_read_with_plain_pandas(tmp_path):
    journal, manifest = awkward_journal()
    write_tables(tmp_path, load_spec(SMOKE), journal, manifest)
    table = pd.read_csv(tmp_path / "results.csv")
    per = pd.read_csv(tmp_path / "per_image.csv.gz")
    assert len(table) == 24 and len(per) == 24 * 3
    assert list(per.columns)[:3] == ["image_index", "ref", "true_label"]
    assert (per.correct == (per.pred == per.true_label)).all()
    assert gzip.decompress((tmp_path / "per_image.csv.gz").read_bytes()).startswith(b"image_index,")


def test_a_row_without_its_per_image_records_is_not_finished(tmp_path):
    spec = load_spec(SMOKE)
    journal, manifest = awkward_journal()
    write_tables(tmp_path, spec, journal, manifest)
    per = pd.read_csv(tmp_path / "per_image.csv.gz", dtype=str, keep_default_na=False)
    keep = ~((per.attack == "fgsm") & (per.eps == "4.0") & (per.defence_key == "none"))
    per[keep].head(-1).to_csv(tmp_path / "per_image.csv.gz", index=False)
    back = read_journal(tmp_path, manifest)
    missing = {("fgsm@4", "none"), ("pgd@8", "nlm+bilateral+guided")}
    assert back.keys() == journal.keys() - missing


def test_format_1_per_image_table_is_found(tmp_path):
    assert per_image_file(tmp_path) == tmp_path / "per_image.csv.gz"
    (tmp_path / "per_image.csv").write_text("image_index\n")
    assert per_image_file(tmp_path) == tmp_path / "per_image.csv"
    (tmp_path / "per_image.csv.gz").write_bytes(b"")
    assert per_image_file(tmp_path) == tmp_path / "per_image.csv.gz"


def test_table_without_a_cell_column_is_an_error(tmp_path):
    from engine.errors import EngineError

    journal, manifest = awkward_journal()
    write_tables(tmp_path, load_spec(SMOKE), journal, manifest)
    table = pd.read_csv(tmp_path / "results.csv")
    table.drop(columns=["ssim_mean"]).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(EngineError, match=r"results.csv lacks the column\(s\) ssim_mean"):
        read_journal(tmp_path, manifest)


def test_per_image_table_made_before_threat_models_reads_as_transfer(tmp_path):
    """A per-image table without ``threat_model`` (the shipped format-2 tables): every record
    belongs to the transfer (or clean) cell of its row."""
    spec = load_spec(SMOKE)
    journal, manifest = awkward_journal()
    write_tables(tmp_path, spec, journal, manifest)
    per = pd.read_csv(tmp_path / "per_image.csv.gz", dtype=str, keep_default_na=False)
    assert list(per.columns)[-1] == "threat_model"
    per.drop(columns="threat_model").to_csv(tmp_path / "per_image.csv.gz", index=False)
    back = read_journal(tmp_path, manifest)
    assert back.keys() == journal.keys()
    assert all(back[k].records for k in journal)


def test_an_adaptive_cell_is_its_own_cell_beside_the_transfer_one(tmp_path):
    from engine.evaluation import parse_spec
    from engine.threat import adaptive_label

    spec = parse_spec(SMOKE.read_text() + '[[adaptive]]\nattack = "pgd"\neps = [8]\n')
    journal, manifest = awkward_journal()
    cell = journal[("pgd@8", "median:kernel=3")]
    setting = spec.defence("median")
    values = {
        **cell.values,
        "attack_params": spec.adaptive_for("pgd").params_at(8.0, setting),
        "threat_model": adaptive_label("bpda-identity"),
        "accuracy": 0.125,
    }
    journal[("adaptive/pgd@8", setting.key)] = type(cell)(values, dict(cell.records))
    assert write_tables(tmp_path, spec, journal, manifest) == 25
    back = read_journal(tmp_path, manifest)
    assert back.keys() == journal.keys()
    assert back[("adaptive/pgd@8", setting.key)].values["accuracy"] == 0.125
    assert back[("pgd@8", setting.key)].values["accuracy"] == cell.values["accuracy"]
    table = pd.read_csv(tmp_path / "results.csv")
    assert table["threat_model"].iloc[-1] == adaptive_label("bpda-identity")
