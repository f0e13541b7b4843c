"""Adaptive cells in a sweep: the spec's [[adaptive]] entries, crafted per defence setting,
resumed, extended, reproduced exactly and checked for staleness, on a tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from engine.errors import ParamError
from engine.threat import THREAT_CLEAN, THREAT_TRANSFER, adaptive_label
from tests.engine.test_evaluation import TIMING, bundle, folder_bytes, interrupt_at  # noqa: F401

#: 80 images: two attack batches of 64 and two defence chunks, so a cell reproduced on
#: the first 64 sees the batches the sweep saw.
TRANSFER_SPEC = """\
name = "tiny-adaptive"
seed = 3
limit = 80
per_image = 6

[[attacks]]
id = "fgsm"
eps = [0, 8]

[[attacks]]
id = "pgd"
eps = [0, 4, 8]
steps = 2
step_size = { factor = 2.5, min = 0.5 }

[[defences]]
id = "none"

[[defences]]
id = "median"
params = { kernel = 5 }

[[defences]]
id = "resize_pad"
params = { min_scale = 0.7 }
"""
ADAPTIVE_ENTRIES = """
[[adaptive]]
attack = "pgd"
eps = [8]
eot_samples = 3

[[adaptive]]
attack = "fgsm"
defences = ["median:kernel=5"]
"""
#: (group, defence key) of every adaptive cell of the spec above ("none" is the transfer cell).
ADAPTIVE_CELLS = {
    ("adaptive/pgd@8", "median:kernel=5"),
    ("adaptive/pgd@8", "resize_pad:min_scale=0.7"),
    ("adaptive/fgsm@8", "median:kernel=5"),
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> tuple[Path, Path]:
    """The transfer-only spec and the same spec with the adaptive entries."""
    folder = tmp_path_factory.mktemp("specs")
    return (
        write(folder, "transfer.toml", TRANSFER_SPEC),
        write(folder, "adaptive.toml", TRANSFER_SPEC + ADAPTIVE_ENTRIES),
    )


@pytest.fixture(scope="module")
def extended(bundle, specs, tmp_path_factory):  # noqa: F811
    """A transfer sweep, then extended with the adaptive entries (progress shown, so the
    defences run in chunks); every call of run_attack of the extension kept."""
    import engine.attacks
    from engine.evaluation import run_sweep

    transfer, adaptive = specs
    out = tmp_path_factory.mktemp("recap") / "tiny"
    run_sweep(transfer, bundle, out)
    before = pd.read_csv(out / "results.csv")
    calls: list[dict] = []
    real = engine.attacks.run_attack

    def counting(attack_id, model, images, labels, params=None, **kw):
        calls.append({"attack": attack_id, "eps": params["eps"], **kw})
        return real(attack_id, model, images, labels, params, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine.attacks, "run_attack", counting)
        run_sweep(adaptive, bundle, out, stage_progress=lambda *a: None)
    return out, before, calls


# --------------------------------------------------------------------------- the spec


def test_adaptive_entries_parse_with_defaults(specs):
    from engine.evaluation import load_spec
    from engine.evaluation.threats import cell_seed

    spec = load_spec(specs[1])
    pgd, fgsm = spec.adaptive
    assert (pgd.id, pgd.eps, fgsm.eps) == ("pgd", (8.0,), (8.0,))
    assert pgd.defences == ("median:kernel=5", "resize_pad:min_scale=0.7"), "none is transfer"
    assert fgsm.defences == ("median:kernel=5",)
    assert (pgd.options.eot_samples, pgd.options.restarts, pgd.options.eot_seed) == (3, 1, 3)
    params = pgd.params_at(8.0, spec.defence("resize_pad"))
    assert params == {
        **spec.attack("pgd").params_at(8.0),
        "eot_samples": 3,
        "restarts": 1,
        "eot_seed": cell_seed(3, "pgd", 8.0, "resize_pad:min_scale=0.7"),
    }
    seeds = {cell_seed(3, "pgd", e, k) for e in (4.0, 8.0) for k in ("a", "b")}
    assert len(seeds) == 4 and cell_seed(3, "pgd", 8.0, "a") == cell_seed(3, "pgd", 8, "a")
    assert load_spec(specs[0]).adaptive == ()


def test_restarts_keep_the_no_defence_cell():
    from engine.evaluation import parse_spec

    text = TRANSFER_SPEC + '[[adaptive]]\nattack = "pgd"\nrestarts = 2\n'
    (entry,) = parse_spec(text).adaptive
    assert entry.defences[0] == "none" and entry.eps == (4.0, 8.0)


def test_adaptive_params_give_the_cells_an_attack_of_their_own():
    from engine.evaluation import parse_spec

    text = TRANSFER_SPEC + ENTRY + "params = { steps = 8, early_stop = true }\n"
    spec = parse_spec(text)
    (entry,) = spec.adaptive
    assert entry.defences[0] == "none", "another attack than the transfer one: none is attacked"
    cell = entry.params_at(8.0, spec.defence("median"))
    assert (cell["steps"], cell["early_stop"]) == (8, True)
    assert cell["step_size"] == pytest.approx(2.5 * 8 / 8), "the step rule, with the new steps"
    transfer = spec.attack("pgd").params_at(8.0)
    assert (transfer["steps"], transfer["early_stop"]) == (2, False)
    assert entry.record()["params"] == {"steps": 8, "early_stop": True}
    rule = parse_spec(text.replace("steps = 8,", "steps = 8, step_size = { factor = 4 },"))
    assert rule.adaptive[0].params_at(8.0, spec.defence("median"))["step_size"] == 4.0


ENTRY = '[[adaptive]]\nattack = "pgd"\n'
ADAPTIVE_ERRORS = [
    ('[[adaptive]]\nattack = "cw"\n', r"adaptive\[0\]: 'attack' must name an \[\[attacks\]\]"),
    (ENTRY + "eps = [2]\n", r"adaptive\[0\] \(pgd\): 'eps' must be among the spec's \(4, 8\)"),
    (ENTRY + "eps = [0]\n", r"'eps' must be among the spec's \(4, 8\); got 0"),
    (ENTRY + 'defences = ["jpeg"]\n', r"'defences' must be among the spec's \(none, median"),
    (ENTRY + "defences = []\n", r"'defences' must be a non-empty list; got \[\]"),
    (ENTRY + "eot_samples = 0\n", r"'eot_samples' must be an integer in \[1, 1000\]; got 0"),
    (
        '[[adaptive]]\nattack = "fgsm"\nrestarts = 2\n',
        r"adaptive\[0\] \(fgsm\): 'restarts' > 1 needs an attack with a random start",
    ),
    (ENTRY + "steps = 3\n", r"adaptive\[0\]: unknown key\(s\) steps"),
    (ENTRY + "params = {}\n", r"adaptive\[0\] \(pgd\): 'params' must be a non-empty table"),
    (ENTRY + "params = { eps = [2] }\n", r"'params' cannot set eps"),
    (ENTRY + "params = { kappa = 1 }\n", r"adaptive\[0\] \(pgd\) params \(pgd\).*kappa"),
    (ENTRY + "params = { steps = 0 }\n", r"adaptive\[0\] \(pgd\) params \(pgd\).*'steps'"),
    (ENTRY + ENTRY, r"adaptive\[1\] \(pgd\): attack listed twice"),
    ("adaptive = 3\n", r"\[\[adaptive\]\] must be a list of tables"),
]


@pytest.mark.parametrize("extra,pattern", ADAPTIVE_ERRORS)
def test_adaptive_spec_errors_name_the_entry(extra, pattern):
    from engine.evaluation import parse_spec

    text = extra + TRANSFER_SPEC if extra.startswith("adaptive =") else TRANSFER_SPEC + extra
    with pytest.raises(ParamError, match=pattern):
        parse_spec(text, source="x.toml")


def test_shipped_adaptive_spec_is_the_issues_grid():
    from engine.evaluation import load_spec
    from engine.evaluation.keys import family

    root = Path(__file__).resolve().parents[2] / "assets" / "specs"
    spec = load_spec(root / "adaptive.toml")
    default = load_spec(root / "default.toml")
    assert spec.limit is not None and spec.limit >= 200
    pgd = spec.adaptive_for("pgd")
    assert pgd.eps == (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    assert pgd.attack.params_at(8.0)["steps"] >= 10 and pgd.options.eot_samples > 1
    families = {family(k) for k in pgd.defences}
    from engine.defences import REGISTRY

    assert families - {"none"} == (set(REGISTRY) - {"none"}) | {"nlm+bilateral+guided"}
    shipped = {d.key for d in default.defences}
    for fam in {family(d.key) for d in default.defences} - {"none"}:
        assert any(k in shipped and family(k) == fam for k in pgd.defences), fam
    assert {a.id: a.eps for a in spec.attacks} == {a.id: a.eps for a in default.attacks}


# --------------------------------------------------------------------------- the sweep


def test_extension_computes_only_the_adaptive_cells_each_through_its_setting(extended, specs):
    from engine.evaluation import load_spec

    out, _, calls = extended
    spec = load_spec(specs[1])
    assert sorted((c["attack"], c["eps"], c["defence"].ID) for c in calls) == [
        ("fgsm", 8.0, "median"),
        ("pgd", 8.0, "median"),
        ("pgd", 8.0, "resize_pad"),
    ], "one attack per adaptive cell, none for the finished transfer cells"
    for c in calls:
        key = next(d.key for d in spec.defences if d.id == c["defence"].ID)
        assert c["defence"] == spec.defence(key).defence
    by_defence = {c["defence"].ID: c for c in calls if c["attack"] == "pgd"}
    assert by_defence["resize_pad"]["eot_samples"] == 3
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and [r["cells_computed"] for r in m["runs"]] == [12, 3]
    assert m["seeds"]["adaptive"] == {"pgd": 3, "fgsm": 3}
    labels = {e["attack"]: e["labels"] for e in m["threat_models"]["adaptive"]}
    assert labels["pgd"]["resize_pad:min_scale=0.7"] == adaptive_label("exact", 3)
    assert m["data"]["n_images"] == 80 and len(m["data"]["indices"]) == 80


def test_transfer_rows_keep_their_keys_and_numbers(extended):
    out, before, _ = extended
    after = pd.read_csv(out / "results.csv")
    transfer = after[~after["threat_model"].str.startswith("adaptive")]
    pd.testing.assert_frame_equal(
        transfer.reset_index(drop=True).drop(columns=TIMING), before.drop(columns=TIMING)
    )
    assert set(transfer["threat_model"]) == {THREAT_CLEAN, THREAT_TRANSFER}


def test_adaptive_rows_name_their_threat_model_and_seed(extended):
    from engine.evaluation import load_results
    from engine.evaluation.threats import cell_seed

    out, _, _ = extended
    table, _ = load_results(out)
    adaptive = table[table["threat_model"].str.startswith("adaptive")]
    assert len(adaptive) == 3 and (adaptive["n_images"] == 80).all()
    got = {(r.attack, r.defence_key): r.threat_model for r in adaptive.itertuples()}
    assert got == {
        ("pgd", "median:kernel=5"): adaptive_label("bpda-identity"),
        ("pgd", "resize_pad:min_scale=0.7"): adaptive_label("exact", 3),
        ("fgsm", "median:kernel=5"): adaptive_label("bpda-identity"),
    }
    for r in adaptive.itertuples():
        assert r.attack_params["eot_seed"] == cell_seed(3, r.attack, 8.0, r.defence_key)
        assert r.attack_params["eot_samples"] == (3 if "resize_pad" in r.defence_key else 1)
        assert r.pert_linf_max <= 8 and r.attack_seconds > 0
    per_image = pd.read_csv(out / "per_image.csv.gz")
    assert len(per_image) == len(table) * 6
    assert (per_image["threat_model"].str.startswith("adaptive")).sum() == 3 * 6


def test_adaptive_attack_is_at_least_as_strong_through_a_filter(extended):
    from engine.evaluation import load_results, query

    table, _ = load_results(extended[0])
    for attack in ("fgsm", "pgd"):
        transfer = query.find_row(table, attack, 8.0, "median:kernel=5")
        adaptive = query.find_row(table, attack, 8.0, "median:kernel=5", threat="adaptive")
        assert transfer is not None and adaptive is not None
        assert adaptive["accuracy"] <= transfer["accuracy"], attack
        assert adaptive["threat_model"] != transfer["threat_model"]


def test_the_same_spec_in_one_run_gives_the_same_table(extended, bundle, specs, tmp_path):  # noqa: F811
    """Extending a transfer sweep, or running the whole spec at once, interrupted in an
    adaptive cell and resumed: the same numbers."""
    import engine.evaluation.sweep as sweep_module
    from engine.evaluation import run_sweep

    out = tmp_path / "whole"
    real = sweep_module.evaluate_cell
    with pytest.MonkeyPatch.context() as mp:
        interrupt_at(mp, 14)  # 12 transfer cells, then the first adaptive one finishes
        with pytest.raises(KeyboardInterrupt):
            run_sweep(specs[1], bundle, out)
    assert sweep_module.evaluate_cell is real
    cells = [json.loads(p.read_text())["group"] for p in (out / "cells").glob("*.json")]
    assert sorted(cells).count("adaptive/pgd@8") == 1 and len(cells) == 13
    run_sweep(specs[1], bundle, out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["runs"][-1]["cells_computed"] == 2
    for name in ("results.csv",):
        pd.testing.assert_frame_equal(
            pd.read_csv(out / name).drop(columns=TIMING),
            pd.read_csv(extended[0] / name).drop(columns=TIMING),
        )
    assert (out / "per_image.csv.gz").read_bytes() == (
        extended[0] / "per_image.csv.gz"
    ).read_bytes()


@pytest.mark.parametrize(
    "cell,limit",
    [
        (("pgd", 8, "resize_pad:min_scale=0.7"), None),
        (("pgd", 8, "median:kernel=5"), 10),
        (("fgsm", 8, "median"), None),
    ],
)
def test_an_adaptive_cell_reproduces_exactly(extended, bundle, cell, limit):  # noqa: F811
    from engine.evaluation import reproduce_cell

    res = reproduce_cell(extended[0], bundle, *cell, limit=limit, threat="adaptive")
    assert res["identical"], res
    assert res["threat"] == "adaptive" and res["n_images"] == (limit or 80)
    assert ("accuracy" in res["max_abs_diff"]) == (limit is None)


def test_reproducing_a_cell_the_sweep_did_not_craft_adaptively_is_refused(extended, bundle):  # noqa: F811
    from engine.evaluation import reproduce_cell

    with pytest.raises(ParamError, match=r"no adaptive cell pgd:8:none; .* through median"):
        reproduce_cell(extended[0], bundle, "pgd", 8, "none", threat="adaptive")
    with pytest.raises(ParamError, match=r"no adaptive cell pgd:4:median"):
        reproduce_cell(extended[0], bundle, "pgd", 4, "median", threat="adaptive")
    with pytest.raises(ParamError, match=r"transfer and adaptive cells only"):
        reproduce_cell(extended[0], bundle, "pgd", 8, "median", threat="black_box")


def test_cli_only_reproduces_an_adaptive_cell(extended, bundle, capsys):  # noqa: F811
    from engine.evaluation.__main__ import main

    base = ["--model", str(bundle), "--out", str(extended[0])]
    assert main([*base, "--only", "fgsm:8:median", "--threat", "adaptive"]) == 0
    out = capsys.readouterr().out
    assert "(adaptive)" in out and out.rstrip().endswith("identical")
    assert main([*base, "--check"]) == 0


def test_changed_adaptive_settings_are_stale_and_refused(extended, bundle, specs, tmp_path):  # noqa: F811
    from engine.evaluation import SweepIdentityError, check_stale, run_sweep

    out = tmp_path / "copy"
    shutil.copytree(extended[0], out)
    spec = specs[1]
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["spec"]["path"] = str(spec)
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert check_stale(out, bundle) == []
    original = spec.read_text()
    try:
        spec.write_text(original.replace("eot_samples = 3", "eot_samples = 4"))
        reasons = check_stale(out, bundle)
        assert len(reasons) == 1 and "settings that differ: adaptive" in reasons[0]
        files = folder_bytes(out)
        with pytest.raises(SweepIdentityError, match=r"changes the parameters of 1 finished"):
            run_sweep(spec, bundle, out)
        assert folder_bytes(out) == files
    finally:
        spec.write_text(original)
    with pytest.raises(SweepIdentityError, match=r"does not list 3 finished cell"):
        run_sweep(specs[0], bundle, out)


def test_for_threat_reads_one_row_per_cell(extended):
    from engine.evaluation import load_results, query

    table, _ = load_results(extended[0])
    assert query.threats(table) == ["transfer", "adaptive"]
    transfer = query.for_threat(table)
    assert len(transfer) == len(table) - 3
    assert not transfer.duplicated(["attack", "eps", "defence_key"]).any()
    adaptive = query.for_threat(table, "adaptive")
    assert not adaptive.duplicated(["attack", "eps", "defence_key"]).any()
    at8 = adaptive[(adaptive["attack"] == "pgd") & (adaptive["eps"] == 8)]
    assert dict(zip(at8["defence_key"], at8["threat_model"], strict=True)) == {
        "none": THREAT_TRANSFER,  # through no defence the adaptive attack is the transfer one
        "median:kernel=5": adaptive_label("bpda-identity"),
        "resize_pad:min_scale=0.7": adaptive_label("exact", 3),
    }
    assert query.eps_values(table, "pgd", "median:kernel=5", threat="adaptive") == [0.0, 8.0]
    assert query.eps_values(table, "pgd", "median:kernel=5") == [0.0, 4.0, 8.0]
    row, note = query.nearest_setting(
        table, attack="pgd", eps=6, defence_family="median", threat="adaptive"
    )
    assert (row["eps"], note) == (8.0, "ε 6 is not precomputed; showing ε 8 (nearest)")
    assert row["threat_model"] == adaptive_label("bpda-identity")
    with pytest.raises(ParamError, match=r"Unknown threat model 'clean'; use one of: transfer"):
        query.for_threat(table, "clean")


def test_an_adaptive_attack_of_its_own_attacks_none_too(bundle, tmp_path):  # noqa: F811
    """``params`` in [[adaptive]]: early-stopping PGD with more steps for the adaptive
    cells, plain PGD for the transfer ones; "none" gets an adaptive row of its own, which
    load_results keeps instead of the transfer one, and which reproduces exactly."""
    from engine.evaluation import load_results, query, reproduce_cell, run_sweep

    text = TRANSFER_SPEC.replace("limit = 80", "limit = 64") + (
        '[[adaptive]]\nattack = "pgd"\neps = [8]\ndefences = ["none", "median:kernel=5"]\n'
        "params = { steps = 4, early_stop = true, step_decay = 1 }\n"
    )
    out = tmp_path / "own"
    run_sweep(write(tmp_path, "own.toml", text), bundle, out)
    table, _ = load_results(out)
    for key in ("none", "median:kernel=5"):
        transfer = query.find_row(table, "pgd", 8.0, key)
        adaptive = query.find_row(table, "pgd", 8.0, key, threat="adaptive")
        assert transfer is not None and adaptive is not None
        assert adaptive["threat_model"] != transfer["threat_model"], key
        assert (transfer["attack_params"]["steps"], transfer["attack_params"]["early_stop"]) == (
            2,
            False,
        )
        assert adaptive["attack_params"]["steps"] == 4 and adaptive["attack_params"]["early_stop"]
        assert adaptive["accuracy"] <= transfer["accuracy"], key
    none = table[
        (table["defence_key"] == "none") & (table["eps"] == 8) & (table["attack"] == "pgd")
    ]
    assert len(none) == 2, "one transfer and one adaptive row"
    res = reproduce_cell(out, bundle, "pgd", 8, "none", threat="adaptive")
    assert res["identical"], res


def test_a_gaussian_stand_in_from_the_spec(bundle, tmp_path):  # noqa: F811
    """``stand_in`` in [[adaptive]]: the BPDA members' backward pass is a Gaussian's; the
    rows say so, and the cell reproduces exactly. The identity adds nothing to a row."""
    from engine.evaluation import load_results, parse_spec, reproduce_cell, run_sweep
    from engine.evaluation.threats import cell_seed

    entry = '[[adaptive]]\nattack = "fgsm"\ndefences = ["median:kernel=5"]\n'
    plain = parse_spec(TRANSFER_SPEC + entry).adaptive[0]
    plain_setting = parse_spec(TRANSFER_SPEC).defence("median")
    assert "stand_in" not in plain.params_at(8.0, plain_setting)
    assert "stand_in" not in plain.record()
    text = (
        TRANSFER_SPEC.replace("limit = 80", "limit = 64")
        + entry
        + ('stand_in = "gaussian"\nstand_in_sigma = 1.5\n')
    )
    spec = parse_spec(text)
    (gauss,) = spec.adaptive
    cell = gauss.params_at(8.0, plain_setting)
    assert (cell["stand_in"], cell["stand_in_sigma"]) == ("gaussian", 1.5)
    assert cell["eot_seed"] == cell_seed(3, "fgsm", 8.0, "median:kernel=5")
    assert gauss.record()["stand_in"] == "gaussian"
    label = adaptive_label("bpda-gaussian σ1.5")
    assert gauss.label(plain_setting.defence) == label
    out = tmp_path / "gauss"
    run_sweep(write(tmp_path, "gauss.toml", text), bundle, out)
    table, _ = load_results(out)
    row = table[table["threat_model"] == label]
    assert len(row) == 1 and row.iloc[0]["attack_params"]["stand_in"] == "gaussian"
    res = reproduce_cell(out, bundle, "fgsm", 8, "median:kernel=5", threat="adaptive")
    assert res["identical"], res
    with pytest.raises(ParamError, match=r"adaptive\[0\].*'stand_in' must be one of"):
        parse_spec(TRANSFER_SPEC + entry + 'stand_in = "jpeg"\n')
