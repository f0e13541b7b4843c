"""The recap pipeline on a tiny model: rows, provenance, resume, staleness, reproduction."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.errors import ParamError

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "assets" / "specs" / "smoke.toml"
DEFAULT = ROOT / "assets" / "specs" / "default.toml"
SIZE = 32


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A tiny CNN trained for a few seconds on 32x32 synthetic shapes, saved as a bundle."""
    import keras

    from engine import datasets as ds
    from engine.models import BundleMeta, build_classifier, save_bundle

    splits = ds.load_splits("synthetic", seed=0)
    x, y = ds.load_arrays(splits["train"], SIZE, limit=320)
    keras.utils.set_random_seed(0)
    model = build_classifier("tiny", 4, weights="none", input_size=SIZE)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), y, epochs=4, batch_size=32, verbose=0)
    meta = BundleMeta(
        dataset_id="synthetic",
        classes=list(splits["train"].classes),
        positive=["star"],
        input_size=SIZE,
        backbone="tiny",
        weights="none",
        training={"seed": 0},
        data_fingerprints={k: v.fingerprint for k, v in splits.items()},
    )
    return save_bundle(model, meta, tmp_path_factory.mktemp("models") / "synthetic__tiny")


@pytest.fixture(scope="module")
def journalled(bundle, tmp_path_factory) -> tuple[Path, list[tuple[str, float]], list[dict]]:
    """The smoke spec run once, with every call of run_attack and every journal record
    (the JSON of each cell file, before the finished sweep removed them) kept."""
    import engine.attacks
    import engine.evaluation.sweep as sweep_module
    from engine.evaluation import run_sweep

    calls: list[tuple[str, float]] = []
    records: list[dict] = []
    real = engine.attacks.run_attack
    real_write = sweep_module.write_cell

    def counting(attack_id, model, images, labels, params=None, **kw):
        calls.append((attack_id, float(params["eps"])))
        return real(attack_id, model, images, labels, params, **kw)

    def keeping(out_dir, record):
        records.append(json.loads(json.dumps(record)))
        return real_write(out_dir, record)

    out = tmp_path_factory.mktemp("recap") / "smoke"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine.attacks, "run_attack", counting)
        mp.setattr(sweep_module, "write_cell", keeping)
        run_sweep(SMOKE, bundle, out)
    return out, calls, records


@pytest.fixture(scope="module")
def sweep(journalled) -> tuple[Path, list[tuple[str, float]]]:
    """The smoke sweep's folder and the calls of run_attack."""
    return journalled[0], journalled[1]


def folder_bytes(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (relative path -> bytes)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def journal_of(out: Path) -> dict:
    """The finished cells of ``out`` (:func:`engine.evaluation.journal.read_journal`)."""
    from engine.evaluation.journal import read_journal

    return read_journal(out, json.loads((out / "manifest.json").read_text()))


def assert_cells_kept(out: Path, records: list[dict] | dict) -> None:
    """Each journal record (or cell) is a finished cell of ``out`` with exactly its numbers
    (JSON text equal: floats bit for bit, NaN and inf included; timings too, so not
    recomputed)."""
    from engine.evaluation._table import CELL_COLUMNS, Cell
    from engine.fileio import to_json

    if isinstance(records, list):
        records = {(r["group"], r["defence_key"]): Cell.from_record(r) for r in records}
    journal = journal_of(out)
    for key, want in records.items():
        got = journal[key]
        for col in CELL_COLUMNS:
            assert to_json(got.values[col]) == to_json(want.values[col]), (key, col)
        assert got.records and got.records == {p: want.records[p] for p in got.records}


def interrupt_at(monkeypatch, n: int) -> None:
    """Ctrl-C in the sweep's ``n``-th cell (the earlier ones finish)."""
    import engine.evaluation.sweep as sweep_module

    real, calls = sweep_module.evaluate_cell, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "evaluate_cell", interrupted)


def smoke_variant(tmp_path: Path, name: str, *edits: tuple[str, str]) -> Path:
    """The smoke spec with text replaced, written to ``tmp_path/name``."""
    text = SMOKE.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return path


