"""engine.datasets: loaders on generated fixture folders, splits, arrays, CLI, real data."""

from __future__ import annotations

import csv
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import engine.datasets.locate as base
from engine.datasets import (
    REGISTRY,
    SPLITS,
    DatasetSpec,
    class_counts,
    data_roots,
    find_dataset_dir,
    folder_dataset,
    get_dataset,
    group_split,
    load_arrays,
    load_splits,
    render_synthetic,
    subset_indices,
)
from engine.datasets.__main__ import main as cli_main
from engine.datasets.folder import kermany_patient
from engine.errors import DatasetError, ImageError, ParamError
from tests.conftest import shared_dataset

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated_roots(tmp_path_factory, monkeypatch):
    """Keep the real data roots out of fixture tests (real-data tests pass root=)."""
    monkeypatch.delenv(base.ENV_VAR, raising=False)
    monkeypatch.setattr(base, "SIBLING_DATA", tmp_path_factory.mktemp("no_sibling") / "absent")
    monkeypatch.setattr(base, "CACHE_DIR", tmp_path_factory.mktemp("cache"))


def _img(path: Path, value: int, size: tuple[int, int] = (8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((size[1], size[0], 3), value % 256, np.uint8)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.fromarray(array).save(path, format=fmt)


def make_kermany(root: Path, name: str = "chest_xray") -> Path:
    """Kermany layout: persons with several images, NORMAL IM- files, official test."""
    d = root / name
    for p in range(1, 13):
        for k in range(1 + p % 3):
            _img(d / "train" / "PNEUMONIA" / f"person{p}_bacteria_{p * 10 + k}.jpeg", p)
    for n in range(1, 11):
        prefix = "NORMAL2-" if n % 2 else ""
        _img(d / "train" / "NORMAL" / f"{prefix}IM-{n:04d}-0001.jpeg", 100 + n)
    for n in range(3):
        _img(d / "test" / "NORMAL" / f"IM-{900 + n:04d}-0001.jpeg", 50)
        _img(d / "test" / "PNEUMONIA" / f"person{900 + n}_virus_{n}.jpeg", 60)
    return d


def make_ham(root: Path, n_lesions: int = 42) -> Path:
    d = root / "ham10000"
    dx = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    rows = []
    image = 0
    for lesion in range(n_lesions):
        for _ in range(1 + lesion % 3):
            rows.append(
                {
                    "lesion_id": f"HAM_{lesion:07d}",
                    "image_id": f"ISIC_{image:07d}",
                    "dx": dx[lesion % 7],
                    "age": "50.0",
                }
            )
            _img(d / "images" / f"ISIC_{image:07d}.jpg", image, (10, 8))
            image += 1
    _write_csv(d / "HAM10000_metadata.csv", rows)
    return d


def make_hannover(root: Path, n_patients: int = 14) -> Path:
    d = root / "covid19_hannover"
    rows = []
    for p in range(n_patients):
        for k in range(1 + p % 3):
            image_id = f"{p:04x}{k:04x}"
            rows.append({"patient_id": f"pat{p:03d}", "image_id": image_id, "projection": "ap"})
            _img(d / "png" / f"{image_id}.png", p * 3 + k, (12, 10))
    _write_csv(d / "data.csv", rows)
    return d


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _groups_by_split(splits):
    return {s: set(splits[s].groups) for s in SPLITS}


def _assert_disjoint(groups_by_split):
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not groups_by_split[a] & groups_by_split[b], (a, b)


# --------------------------------------------------------------------------- roots


def test_data_roots_order(tmp_path, monkeypatch):
    sibling = tmp_path / "sibling"
    sibling.mkdir()
    monkeypatch.setattr(base, "SIBLING_DATA", sibling)
    monkeypatch.setenv(base.ENV_VAR, os.pathsep.join([str(tmp_path / "e1"), str(tmp_path / "e2")]))
    roots = data_roots(tmp_path / "explicit")
    assert roots == [
        tmp_path / "explicit",
        tmp_path / "e1",
        tmp_path / "e2",
        sibling,
        Path(base.CACHE_DIR),
    ]
    assert data_roots(sibling) == [sibling, tmp_path / "e1", tmp_path / "e2", Path(base.CACHE_DIR)]


def test_missing_dataset_names_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv(base.ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(DatasetError) as err:
        load_splits("ham10000", root=tmp_path / "mine")
    msg = str(err.value)
    for root in (tmp_path / "mine", tmp_path / "env", Path(base.CACHE_DIR)):
        for name in ("ham10000_200x150", "ham10000", "HAM10000"):
            assert str(root / name) in msg
    assert "doi.org/10.7910/DVN/DBW86T" in msg and "ROBUSTLENS_DATA" in msg


def test_dataset_found_via_env_and_root_named_like_dataset(tmp_path, monkeypatch):
    d = make_kermany(tmp_path / "somewhere")
    monkeypatch.setenv(base.ENV_VAR, str(tmp_path / "somewhere"))
    assert find_dataset_dir(REGISTRY["chest_xray"]) == d
    monkeypatch.delenv(base.ENV_VAR)
    assert find_dataset_dir(REGISTRY["chest_xray"], root=d) == d


def test_unknown_dataset():
    with pytest.raises(DatasetError, match="unknown dataset 'nope'; known datasets: synthetic"):
        load_splits("nope")


def test_get_dataset_accepts_id_spec_and_folder(tmp_path):
    assert get_dataset("ham10000") is REGISTRY["ham10000"]
    assert get_dataset(REGISTRY["faces"]) is REGISTRY["faces"]
    for cls in ("x", "y"):
        _img(tmp_path / "mine" / cls / "0.png", 1)
    spec = get_dataset(tmp_path / "mine")
    assert spec.id == "folder:mine" and spec.classes == ("x", "y")


def test_bad_seed():
    with pytest.raises(ParamError, match="seed must be a non-negative integer"):
        load_splits("synthetic", seed=-1)


def test_registry_specs_are_complete():
    for key in ("synthetic", "chest_xray", "pneumoniamnist", "chest_xray_covid", "ham10000"):
        spec = REGISTRY[key]
        assert spec.id == key and spec.licence and spec.attribution and spec.how_to_get
    assert REGISTRY["chest_xray"].positive == ("PNEUMONIA",)
    assert set(REGISTRY["chest_xray_covid"].positive) == {"COVID-19", "PNEUMONIA"}
    assert "source" in REGISTRY["chest_xray_covid"].caveat
    assert "CC BY 3.0" in REGISTRY["chest_xray_covid"].licence
    ham = REGISTRY["ham10000"]
    assert set(ham.positive) == {"mel", "bcc", "akiec"} and ham.medical
    assert "non-commercial" in ham.licence.lower() and ham.class_title("mel") == "Melanoma"
    assert not REGISTRY["synthetic"].medical and REGISTRY["faces"].classes == ()


def test_spec_validates_positive_classes():
    with pytest.raises(ParamError, match="positive class"):
        DatasetSpec(
            "x", "X", ("a", "b"), loader=lambda *a: {}, positive=("c",), folder_names=("x",)
        )


# --------------------------------------------------------------------------- Kermany


def test_kermany_layout(tmp_path):
    make_kermany(tmp_path)
    splits = load_splits("chest_xray", root=tmp_path)
    assert list(splits) == list(SPLITS)
    n_pneumonia = sum(1 + p % 3 for p in range(1, 13))
    train, val, test = (splits[s] for s in SPLITS)
    assert class_counts(test) == {"NORMAL": 3, "PNEUMONIA": 3}
    tv = {c: class_counts(train)[c] + class_counts(val)[c] for c in ("NORMAL", "PNEUMONIA")}
    assert tv == {"NORMAL": 10, "PNEUMONIA": n_pneumonia}
    assert 1 <= len(val) <= 6
    assert not set(train.groups) & set(val.groups)  # no child in train and val
    assert not set(train.refs) & set(val.refs)
    assert all(r.startswith("train/") for r in train.refs + val.refs)
    assert train.labels.dtype == np.int64 and not train.labels.flags.writeable
    img = test.image(0)
    assert img.shape == (6, 8, 3) and img.dtype == np.uint8
    assert test.path(0).is_file()


def test_kermany_patient_ids():
    assert kermany_patient("train/PNEUMONIA/person1000_virus_1681.jpeg") == "person1000"
    assert kermany_patient("person12_bacteria_3.jpeg") == "person12"
    assert kermany_patient("IM-0429-0001-0002.jpeg") == "IM-0429"
    assert kermany_patient("NORMAL2-IM-0629-0001.jpeg") == "NORMAL2-IM-0629"
    assert kermany_patient("other.jpeg") == "other"


def test_kermany_val_folder_is_pooled_and_nested_zip_accepted(tmp_path):
    d = make_kermany(tmp_path / "x", "chest_xray")
    _img(d / "val" / "NORMAL" / "IM-0500-0001.jpeg", 5)
    _img(d / "val" / "PNEUMONIA" / "person500_virus_1.jpeg", 5)
    nested = tmp_path / "root" / "chest_xray"
    nested.mkdir(parents=True)
    shutil.move(str(d), str(nested / "chest_xray"))
    splits = load_splits("chest_xray", root=tmp_path / "root")
    assert len(splits["train"]) + len(splits["val"]) == 10 + 24 + 2
    assert len(splits["test"]) == 6


def test_kermany_without_test_folder(tmp_path):
    d = make_kermany(tmp_path)
    shutil.rmtree(d / "test")
    with pytest.raises(DatasetError, match="has no test folder"):
        load_splits("chest_xray", root=tmp_path)


def test_splits_are_deterministic_and_depend_on_seed(tmp_path):
    make_kermany(tmp_path)
    a = load_splits("chest_xray", root=tmp_path, seed=3)
    b = load_splits("chest_xray", root=tmp_path, seed=3)
    for s in SPLITS:
        assert a[s].refs == b[s].refs and a[s].fingerprint == b[s].fingerprint
        np.testing.assert_array_equal(a[s].labels, b[s].labels)
    others = [load_splits("chest_xray", root=tmp_path, seed=k)["val"].refs for k in range(4, 9)]
    assert any(v != a["val"].refs for v in others)
    assert load_splits("chest_xray", root=tmp_path, seed=4)["test"].fingerprint == (
        a["test"].fingerprint
    )


def test_fingerprint_changes_when_a_label_or_file_changes(tmp_path):
    d = make_kermany(tmp_path)
    before = load_splits("chest_xray", root=tmp_path)["test"].fingerprint
    assert len(before) == 16 and int(before, 16) >= 0
    name = "IM-0900-0001.jpeg"
    shutil.move(str(d / "test" / "NORMAL" / name), str(d / "test" / "PNEUMONIA" / name))
    relabelled = load_splits("chest_xray", root=tmp_path)["test"].fingerprint
    assert relabelled != before
    _img(d / "test" / "NORMAL" / "IM-0999-0001.jpeg", 1)
    assert load_splits("chest_xray", root=tmp_path)["test"].fingerprint not in (before, relabelled)


def test_split_index_pickles(tmp_path):
    make_kermany(tmp_path)
    _make_npz(tmp_path)
    for name in ("chest_xray", "pneumoniamnist", "synthetic"):
        test = load_splits(name, root=tmp_path)["test"]
        copy = pickle.loads(pickle.dumps(test))
        assert copy.fingerprint == test.fingerprint and copy.refs == test.refs
        np.testing.assert_array_equal(copy.image(0), test.image(0))


# --------------------------------------------------------------------------- folders


def test_faces_layout_val_becomes_test(tmp_path):
    for person in ("ben", "elton", "mindy"):
        for i in range(6):
            _img(tmp_path / "faces" / "train" / person / f"{i}.jpg", i)
        for i in range(2):
            _img(tmp_path / "faces" / "val" / person / f"v{i}.jpg", i)
    splits = load_splits("faces", root=tmp_path)
    assert splits["test"].classes == ("ben", "elton", "mindy")
    assert class_counts(splits["test"]) == {"ben": 2, "elton": 2, "mindy": 2}
    assert all(r.startswith("val/") for r in splits["test"].refs)
    assert len(splits["train"]) + len(splits["val"]) == 18
    assert len(splits["val"]) >= 1


def test_flat_folder_dataset_is_split_stratified(tmp_path):
    for cls, n in (("cats", 20), ("dogs", 40)):
        for i in range(n):
            _img(tmp_path / "pets" / cls / f"{i:02d}.png", i)
    (tmp_path / "pets" / "notes.txt").write_text("ignored")
    spec = folder_dataset(tmp_path / "pets")
    assert spec.id == "folder:pets" and spec.classes == ("cats", "dogs")
    splits = load_splits(spec)
    assert class_counts(splits["train"]) == {"cats": 14, "dogs": 28}
    assert class_counts(splits["val"]) == {"cats": 3, "dogs": 6}
    assert class_counts(splits["test"]) == {"cats": 3, "dogs": 6}
    all_refs = [r for s in SPLITS for r in splits[s].refs]
    assert len(all_refs) == len(set(all_refs)) == 60
    named = folder_dataset(tmp_path / "pets", dataset_id="pets", title="Pets", seed=5)
    assert load_splits(named)["val"].refs == load_splits(spec, seed=5)["val"].refs


def test_folder_with_train_test_and_val(tmp_path):
    for split, n in (("Train", 5), ("validation", 2), ("test", 3)):
        for cls in ("a", "b"):
            for i in range(n):
                _img(tmp_path / "ds" / split / cls / f"{i}.png", i)
    splits = load_splits(folder_dataset(tmp_path / "ds"))
    assert [len(splits[s]) for s in SPLITS] == [10, 4, 6]


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="is not a folder"):
        folder_dataset(tmp_path / "absent")
    (tmp_path / "one" / "only").mkdir(parents=True)
    _img(tmp_path / "one" / "only" / "a.png", 1)
    with pytest.raises(DatasetError, match="a classifier needs at least 2"):
        load_splits(folder_dataset(tmp_path / "one"))
    _img(tmp_path / "two" / "a" / "x.png", 1)
    (tmp_path / "two" / "b").mkdir()
    with pytest.raises(DatasetError, match=r"the class folder .*b has no images"):
        load_splits(folder_dataset(tmp_path / "two"))
    (tmp_path / "none").mkdir()
    with pytest.raises(DatasetError, match="has no class sub-folders"):
        load_splits(folder_dataset(tmp_path / "none"))


def test_kermany_empty_class_folder(tmp_path):
    d = make_kermany(tmp_path)
    shutil.rmtree(d / "test" / "NORMAL")
    (d / "test" / "NORMAL").mkdir()
    with pytest.raises(DatasetError, match="NORMAL has no images"):
        load_splits("chest_xray", root=tmp_path)


# --------------------------------------------------------------------------- npz


def _make_npz(root: Path, shift: int = 0) -> Path:
    d = root / "pneumoniamnist"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(shift)
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    np.savez(d / "pneumoniamnist.npz", **arrays)
    return d / "pneumoniamnist.npz"


def test_npz_loader(tmp_path):
    path = _make_npz(tmp_path)
    splits = load_splits("pneumoniamnist", root=tmp_path)
    assert [len(splits[s]) for s in SPLITS] == [12, 4, 6]
    test = splits["test"]
    assert test.refs[:2] == ("test:0", "test:1") and test.path(0) is None
    assert class_counts(test) == {"NORMAL": 3, "PNEUMONIA": 3}
    raw = np.load(path)["test_images"][1]
    img = test.image(1)
    assert img.shape == (28, 28, 3)
    np.testing.assert_array_equal(img[..., 0], raw)
    np.testing.assert_array_equal(img[..., 2], raw)
    before = test.fingerprint
    _make_npz(tmp_path, shift=1)  # same refs and labels, other pixels
    assert load_splits("pneumoniamnist", root=tmp_path)["test"].fingerprint != before


def test_npz_missing_keys(tmp_path):
    d = tmp_path / "pneumoniamnist"
    d.mkdir()
    np.savez(d / "pneumoniamnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match="lacks the array"):
        load_splits("pneumoniamnist", root=tmp_path)


# --------------------------------------------------------------------------- HAM10000


def test_ham_split_by_lesion(tmp_path):
    make_ham(tmp_path)
    splits = load_splits("ham10000", root=tmp_path, seed=1)
    total = sum(1 + lesion % 3 for lesion in range(42))
    assert sum(len(splits[s]) for s in SPLITS) == total
    _assert_disjoint(_groups_by_split(splits))
    train = splits["train"]
    assert train.classes == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    assert all(n > 0 for n in class_counts(train).values())
    assert 0.55 < len(train) / total < 0.85
    assert train.image(0).shape == (8, 10, 3)
    again = load_splits("ham10000", root=tmp_path, seed=1)
    assert all(again[s].refs == splits[s].refs for s in SPLITS)


def test_ham_malformed_csv(tmp_path):
    d = make_ham(tmp_path, n_lesions=7)
    csv_path = d / "HAM10000_metadata.csv"
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    _write_csv(csv_path, [{k: v for k, v in r.items() if k != "dx"} for r in rows])
    with pytest.raises(DatasetError, match=r"HAM10000_metadata.csv lacks the column\(s\) dx"):
        load_splits("ham10000", root=tmp_path)
    rows[0]["dx"] = "flu"
    _write_csv(csv_path, rows)
    with pytest.raises(DatasetError, match=r"unknown dx value.*'flu'"):
        load_splits("ham10000", root=tmp_path)
    rows[0]["dx"] = "mel"
    _write_csv(csv_path, rows)
    (d / "images" / f"{rows[1]['image_id']}.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) listed in HAM10000_metadata\.csv"):
        load_splits("ham10000", root=tmp_path)


# --------------------------------------------------------------------------- COVID


def test_covid_combination(tmp_path):
    make_kermany(tmp_path)
    make_hannover(tmp_path)
    splits = load_splits("chest_xray_covid", root=tmp_path, seed=2)
    kermany = load_splits("chest_xray", root=tmp_path, seed=2)
    n_covid = sum(1 + p % 3 for p in range(14))
    assert sum(class_counts(splits[s])["COVID-19"] for s in SPLITS) == n_covid
    _assert_disjoint(_groups_by_split(splits))
    covid_patients = {
        s: {g for g in splits[s].groups if g.startswith("covid19_hannover:")} for s in SPLITS
    }
    assert all(covid_patients[s] for s in SPLITS)
    for s in SPLITS:
        counts = class_counts(splits[s])
        assert counts["NORMAL"] == class_counts(kermany[s])["NORMAL"]
        assert counts["PNEUMONIA"] == class_counts(kermany[s])["PNEUMONIA"]
        assert {r.split("/", 1)[1] for r in splits[s].refs if r.startswith("chest_xray/")} == set(
            kermany[s].refs
        )
    test = splits["test"]
    sources = {r.split("/", 1)[0]: i for i, r in enumerate(test.refs)}
    assert test.image(sources["chest_xray"]).shape == (6, 8, 3)
    assert test.image(sources["covid19_hannover"]).shape == (10, 12, 3)


def test_covid_needs_kermany(tmp_path):
    make_hannover(tmp_path)
    with pytest.raises(DatasetError, match="chest_xray_covid needs the chest_xray dataset too"):
        load_splits("chest_xray_covid", root=tmp_path)


def test_covid_missing_column(tmp_path):
    make_kermany(tmp_path)
    d = make_hannover(tmp_path, n_patients=3)
    _write_csv(d / "data.csv", [{"image_id": "x", "sex": "m"}])
    with pytest.raises(DatasetError, match=r"data.csv lacks the column\(s\) patient_id"):
        load_splits("chest_xray_covid", root=tmp_path)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_render_is_deterministic():
    a, la = render_synthetic(0, "train", 5)
    b, lb = render_synthetic(0, "train", 5)
    assert a.shape == (224, 224, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert la == lb == 1
    assert not np.array_equal(a, render_synthetic(1, "train", 5)[0])
    assert not np.array_equal(a, render_synthetic(0, "val", 5)[0])
    assert not np.array_equal(a, render_synthetic(0, "train", 9)[0])
    with pytest.raises(ParamError, match="split must be one of"):
        render_synthetic(0, "dev", 0)


def test_synthetic_splits_balanced():
    splits = load_splits("synthetic")
    assert [len(splits[s]) for s in SPLITS] == [3000, 500, 500]
    assert set(class_counts(splits["train"]).values()) == {750}
    assert set(class_counts(splits["test"]).values()) == {125}
    assert load_splits("synthetic", seed=1)["test"].fingerprint != splits["test"].fingerprint
    assert load_splits("synthetic")["test"].fingerprint == splits["test"].fingerprint
    np.testing.assert_array_equal(splits["val"].image(3), render_synthetic(0, "val", 3)[0])


# --------------------------------------------------------------------------- arrays


def test_load_arrays_shapes_order_and_progress():
    test = load_splits("synthetic")["test"]
    calls = []
    x, y = load_arrays(test, 32, indices=[7, 2, 5], progress=lambda d, t: calls.append((d, t)))
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and y.tolist() == [3, 2, 1]
    assert calls[-1] == (3, 3)
    x1, _ = load_arrays(test, (32, 32), indices=[7, 2, 5], workers=1)
    np.testing.assert_array_equal(x, x1)
    x2, _ = load_arrays(test, (20, 30), indices=[0])
    assert x2.shape == (1, 20, 30, 3)


def test_load_arrays_limit_is_stratified():
    test = load_splits("synthetic")["test"]
    x, y = load_arrays(test, 16, limit=8, seed=1)
    assert x.shape == (8, 16, 16, 3)
    assert np.bincount(y, minlength=4).tolist() == [2, 2, 2, 2]
    _, y2 = load_arrays(test, 16, limit=8, seed=1)
    np.testing.assert_array_equal(y, y2)


def test_subset_indices_keeps_proportions():
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    pick = subset_indices(labels, 20, seed=0)
    assert np.bincount(labels[pick]).tolist() == [16, 3, 1]
    assert np.all(np.diff(pick) > 0)
    assert subset_indices(labels, 3, seed=0).size == 3
    assert np.bincount(labels[subset_indices(labels, 3)], minlength=3).tolist() == [1, 1, 1]
    assert subset_indices(labels, 500).size == 100
    with pytest.raises(ParamError, match="limit must be a positive integer"):
        subset_indices(labels, 0)


def test_group_split_keeps_groups_whole():
    rng = np.random.default_rng(0)
    groups = [f"g{int(g)}" for g in rng.integers(0, 60, 300)]
    labels = [int(g[1:]) % 3 for g in groups]
    parts = group_split(labels, (0.7, 0.15, 0.15), seed=0, groups=groups)
    assert sum(len(p) for p in parts) == 300
    sets = [{groups[i] for i in p} for p in parts]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert 0.55 < len(parts[0]) / 300 < 0.85


def test_load_arrays_errors(tmp_path):
    test = load_splits("synthetic")["test"]
    with pytest.raises(ParamError, match="indices must be in"):
        load_arrays(test, 16, indices=[500])
    with pytest.raises(ParamError, match="workers must be a positive integer"):
        load_arrays(test, 16, indices=[0], workers=0)
    with pytest.raises(ParamError, match="image size must be"):
        load_arrays(test, 0, indices=[0])
    for cls in ("a", "b"):
        for i in range(3):
            _img(tmp_path / "ds" / cls / f"{i}.png", i)
    (tmp_path / "ds" / "b" / "broken.png").write_bytes(b"not a png")
    splits = load_splits(folder_dataset(tmp_path / "ds"))
    everything = [(s, i) for s in SPLITS for i, r in enumerate(splits[s].refs) if "broken" in r]
    split, i = everything[0]
    with pytest.raises(ImageError, match=r"b/broken.png: this file is not an image"):
        load_arrays(splits[split], 8, workers=2)


# --------------------------------------------------------------------------- CLI


def test_cli_list_and_info(tmp_path, capsys):
    make_kermany(tmp_path)
    assert cli_main(["--root", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    for key in REGISTRY:
        assert f"{key}:" in out
    assert f"found at {tmp_path / 'chest_xray'}" in out
    assert re.search(r"splits: train \d+, val \d+, test 6", out)
    assert cli_main(["--root", str(tmp_path), "info", "chest_xray"]) == 0
    out = capsys.readouterr().out
    assert "CC BY 4.0" in out and "fingerprint" in out and "NORMAL 3" in out
    assert cli_main(["info", "ham10000"]) == 0  # absent: explains how to get it
    out = capsys.readouterr().out
    assert "not found" in out and "how to get it:" in out and "DBW86T" in out


def test_cli_errors_exit_2_without_traceback(capsys):
    assert cli_main(["info", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset") and "Traceback" not in err


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_kermany():
    path = shared_dataset("chest_xray_kermany_224")
    splits = load_splits("chest_xray", root=path.parent)
    assert class_counts(splits["test"]) == {"NORMAL": 234, "PNEUMONIA": 390}
    train, val = class_counts(splits["train"]), class_counts(splits["val"])
    assert {c: train[c] + val[c] for c in train} == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert 0.08 < len(splits["val"]) / (len(splits["train"]) + len(splits["val"])) < 0.12
    assert not set(splits["train"].groups) & set(splits["val"].groups)
    x, _ = load_arrays(splits["test"], 64, indices=[0, 500])
    assert x.shape == (2, 64, 64, 3)


@pytest.mark.realdata
def test_real_ham10000():
    path = shared_dataset("ham10000_200x150")
    splits = load_splits("ham10000", root=path.parent)
    assert sum(len(splits[s]) for s in SPLITS) == 10015
    _assert_disjoint(_groups_by_split(splits))
    assert splits["test"].image(0).shape == (150, 200, 3)


@pytest.mark.realdata
def test_real_covid():
    path = shared_dataset("covid19_hannover")
    shared_dataset("chest_xray_kermany_224")
    splits = load_splits("chest_xray_covid", root=path.parent)
    assert sum(class_counts(splits[s])["COVID-19"] for s in SPLITS) == 243
    patients = {
        s: {g for g in splits[s].groups if g.startswith("covid19_hannover:")} for s in SPLITS
    }
    assert sum(len(p) for p in patients.values()) == 71
    _assert_disjoint(patients)
    # The official test reuses 170 "person" numbers seen in train (same children or not is
    # unknown, and the split is official): only our own train/val split is checked.
    assert not set(splits["train"].groups) & set(splits["val"].groups)
    covid = next(i for i, r in enumerate(splits["test"].refs) if r.startswith("covid19"))
    assert splits["test"].image(covid).ndim == 3


@pytest.mark.realdata
def test_real_pneumoniamnist():
    path = shared_dataset("pneumoniamnist")
    splits = load_splits("pneumoniamnist", root=path.parent)
    assert class_counts(splits["val"]) == {"NORMAL": 135, "PNEUMONIA": 389}
    assert class_counts(splits["test"]) == {"NORMAL": 234, "PNEUMONIA": 390}
    assert splits["train"].image(0).shape == (28, 28, 3)
