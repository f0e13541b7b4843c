"""Hand-made results tables shaped like a sweep's results.csv and per_image.csv.

Shared by the query tests here and the dashboard tests in tests/app.
"""

from __future__ import annotations

import math

import pandas as pd

from engine.evaluation import keys
from engine.threat import THREAT_CLEAN, THREAT_TRANSFER

#: Hand-made accuracies: defence key -> {eps: accuracy} for FGSM (PGD has eps 0 and 4 only).
ACC = {
    "none": {0: 0.90, 4: 0.30, 8: 0.10},
    "median:kernel=3": {0: 0.85, 4: 0.60, 8: 0.40},
    "median:kernel=5": {0: 0.70, 4: 0.65, 8: 0.50},
    "jpeg:quality=50": {0: 0.88, 4: 0.50, 8: 0.05},
    "nlm:h=5,h_color=5": {0: 0.80, 4: 0.55, 8: 0.30},
    "nlm:h=10,h_color=10": {0: 0.75, 4: 0.58, 8: 0.35},
    "nlm+median:kernel=3": {0: 0.60, 4: 0.65, 8: 0.45},
}
LABELS = {
    "none": float("nan"),  # pandas reads the CSV's "None" label as NaN
    "median:kernel=3": "Median(kernel=3)",
    "median:kernel=5": "Median(kernel=5)",
    "jpeg:quality=50": "JPEG(quality=50)",
    "nlm:h=5,h_color=5": "NLM(h=5, h_color=5, template_window=7, search_window=21)",
    "nlm:h=10,h_color=10": "NLM(h=10, h_color=10, template_window=7, search_window=21)",
    "nlm+median:kernel=3": "NLM(...) → Median(kernel=3)",
}


def make_table(*, patient: bool = True, n_images: int = 50) -> pd.DataFrame:
    """A small results table shaped like results.csv (JSON columns decoded)."""
    rows = []
    for attack, eps_list in (("fgsm", (0, 4, 8)), ("pgd", (0, 4))):
        for eps in eps_list:
            for key, accs in ACC.items():
                acc = accs[eps] if attack == "fgsm" else accs[eps] - (0.05 if eps else 0)
                nan = math.nan
                rows.append(
                    {
                        "dataset": "toy",
                        "split": "test",
                        "model": "toy__m",
                        "backbone": "m",
                        "attack": attack,
                        "attack_params": {"eps": float(eps)},
                        "eps": float(eps),
                        "defence": keys.family(key),
                        "defence_key": key,
                        "defence_label": LABELS[key],
                        "defence_params": {},
                        "threat_model": THREAT_TRANSFER if eps else THREAT_CLEAN,
                        "n_images": n_images,
                        "accuracy": acc,
                        "macro_recall": acc - 0.05,
                        "macro_specificity": acc,
                        "recall_per_class": [acc, acc],
                        "specificity_per_class": [acc, acc],
                        "confusion": [[20, 5], [3, 22]],
                        "fooling_rate": max(0.0, 1 - acc / 0.9),
                        "mean_confidence": 0.9,
                        "true_class_confidence": acc,
                        "confusion_binary": [[20, 5], [3, 22]] if patient else None,
                        "patient_accuracy": acc if patient else nan,
                        "sensitivity": min(1.0, acc + 0.05) if patient else nan,
                        "specificity": acc if patient else nan,
                        "npv": acc - 0.1 if patient else nan,
                        "ppv": acc if patient else nan,
                        "fnr": 1 - min(1.0, acc + 0.05) if patient else nan,
                        "pert_l2_mean": 10.0 * eps,
                        "pert_l2_max": 10.0 * eps,
                        "pert_linf_mean": float(eps),
                        "pert_linf_max": float(eps),
                        "psnr_mean": math.inf if key == "none" and eps == 0 else 30.0,
                        "ssim_mean": 1.0 if key == "none" and eps == 0 else 0.9,
                        "seconds": 0.1,
                        "attack_seconds": 0.0,
                    }
                )
    return pd.DataFrame(rows)


def make_per_image() -> pd.DataFrame:
    """6 images; FGSM eps 4 flips images 0, 1 and 2; median:kernel=3 restores 0 and 2."""
    labels = [0, 1, 0, 1, 0, 1]
    correct = {
        (0.0, "none"): [1, 1, 1, 1, 1, 0],
        (4.0, "none"): [0, 0, 0, 1, 1, 0],
        (4.0, "median:kernel=3"): [1, 0, 1, 1, 1, 0],
    }
    rows = []
    for (eps, key), ok in correct.items():
        for i, (label, c) in enumerate(zip(labels, ok, strict=True)):
            pred = label if c else 1 - label
            rows.append(
                {
                    "image_index": 10 + i,
                    "ref": f"img{i}.png",
                    "true_label": label,
                    "attack": "fgsm",
                    "eps": eps,
                    "defence": key.split(":")[0],
                    "defence_key": key,
                    "pred": pred,
                    "correct": bool(c),
                    "confidence": 0.9,
                    "true_confidence": 0.9 if c else 0.1,
                }
            )
    return pd.DataFrame(rows)