#: The smoke grid less PGD at eps 8 and the JPEG setting: 12 of its 20 cells.
SMALLER = (
    ("eps = [0, 4, 8]\nsteps = 2", "eps = [0, 4]\nsteps = 2"),
    ('[[defences]]\nid = "jpeg"\nparams = { quality = 75 }\n\n', ""),
)
TIMING = ["seconds", "attack_seconds"]


# --------------------------------------------------------------------------- rows and values


def test_rows_cover_the_grid_and_attack_once_per_budget(sweep):
    from engine.evaluation import COLUMNS, THREAT_CLEAN, THREAT_TRANSFER, load_spec

    out, calls = sweep
    spec = load_spec(SMOKE)
    table = pd.read_csv(out / "results.csv")
    n_rows = sum(len(a.eps) for a in spec.attacks) * len(spec.defences)
    assert len(table) == n_rows == 24
    assert list(table.columns) == list(COLUMNS)
    assert not table.duplicated(["attack", "eps", "defence_key"]).any()
    # eps 0 is never attacked; each (attack, eps > 0) exactly once
    assert sorted(calls) == [("fgsm", 4.0), ("fgsm", 8.0), ("pgd", 4.0), ("pgd", 8.0)]
    clean = table[table.eps == 0]
    assert (clean.threat_model == THREAT_CLEAN).all()
    assert (table[table.eps > 0].threat_model == THREAT_TRANSFER).all()
    # the clean rows of both attacks are the same numbers (computed once)
    metrics = ["accuracy", "macro_recall", "fooling_rate", "ssim_mean"]
    by_attack = [g.set_index("defence_key")[metrics] for _, g in clean.groupby("attack")]
    pd.testing.assert_frame_equal(by_attack[0], by_attack[1])


def test_values_are_in_range(sweep):
    out, _ = sweep
    t = pd.read_csv(out / "results.csv")
    for col in ("accuracy", "macro_recall", "macro_specificity", "fooling_rate", "sensitivity"):
        assert t[col].dropna().between(0, 1).all(), col
    assert (t.n_images == 40).all()
    assert (t.pert_linf_max <= t.eps).all() and (t.pert_linf_mean <= t.pert_linf_max).all()
    assert (t[t.eps == 0].pert_l2_max == 0).all()
    assert (t[t.eps > 0].pert_linf_max == t[t.eps > 0].eps).all()
    assert t.ssim_mean.between(-1, 1).all() and (t.psnr_mean > 0).all()
    assert (t.seconds >= 0).all() and (t[t.eps == 0].attack_seconds == 0).all()
    for cm_text, cm2_text, n in zip(t.confusion, t.confusion_binary, t.n_images, strict=True):
        cm, cm2 = np.array(json.loads(cm_text)), np.array(json.loads(cm2_text))
        assert cm.shape == (4, 4) and cm.sum() == n
        assert cm2.shape == (2, 2) and cm2.sum() == n


def test_clean_undefended_row_is_the_models_clean_accuracy(sweep, bundle):
    from engine import datasets as ds
    from engine.gradients import predict
    from engine.models import load_bundle

    out, _ = sweep
    t = pd.read_csv(out / "results.csv")
    manifest = json.loads((out / "manifest.json").read_text())
    split = ds.load_splits("synthetic", seed=0)["test"]
    x, y = ds.load_arrays(split, SIZE, limit=40, seed=0)
    x2, y2 = ds.load_arrays(split, SIZE, indices=manifest["data"]["indices"])
    assert np.array_equal(x, x2) and np.array_equal(y, y2), "recorded indices = limit subset"
    acc = float(np.mean(predict(load_bundle(bundle).model, x).argmax(1) == y))
    row = t[(t.eps == 0) & (t.defence == "none")]
    assert len(row) == 2
    assert (row.accuracy == acc).all()
    assert (row.fooling_rate == 0).all()
    assert (row.psnr_mean == math.inf).all() and (row.ssim_mean == 1).all()


