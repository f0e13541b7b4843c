"""COVID-19 vs NORMAL vs PNEUMONIA chest X-rays, assembled from two sources.

* **COVID-19**: the Hannover Medical School "COVID-19 Image Repository"
  (adults): ``data.csv`` (columns ``patient_id``, ``image_id``) and
  ``png/<image_id>.png``. Split 70/15/15 by ``patient_id`` (seeded), never by
  image, so one patient's radiographs stay in one split.
* **NORMAL / PNEUMONIA**: the Kermany pediatric set with exactly the splits of
  the ``chest_xray`` dataset for the same seed.

Refs carry the source as their first path segment:
``chest_xray/train/NORMAL/IM-0117-0001.jpeg``,
``covid19_hannover/png/006f3a8a.png``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from engine.datasets.folder import CHEST_XRAY, KERMANY_ATTRIBUTION, load_kermany
from engine.datasets.index import FileReader, SplitIndex, group_split, make_index
from engine.datasets.locate import image_files, read_csv_rows
from engine.datasets.spec import SPLITS, DatasetSpec
from engine.errors import DatasetError

logger = logging.getLogger(__name__)

FRACTIONS = (0.70, 0.15, 0.15)
HANNOVER_PREFIX = "covid19_hannover"
KERMANY_PREFIX = CHEST_XRAY.id
COVID = "COVID-19"


def hannover_items(directory: Path) -> tuple[list[str], list[str]]:
    """Refs (relative to ``directory``) and patient ids of the Hannover images."""
    rows = read_csv_rows(directory / "data.csv", ("patient_id", "image_id"))
    if not rows:
        raise DatasetError(f"{directory / 'data.csv'} lists no images")
    files = image_files(directory, ("png", "."))
    refs, patients, missing = [], [], []
    for row in rows:
        image_id, patient = row["image_id"], row["patient_id"]
        if not image_id or not patient:
            raise DatasetError(f"{directory / 'data.csv'} has a row without patient_id or image_id")
        stem = image_id.rsplit(".", 1)[0] if image_id.lower().endswith(".png") else image_id
        if stem not in files:
            missing.append(image_id)
            continue
        refs.append(files[stem])
        patients.append(patient)
    if missing:
        raise DatasetError(
            f"{len(missing)} image(s) listed in data.csv are missing from {directory / 'png'}, "
            f"e.g. {', '.join(missing[:3])}"
        )
    if len(set(refs)) != len(refs):
        raise DatasetError(f"{directory / 'data.csv'} lists an image twice")
    return refs, patients


def load_covid(
    spec: DatasetSpec, directory: Path | None, seed: int, part_dirs: Mapping[str, Path]
) -> dict[str, SplitIndex]:
    """Loader for ``chest_xray_covid`` (see the module docstring)."""
    assert directory is not None
    kermany_dir = part_dirs[CHEST_XRAY.id]
    kermany = load_kermany(CHEST_XRAY, kermany_dir, seed, {})
    # load_kermany may step into a nested chest_xray/ folder: read from where it read.
    kermany_reader = kermany["train"].reader
    assert isinstance(kermany_reader, FileReader)
    kermany_root = kermany_reader.roots[0][1]

    h_refs, h_patients = hannover_items(directory)
    parts = group_split([0] * len(h_refs), FRACTIONS, seed, h_patients)

    classes = spec.classes
    covid_label = classes.index(COVID)
    remap = [classes.index(c) for c in CHEST_XRAY.classes]
    reader = FileReader(((KERMANY_PREFIX, kermany_root), (HANNOVER_PREFIX, directory)))
    out: dict[str, SplitIndex] = {}
    for split, part in zip(SPLITS, parts, strict=True):
        k = kermany[split]
        refs = [f"{KERMANY_PREFIX}/{r}" for r in k.refs]
        labels = [remap[int(y)] for y in k.labels]
        groups = [f"{KERMANY_PREFIX}:{g}" for g in (k.groups or k.refs)]
        refs += [f"{HANNOVER_PREFIX}/{h_refs[i]}" for i in part]
        labels += [covid_label] * len(part)
        groups += [f"{HANNOVER_PREFIX}:{h_patients[i]}" for i in part]
        out[split] = make_index(spec.id, split, classes, refs, labels, reader, groups=groups)
    return out


HANNOVER_ATTRIBUTION = (
    "Institute for Diagnostic and Interventional Radiology, Hannover Medical School, "
    '"COVID-19 Image Repository" (https://github.com/ml-workgroup/covid-19-image-repository), '
    "doi:10.25835/0090041"
)

CHEST_XRAY_COVID = DatasetSpec(
    id="chest_xray_covid",
    mirror_ok=False,
    title="Chest X-rays: COVID-19 / NORMAL / PNEUMONIA (two sources)",
    classes=(COVID, "NORMAL", "PNEUMONIA"),
    loader=load_covid,
    positive=(COVID, "PNEUMONIA"),
    licence="COVID-19 images: CC BY 3.0; NORMAL and PNEUMONIA images: CC BY 4.0",
    attribution=f"COVID-19: {HANNOVER_ATTRIBUTION}. NORMAL/PNEUMONIA: {KERMANY_ATTRIBUTION}",
    description=(
        "243 COVID-19 chest radiographs of 71 adult patients (Hannover, split by "
        "patient) combined with the Kermany pediatric NORMAL/PNEUMONIA X-rays (their "
        "official splits)."
    ),
    caveat=(
        "The Kermany images are children from one hospital (Guangzhou), the Hannover "
        "images adults from another (Hannover). A classifier can learn the source (age, "
        "scanner, image style), not the disease: high COVID-19 accuracy here does not "
        "mean it detects COVID-19. COVID-19 is also a small class (243 images)."
    ),
    folder_names=("covid19_hannover", "covid-19-image-repository"),
    how_to_get=(
        "This dataset needs two folders.\n"
        "1. COVID-19 images: open https://github.com/ml-workgroup/covid-19-image-repository "
        "(licence CC BY 3.0) and download it (Code > Download ZIP, or git clone). Unzip it "
        "and rename the folder (covid-19-image-repository-master or similar) to "
        "covid19_hannover; it must hold data.csv and the png/ folder.\n"
        "2. Move covid19_hannover into a data root, e.g. "
        "~/.cache/robustlens/data/covid19_hannover.\n"
        "3. NORMAL/PNEUMONIA images: install the chest_xray dataset in a data root as well "
        "(python -m engine.datasets info chest_xray shows how)."
    ),
    layout=(
        "covid19_hannover/     (or covid-19-image-repository/)\n"
        "  data.csv            columns patient_id, image_id (the PNG's name), projection, ...\n"
        "  png/<image_id>.png  243 grey radiographs of 71 patients\n"
        "chest_xray/           the Kermany set, laid out as for the chest_xray dataset"
    ),
    parts=(CHEST_XRAY,),
)
