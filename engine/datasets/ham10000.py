"""HAM10000 dermatoscopic images (ISIC 2018 Task 3 training set).

Expected folder: ``HAM10000_metadata.csv`` (columns ``lesion_id``,
``image_id``, ``dx``; others are ignored) and the images ``<image_id>.jpg``
in ``images/``, in the folder itself, or in Harvard Dataverse's
``HAM10000_images_part_1/`` and ``HAM10000_images_part_2/``.

Several images can show the same lesion, so the data is split 70/15/15 by
``lesion_id`` (seeded, approximately stratified by diagnosis): one lesion never
lands in two splits.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from engine.datasets.index import FileReader, SplitIndex, group_split, make_index
from engine.datasets.locate import image_files, read_csv_rows
from engine.datasets.spec import SPLITS, DatasetSpec
from engine.errors import DatasetError

logger = logging.getLogger(__name__)

METADATA = "HAM10000_metadata.csv"
IMAGE_FOLDERS = ("images", ".", "HAM10000_images_part_1", "HAM10000_images_part_2")
FRACTIONS = (0.70, 0.15, 0.15)

CLASS_TITLES: dict[str, str] = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus (mole)",
    "vasc": "Vascular lesion",
}
"""Human-readable names of the seven ``dx`` codes."""


def load_ham10000(
    spec: DatasetSpec, directory: Path | None, seed: int, part_dirs: Mapping[str, Path]
) -> dict[str, SplitIndex]:
    """Loader for HAM10000: split by lesion, approximately stratified by ``dx``."""
    assert directory is not None
    rows = read_csv_rows(directory / METADATA, ("lesion_id", "image_id", "dx"))
    if not rows:
        raise DatasetError(f"{directory / METADATA} lists no images")
    classes = spec.classes
    unknown = Counter(r["dx"] for r in rows if r["dx"] not in classes)
    if unknown:
        raise DatasetError(
            f"{METADATA} has unknown dx value(s) "
            + ", ".join(f"{v!r} ({n} rows)" for v, n in sorted(unknown.items()))
            + f"; expected one of {', '.join(classes)}"
        )
    dupes = [i for i, n in Counter(r["image_id"] for r in rows).items() if n > 1]
    if dupes:
        raise DatasetError(f"{METADATA} lists image(s) twice: {', '.join(sorted(dupes)[:5])}")
    blank = sum(1 for r in rows if not r["lesion_id"] or not r["image_id"])
    if blank:
        raise DatasetError(f"{METADATA} has {blank} row(s) without lesion_id or image_id")
    files = image_files(directory, IMAGE_FOLDERS)
    missing = [r["image_id"] for r in rows if r["image_id"] not in files]
    if missing:
        raise DatasetError(
            f"{len(missing)} image(s) listed in {METADATA} are missing from {directory} "
            f"(looked in {', '.join(IMAGE_FOLDERS)}), e.g. {', '.join(missing[:3])}"
        )
    refs = [files[r["image_id"]] for r in rows]
    labels = [classes.index(r["dx"]) for r in rows]
    lesions = [r["lesion_id"] for r in rows]
    parts = group_split(labels, FRACTIONS, seed, lesions)
    reader = FileReader((("", directory.resolve()),))
    return {
        split: make_index(
            spec.id,
            split,
            classes,
            [refs[i] for i in part],
            [labels[i] for i in part],
            reader,
            groups=[lesions[i] for i in part],
        )
        for split, part in zip(SPLITS, parts, strict=True)
    }


HAM10000 = DatasetSpec(
    id="ham10000",
    title="HAM10000 skin lesions (dermatoscopy)",
    classes=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"),
    loader=load_ham10000,
    rotate_ok=True,  # a lesion seen through a dermatoscope has no up
    positive=("mel", "bcc", "akiec"),
    licence="CC BY-NC 4.0 (non-commercial use only)",
    attribution=(
        'Tschandl, Rosendahl, Kittler, "The HAM10000 dataset, a large collection of '
        'multi-source dermatoscopic images of common pigmented skin lesions", '
        "Scientific Data 5, 180161 (2018), doi:10.7910/DVN/DBW86T"
    ),
    description=(
        "10,015 dermatoscopic images of pigmented skin lesions in 7 diagnostic classes "
        "(the ISIC 2018 Task 3 training set). Malignant (positive): melanoma, basal cell "
        "carcinoma, actinic keratosis / Bowen's disease. Split 70/15/15 by lesion."
    ),
    caveat=(
        "Two thirds of the images are benign moles (nv): accuracy alone is misleading, "
        "look at melanoma sensitivity. Non-commercial licence."
    ),
    folder_names=("ham10000_200x150", "ham10000", "HAM10000"),
    how_to_get=(
        "1. Open https://doi.org/10.7910/DVN/DBW86T (Harvard Dataverse; licence "
        "CC BY-NC 4.0, non-commercial use only) and download HAM10000_images_part_1.zip, "
        "HAM10000_images_part_2.zip and HAM10000_metadata (Dataverse shows it as a .tab "
        "table: choose the original file format, CSV, and save it as "
        "HAM10000_metadata.csv).\n"
        "2. Make a folder ham10000 holding HAM10000_metadata.csv and an images/ folder with "
        "all 10,015 ISIC_*.jpg files from both zips (or keep the two folders "
        "HAM10000_images_part_1/ and HAM10000_images_part_2/ as unzipped).\n"
        "3. Move it into a data root, e.g. ~/.cache/robustlens/data/ham10000.\n"
        "(The ISIC 2018 Task 3 training download has the same images, but its one-hot "
        "ground-truth CSV has no lesion_id: use the Dataverse metadata file.)"
    ),
    layout=(
        "ham10000/                   (or ham10000_200x150/, HAM10000/)\n"
        "  HAM10000_metadata.csv     columns lesion_id, image_id, dx (akiec, bcc, bkl, df, "
        "mel, nv, vasc), ...\n"
        "  images/ISIC_0024306.jpg   one <image_id>.jpg per row; the images may also sit in\n"
        "  ...                       the folder itself or in HAM10000_images_part_1/ and _2/"
    ),
    class_titles=CLASS_TITLES,
)