def test_manifest_records_provenance(sweep, bundle):
    import engine
    from engine import datasets as ds
    from engine.models import file_sha256, read_meta

    out, _ = sweep
    m = json.loads((out / "manifest.json").read_text())
    for key in ("engine_version", "git", "spec", "model", "data", "seeds", "started", "ended"):
        assert key in m, key
    assert m["status"] == "complete" and m["cells"] == {"done": 20, "total": 20}
    assert m["format"] == 2
    assert m["identity"]["spec"] == {"seed": 0, "per_image": 8}
    assert m["engine_version"] == engine.__version__
    assert set(m["git"]) == {"commit", "dirty"}
    assert m["spec"]["sha256"] == hashlib.sha256(SMOKE.read_bytes()).hexdigest()
    assert m["spec"]["text"] == SMOKE.read_text()
    meta = read_meta(bundle)
    assert m["model"]["model_sha256"] == meta.model_sha256
    assert m["model"]["file_sha256"] == file_sha256(bundle / "model.keras")
    assert m["model"]["id"] == "synthetic__tiny" and m["model"]["file_matches_meta"]
    fingerprint = ds.load_splits("synthetic", seed=0)["test"].fingerprint
    assert m["data"]["fingerprint"] == fingerprint and m["data"]["split"] == "test"
    assert m["data"]["n_images"] == len(m["data"]["indices"]) == 40
    assert len(m["data"]["per_image"]["refs"]) == 8
    assert m["seeds"]["attacks"] == {"pgd": 0}
    for key in ("platform", "cpu_count", "python", "tensorflow", "keras", "opencv", "numpy"):
        assert key in m["machine"]
    assert m["elapsed_s"] > 0 and len(m["runs"]) == 1


def test_load_results_round_trip_and_per_image(sweep):
    from engine.evaluation import load_results

    out, _ = sweep
    plain = pd.read_csv(out / "results.csv")
    table, manifest = load_results(out)
    assert table.shape == plain.shape and manifest["status"] == "complete"
    row = table[(table.attack == "pgd") & (table.eps == 8) & (table.defence == "jpeg")].iloc[0]
    assert row.attack_params["steps"] == 2 and row.attack_params["step_size"] == 10.0
    assert row.defence_params == {"id": "jpeg", "params": {"quality": 75}}
    assert len(row.recall_per_class) == 4 and np.sum(row.confusion) == 40
    chain = table[table.defence == "nlm+bilateral+guided"].iloc[0]
    assert [m["id"] for m in chain.defence_params] == ["nlm", "bilateral", "guided"]
    per = pd.read_csv(out / "per_image.csv.gz")
    assert len(per) == 24 * 8
    assert set(per.columns) >= {"image_index", "ref", "true_label", "pred", "true_confidence"}
    one = per[(per.attack == "pgd") & (per.eps == 8) & (per.defence_key == "jpeg:quality=75")]
    assert len(one) == 8 and one.confidence.between(0, 1).all()
    assert (one.correct == (one.pred == one.true_label)).all()
    assert (one.true_confidence <= one.confidence + 1e-12).all()


# --------------------------------------------------------------------------- resume and refusal


def test_resume_after_kill_loses_no_finished_cell(sweep, bundle, tmp_path):
    from engine.evaluation.__main__ import main

    out = tmp_path / "killed"
    args = ["--spec", str(SMOKE), "--model", str(bundle), "--out", str(out)]
    # Slow each cell down so that the kill lands mid-sweep.
    code = (
        "import sys, time; import engine.evaluation.sweep as s; f = s.evaluate_cell; "
        "s.evaluate_cell = lambda *a, **k: (time.sleep(0.3), f(*a, **k))[1]; "
        "from engine.evaluation.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((out / "cells").glob("*.json")):
            assert proc.poll() is None, "the sweep ended before any cell was written"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = [json.loads(p.read_bytes()) for p in (out / "cells").glob("*.json")]
    assert 1 <= len(before) < 20, "kill landed before the first or after the last cell"
    assert json.loads((out / "manifest.json").read_text())["status"] == "partial"

    assert main(args) == 0
    assert not (out / "cells").exists(), "a finished sweep keeps no journal"
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["runs"][-1]["cells_computed"] == 20 - len(before)
    # Every cell finished before the kill is in the tables as journalled (its own
    # timings included: reused, not recomputed).
    assert_cells_kept(out, before)
    resumed = pd.read_csv(out / "results.csv")
    assert len(resumed) == 24 and not resumed.duplicated(["attack", "eps", "defence_key"]).any()
    # Same numbers as the uninterrupted run (another process, too).
    reference = pd.read_csv(sweep[0] / "results.csv")
    timing = ["seconds", "attack_seconds"]
    pd.testing.assert_frame_equal(resumed.drop(columns=timing), reference.drop(columns=timing))


def test_ctrl_c_keeps_finished_cells_and_says_how_to_resume(bundle, tmp_path, monkeypatch, capsys):
    from engine.evaluation.__main__ import main

    interrupt_at(monkeypatch, 3)
    out = tmp_path / "interrupted"
    args = ["--spec", str(SMOKE), "--model", str(bundle), "--out", str(out), "--limit", "12"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "run the same command again to continue" in err and "--limit 12" in err
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "partial" and m["cells"]["done"] == 2
    assert len(pd.read_csv(out / "results.csv")) == 4  # 2 clean cells x 2 attacks


def test_rerun_of_a_complete_sweep_computes_nothing(sweep, bundle, tmp_path, monkeypatch):
    import engine.evaluation.sweep as sweep_module
    from engine.evaluation import run_sweep

    out = tmp_path / "again"
    shutil.copytree(sweep[0], out)
    before = (out / "results.csv").read_bytes()

    def no_loading(*args, **kwargs):
        raise AssertionError("a complete sweep must not load the model or the images")

    monkeypatch.setattr(sweep_module, "prepare", no_loading)
    run_sweep(SMOKE, bundle, out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["runs"][-1]["cells_computed"] == 0
    assert (out / "results.csv").read_bytes() == before


def test_changed_spec_is_refused_unless_forced(sweep, bundle, tmp_path, capsys):
    from engine.evaluation import SweepIdentityError, run_sweep
    from engine.evaluation.__main__ import main

    out = tmp_path / "copy"
    shutil.copytree(sweep[0], out)
    spec = tmp_path / "other.toml"
    spec.write_text(
        'name = "tiny"\nlimit = 40\nper_image = 4\n'
        '[[attacks]]\nid = "fgsm"\neps = [0, 4]\n[[defences]]\nid = "none"\n'
    )
    files = folder_bytes(out)
    with pytest.raises(SweepIdentityError, match=r"different sweep: the spec differs"):
        run_sweep(spec, bundle, out)
    assert main(["--spec", str(spec), "--model", str(bundle), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--force" in err and "Traceback" not in err
    assert folder_bytes(out) == files, "a refused run touches nothing"

    run_sweep(spec, bundle, out, force=True)
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 and not (out / "cells").exists()
    assert len(pd.read_csv(out / "per_image.csv.gz")) == 2 * 4
    with pytest.raises(SweepIdentityError, match=r"image subset"):
        run_sweep(spec, bundle, out, limit=20)


# --------------------------------------------------------------------------- results stored once


def test_finished_tables_hold_every_journal_record_exactly(journalled):
    out, _, records = journalled
    assert not (out / "cells").exists(), "a finished sweep ships no journal"
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "per_image.csv.gz",
        "results.csv",
    ]
    assert len(records) == 20 and all(len(r["per_image"]["pred"]) == 40 for r in records)
    assert_cells_kept(out, records)


def test_finished_sweep_is_extended_then_resumed(journalled, bundle, tmp_path, monkeypatch):
    import engine.evaluation.sweep as sweep_module
    from engine.evaluation import run_sweep

    out = tmp_path / "extended"
    run_sweep(smoke_variant(tmp_path, "smaller.toml", *SMALLER), bundle, out)
    assert not (out / "cells").exists() and len(pd.read_csv(out / "results.csv")) == 15
    smaller = journal_of(out)
    assert len(smaller) == 12

    real = sweep_module.evaluate_cell
    interrupt_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(SMOKE, bundle, out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "partial" and m["cells"] == {"done": 15, "total": 20}
    assert len(list((out / "cells").glob("*.json"))) == 3, "the journal holds the new cells"
    monkeypatch.setattr(sweep_module, "evaluate_cell", real)

    run_sweep(SMOKE, bundle, out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and [r["cells_computed"] for r in m["runs"]] == [12, 3, 5]
    assert m["spec"]["text"] == SMOKE.read_text() and not (out / "cells").exists()
    assert_cells_kept(out, smaller)
    reference = journalled[0]
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "results.csv").drop(columns=TIMING),
        pd.read_csv(reference / "results.csv").drop(columns=TIMING),
    )
    assert (out / "per_image.csv.gz").read_bytes() == (reference / "per_image.csv.gz").read_bytes()


def test_spec_that_drops_or_changes_finished_cells_is_refused(sweep, bundle, tmp_path):
    from engine.evaluation import SweepIdentityError, run_sweep

    out = tmp_path / "copy"
    shutil.copytree(sweep[0], out)
    files = folder_bytes(out)
    smaller = smoke_variant(tmp_path, "smaller.toml", *SMALLER)
    with pytest.raises(SweepIdentityError, match=r"the spec does not list 8 finished cell\(s\)"):
        run_sweep(smaller, bundle, out)
    steps = smoke_variant(tmp_path, "steps.toml", ("steps = 2", "steps = 3"))
    with pytest.raises(SweepIdentityError, match=r"changes the parameters of 8 finished cell"):
        run_sweep(steps, bundle, out)
    assert folder_bytes(out) == files


def as_format_1(src: Path, records: list[dict], dst: Path) -> Path:
    """``src`` as engine format 1 wrote it, with ``records`` as the only finished cells:
    every cell also in ``cells/``, an uncompressed ``per_image.csv``, a spec hash in the
    identity."""
    import gzip

    from engine.evaluation import load_spec
    from engine.evaluation._table import Cell, write_tables
    from engine.evaluation.journal import cell_file

    dst.mkdir()
    m = json.loads((src / "manifest.json").read_text())
    journal = {(r["group"], r["defence_key"]): Cell.from_record(r) for r in records}
    m["rows"] = write_tables(dst, load_spec(SMOKE), journal, m)
    (dst / "per_image.csv").write_bytes(gzip.decompress((dst / "per_image.csv.gz").read_bytes()))
    (dst / "per_image.csv.gz").unlink()
    for r in records:
        cell_file(dst, r["group"], r["defence_key"]).parent.mkdir(exist_ok=True)
        cell_file(dst, r["group"], r["defence_key"]).write_text(json.dumps({**r, "format": 1}))
    del m["identity"]["spec"]
    m["identity"]["spec_sha256"] = m["spec"]["sha256"]
    complete = len(records) == m["cells"]["total"]
    m.update(format=1, status="complete" if complete else "partial")
    m["cells"]["done"] = len(records)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def test_format_1_folder_loads_and_is_converted_when_opened(journalled, bundle, tmp_path):
    import engine.evaluation.sweep as sweep_module
    from engine.evaluation import (
        check_stale,
        load_results,
        per_image_file,
        reproduce_cell,
        run_sweep,
    )

    out, _, records = journalled
    old = as_format_1(out, records, tmp_path / "old")
    table, m = load_results(old)
    assert m["format"] == 1 and len(table) == 24
    assert per_image_file(old) == old / "per_image.csv"
    assert len(pd.read_csv(per_image_file(old))) == 24 * 8
    assert check_stale(old, bundle) == []
    res = reproduce_cell(old, bundle, "fgsm", 4, "median", limit=10)
    assert res["identical"] and res["per_image_checked"] == 40, "a cell file has every image"

    def no_loading(*args, **kwargs):
        raise AssertionError("a complete sweep must not load the model or the images")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep_module, "prepare", no_loading)
        run_sweep(SMOKE, bundle, old)
    assert folder_bytes(old).keys() == {"manifest.json", "per_image.csv.gz", "results.csv"}
    for name in ("results.csv", "per_image.csv.gz"):
        assert (old / name).read_bytes() == (out / name).read_bytes(), name
    m = json.loads((old / "manifest.json").read_text())
    assert m["format"] == 2 and m["status"] == "complete" and "spec_sha256" not in m["identity"]
    assert m["runs"][-1]["note"] == "format 1 -> 2: cells/ folded into the tables"
    assert check_stale(old, bundle) == []


def test_interrupted_format_1_sweep_resumes(journalled, bundle, tmp_path):
    from engine.evaluation import run_sweep

    out, _, records = journalled
    part = as_format_1(out, records[:7], tmp_path / "old_partial")
    run_sweep(SMOKE, bundle, part)
    m = json.loads((part / "manifest.json").read_text())
    assert m["status"] == "complete" and m["runs"][-1]["cells_computed"] == 13
    assert not (part / "cells").exists() and not (part / "per_image.csv").exists()
    assert_cells_kept(part, records[:7])
    pd.testing.assert_frame_equal(
        pd.read_csv(part / "results.csv").drop(columns=TIMING),
        pd.read_csv(out / "results.csv").drop(columns=TIMING),
    )


# ------------------------------------------------------------ staleness and reproduction


def test_check_stale(sweep, bundle, tmp_path):
    from engine.evaluation import check_stale

    out = sweep[0]
    assert check_stale(out, bundle) == []
    assert check_stale(out) == []  # the recorded bundle path
    other = tmp_path / "other_model"
    shutil.copytree(bundle, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["model_sha256"] = "0" * 64
    (other / "meta.json").write_text(json.dumps(meta))
    assert any("model differs" in r for r in check_stale(out, other))
    meta["model_sha256"] = json.loads((bundle / "meta.json").read_text())["model_sha256"]
    (other / "meta.json").write_text(json.dumps(meta))
    with (other / "model.keras").open("ab") as f:
        f.write(b"\0")
    assert any("changed after its bundle was saved" in r for r in check_stale(out, other))

    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    m = json.loads((partial / "manifest.json").read_text())
    m.update(status="partial", engine_version="0.0.0")
    (partial / "manifest.json").write_text(json.dumps(m))
    reasons = check_stale(partial, bundle)
    assert any("partial" in r for r in reasons) and any("engine 0.0.0" in r for r in reasons)
    assert check_stale(tmp_path / "nothing") == [
        f"{tmp_path / 'nothing'} holds no sweep results (manifest.json is missing)."
    ]


def test_spec_staleness_compares_settings_not_bytes(sweep, bundle, tmp_path):
    from engine.evaluation import check_stale

    out = tmp_path / "copy"
    shutil.copytree(sweep[0], out)
    spec = tmp_path / "spec.toml"
    m = json.loads((out / "manifest.json").read_text())
    m["spec"]["path"] = str(spec)
    (out / "manifest.json").write_text(json.dumps(m))
    text = SMOKE.read_text()
    for same in (
        "# Run:  python -m engine.evaluation --spec ...\n" + text.replace("= 8\n", "= 8   # x\n"),
        text.replace('name = "smoke"', 'name = "renamed"').replace(
            'description = "', 'description = "New. '
        ),
        text.replace("eps = [0, 4, 8]", "eps = [0.0, 4, 8.0]"),
    ):
        spec.write_text(same)
        assert check_stale(out, bundle) == [], same
    for old, new, what in (
        ("quality = 75", "quality = 80", "defences"),
        ("steps = 2", "steps = 3", "attacks"),
        ("per_image = 8", "per_image = 7", "per_image"),
        ("limit = 40", "limit = 39", "limit"),
    ):
        spec.write_text(text.replace(old, new))
        assert check_stale(out, bundle) == [
            f"The spec file {spec} changed since the sweep ran (settings that differ: {what}); "
            "run the sweep again to bring the results up to date."
        ]
    spec.write_text("name = [")
    assert check_stale(out, bundle)[0].startswith(f"The spec file {spec} no longer parses: ")


@pytest.mark.parametrize(
    ("cell", "limit"),
    [
        (("pgd", 8, "jpeg:quality=75"), None),
        (("fgsm", 4, "median"), 10),
        (("pgd", 4, "nlm+bilateral+guided"), 10),
    ],
)
def test_reproduce_cell_gives_identical_numbers(sweep, bundle, cell, limit):
    from engine.evaluation import reproduce_cell

    res = reproduce_cell(sweep[0], bundle, *cell, limit=limit)
    assert res["identical"], res
    assert res["pred_mismatches"] == 0 and res["n_images"] == (limit or 40)
    compared = set(res["max_abs_diff"])
    assert {"confidence", "true_confidence"} <= compared
    assert ("accuracy" in compared) == (limit is None)


def test_cli_only_reports_identical(sweep, bundle, capsys):
    from engine.evaluation.__main__ import main

    args = ["--model", str(bundle), "--out", str(sweep[0]), "--only", "fgsm:0:none"]
    assert main(args) == 0
    assert "identical" in capsys.readouterr().out
    assert main([*args[:4], "--check"]) == 0
    assert "is up to date" in capsys.readouterr().out
    assert main([*args[:4], "--only", "fgsm:3:none"]) == 2
    assert "was run at eps 0, 4, 8" in capsys.readouterr().err


# --------------------------------------------------------------------------- spec validation

BASE = '[[attacks]]\nid = "fgsm"\neps = [0, 4]\n'
NONE = '[[defences]]\nid = "none"\n'
MEDIAN3 = '[[defences]]\nid = "median"\nparams = { kernel = 3 }\n'
SPEC_ERRORS = [
    ('[[attacks]]\nid = "cw"\neps = [4]\n' + NONE, r"attacks\[0\]: unknown attack 'cw'"),
    (
        BASE + '[[defences]]\nid = "sharpen"\n',
        r"defences\[0\] \(sharpen\): unknown defence 'sharpen'",
    ),
    (
        BASE + '[[defences]]\nid = "median"\ngrid = { kernel = [3, 4] }\n',
        r"median:kernel=4: Median blur: 'kernel' must be an odd integer",
    ),
    (
        '[[attacks]]\nid = "pgd"\neps = [4]\nsteps = 0\n' + NONE,
        r"attacks\[0\] \(pgd\), eps=4: PGD: 'steps' must be an integer in \[1, 1000\]; got 0",
    ),
    (
        '[[attacks]]\nid = "fgsm"\neps = [4]\nsteps = 3\n' + NONE,
        r"FGSM: unknown parameter\(s\) steps",
    ),
    (
        '[[attacks]]\nid = "fgsm"\neps = [4, 300]\n' + NONE,
        r"'eps' values must be numbers in \[0, 255\]; got 300",
    ),
    (BASE + MEDIAN3 + MEDIAN3, r"'median:kernel=3' is listed twice"),
    (
        BASE + '[[chains]]\nmembers = [{ id = "nlm", params = { h = 99 } }]\n',
        r"chains\[0\]: Non-local means: 'h' must be a number in \[1, 30\]; got 99",
    ),
    (BASE + NONE + 'split = "dev"\n', r"unknown key\(s\) split"),
    ('split = "dev"\n' + BASE + NONE, r"'split' must be one of train, val, test"),
    (BASE, r"needs at least one \[\[defences\]\] or \[\[chains\]\] entry"),
    ("name = [", r"not valid TOML"),
]


@pytest.mark.parametrize(("text", "pattern"), SPEC_ERRORS)
def test_spec_errors_name_file_and_entry(tmp_path, text, pattern):
    from engine.evaluation import load_spec

    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ParamError, match=pattern) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_shipped_specs_parse():
    from engine.evaluation import load_spec

    default = load_spec(DEFAULT)
    assert [a.id for a in default.attacks] == ["fgsm", "pgd"]
    assert default.attacks[1].eps == (0, 1, 2, 4, 8, 16, 32)
    assert len(default.defences) == 27 and default.defences[-1].id == "nlm+bilateral+guided"
    pgd = default.attack("pgd")
    assert pgd.params_at(1)["step_size"] == 0.5 and pgd.params_at(32)["step_size"] == 8.0
    assert pgd.params_at(8)["seed"] == default.seed
    assert default.defence("bilateral:d=9,sigma_color=25,sigma_space=25").defence.sigma_space == 25
    with pytest.raises(ParamError, match="several settings"):
        default.defence("nlm")
    assert load_spec(SMOKE).defence("median").key == "median:kernel=3"


def test_image_distances_match_the_metrics_reference():
    from engine import metrics
    from engine.metrics import image_distances

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 24, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    b[2] = a[2]
    d = image_distances(a, b)
    np.testing.assert_allclose(d["ssim"], metrics.ssim_batch(a, b), rtol=0, atol=1e-12)
    np.testing.assert_allclose(d["psnr"], metrics.psnr_batch(a, b), rtol=1e-13)
    norms = metrics.perturbation_norms(a, b)
    np.testing.assert_array_equal(d["l2"], norms["l2"])
    np.testing.assert_array_equal(d["linf"], norms["linf"])
    assert d["psnr"][2] == math.inf and d["ssim"][2] == 1.0
    assert np.isnan(image_distances(a[:, :8, :8], b[:, :8, :8])["ssim"]).all()
    assert image_distances(a, b, workers=1)["ssim"].tolist() == d["ssim"].tolist()
