"""Recap pipeline benchmark: throughput against an ART loop and a naive serial loop.

Run with ``python -m bench.recap`` (ART is a benchmark-only dependency:
``pip install adversarial-robustness-toolbox``). Prints a table and writes
``bench/results/recap.json``.

Grid (the same for all three): MobileNetV3 Small at 224x224 with random
weights (speed does not depend on the weight values), 64 generated images
(the synthetic set), FGSM at eps 4 and 8, defences none / JPEG 75 / median 3:
2 x 3 = 6 settings, 384 image evaluations. Throughput = images x settings
per second.

* **ours**: :func:`engine.evaluation.run_sweep`, end to end: reading the spec,
  the bundle and the images, clean predictions, one attack per budget, each
  defence on all cores, prediction, every metric (incl. PSNR, SSIM,
  perturbation norms), per-image records, atomic cell files and both CSVs.
  The model object is reused across runs in one process (as a resumed or
  second sweep does); the first, cold run (model load and tracing) is
  reported separately.
* **ART loops**: IBM ART on the same model and images already in memory (ART
  gets no loading cost): ``TensorFlowV2Classifier`` + ``FastGradientMethod``,
  then ``JpegCompression(quality=75)`` / ``SpatialSmoothing(window_size=3)`` on
  the adversarial images (ART's equivalents of our JPEG and median defences),
  ``classifier.predict`` and :func:`engine.metrics.summarize` (no PSNR, SSIM,
  norms or files: less work than ours). Two variants: the straightforward
  *nested* loop (every cell attacks, defends, predicts) and a hand-optimised
  one that attacks once per budget and reuses the images, as ours does.
* **serial**: a naive loop with our own engine: per image, attack one image,
  defend one image, predict one image.

The three are interleaved (ours, ART, serial, ours, ...) so that the machine's
drift (+-20 % on this shared VM) hits all of them alike; medians are reported.

CPU utilisation: process CPU time / wall time during the defence phase of our
pipeline (the stage between the first and the last progress report of a
defence), with NLM (heavy enough to measure; ART has no NLM, so it is not in
the ART comparison), in cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from bench._common import loadavg, machine_info, write_results

BARS = {
    "vs_art": 3.0,  # pipeline throughput >= 3x the ART loop
    "defence_cores": 1.7,  # >= 1.7 cores busy during the defence phase
}
EPS = (4, 8)
N_IMAGES = 64
SIZE = 224

GRID_SPEC = f"""
name = "bench"
seed = 0
limit = {N_IMAGES}
per_image = 16
[[attacks]]
id = "fgsm"
eps = {list(EPS)}
[[defences]]
id = "none"
[[defences]]
id = "jpeg"
params = {{ quality = 75 }}
[[defences]]
id = "median"
params = {{ kernel = 3 }}
"""

NLM_SPEC = f"""
name = "bench-nlm"
seed = 0
limit = {N_IMAGES}
per_image = 0
[[attacks]]
id = "fgsm"
eps = [8]
[[defences]]
id = "nlm"
"""


def _bundle(folder: Path) -> Path:
    import keras

    from engine import datasets as ds
    from engine.models import BundleMeta, build_classifier, save_bundle

    splits = ds.load_splits("synthetic", seed=0)
    keras.utils.set_random_seed(0)
    model = build_classifier("mobilenet_v3_small", 4, weights="none", input_size=SIZE)
    meta = BundleMeta(
        dataset_id="synthetic",
        classes=list(splits["train"].classes),
        positive=["star"],
        input_size=SIZE,
        backbone="mobilenet_v3_small",
        weights="none",
        training={"seed": 0},
        data_fingerprints={k: v.fingerprint for k, v in splits.items()},
    )
    return save_bundle(model, meta, folder / "bench__mobilenet_v3_small")


def _ours(spec, bundle: Path, out: Path) -> float:
    from engine.evaluation import run_sweep

    t = time.perf_counter()
    run_sweep(spec, bundle, out, force=True)
    return time.perf_counter() - t


def _art_loops(model, x: np.ndarray, y: np.ndarray):
    """Two callables running the grid through ART: (nested, reuse); None without ART."""
    try:
        from art.attacks.evasion import FastGradientMethod
        from art.defences.preprocessor import JpegCompression, SpatialSmoothing
        from art.estimators.classification import TensorFlowV2Classifier
    except ImportError:
        print("ART is not installed (pip install adversarial-robustness-toolbox); skipping it.")
        return None
    import keras

    from engine import metrics
    from engine.gradients import logits_model

    n_classes = 4
    clf = TensorFlowV2Classifier(
        model=logits_model(model),
        nb_classes=n_classes,
        input_shape=x.shape[1:],
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 255.0),
    )
    defences = {
        "none": None,
        "jpeg": JpegCompression(clip_values=(0, 255), quality=75, channels_first=False),
        "median": SpatialSmoothing(window_size=3, channels_first=False),
    }
    xf = x.astype(np.float32)
    onehot = np.eye(n_classes, dtype=np.float32)[y]

    def softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def cell(adv: np.ndarray, d, pred_clean: np.ndarray) -> float:
        xd = adv if d is None else d(adv)[0]
        probs = softmax(clf.predict(xd, batch_size=N_IMAGES))
        return metrics.summarize(y, probs, n_classes=n_classes, pred_clean=pred_clean)["accuracy"]

    def nested() -> list[float]:
        """The straightforward nesting: every cell attacks, defends, predicts."""
        pred_clean = clf.predict(xf, batch_size=N_IMAGES).argmax(1)
        accs = []
        for eps in EPS:
            for d in defences.values():
                attack = FastGradientMethod(clf, eps=float(eps), batch_size=N_IMAGES)
                accs.append(cell(attack.generate(xf, onehot), d, pred_clean))
        return accs

    def reuse() -> list[float]:
        """Hand-optimised: one attack per budget, reused by every defence (as ours does)."""
        pred_clean = clf.predict(xf, batch_size=N_IMAGES).argmax(1)
        accs = []
        for eps in EPS:
            attack = FastGradientMethod(clf, eps=float(eps), batch_size=N_IMAGES)
            adv = attack.generate(xf, onehot)
            accs.extend(cell(adv, d, pred_clean) for d in defences.values())
        return accs

    return nested, reuse


def _serial_loop(model, x: np.ndarray, y: np.ndarray):
    """Per image: attack one image, defend one image, predict one image (our engine)."""
    from engine import defences, metrics
    from engine.attacks import run_attack
    from engine.gradients import predict

    settings = [
        defences.make_defence(d, p) for d, p in (("none", {}), ("jpeg", {}), ("median", {}))
    ]

    def run() -> None:
        pred_clean = np.array([predict(model, x[i : i + 1])[0].argmax() for i in range(len(x))])
        for eps in EPS:
            for d in settings:
                probs = []
                for i in range(len(x)):
                    adv = run_attack("fgsm", model, x[i : i + 1], y[i : i + 1], {"eps": eps})
                    probs.append(predict(model, d(adv[0])[None])[0])
                metrics.summarize(y, np.array(probs), n_classes=4, pred_clean=pred_clean)

    return run


def _defence_cores(spec, bundle: Path, out: Path) -> tuple[float, float]:
    """(cores, seconds) of the NLM defence phase of one pipeline run."""
    from engine.evaluation import run_sweep

    marks: dict[str, tuple[float, float]] = {}

    def stage(name: str, done: int, total: int) -> None:
        if name.startswith("defence"):
            if done == 0:
                marks["start"] = (time.perf_counter(), time.process_time())
            elif done == total:
                marks["end"] = (time.perf_counter(), time.process_time())

    run_sweep(spec, bundle, out, force=True, stage_progress=stage)
    wall = marks["end"][0] - marks["start"][0]
    cpu = marks["end"][1] - marks["start"][1]
    return cpu / wall, wall


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0 even when a bar is missed (it is reported)."""
    p = argparse.ArgumentParser(prog="python -m bench.recap", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-art", action="store_true", help="skip the ART reference")
    p.add_argument("--no-serial", action="store_true", help="skip the naive serial loop")
    p.add_argument("--out", default="bench/results/recap.json")
    args = p.parse_args(argv)

    import cv2
    import tensorflow as tf

    from engine import datasets as ds
    from engine.evaluation import parse_spec
    from engine.models import load_bundle

    tmp = Path(tempfile.mkdtemp(prefix="bench_recap_"))
    bundle = _bundle(tmp)
    grid = parse_spec(GRID_SPEC, source="<bench grid>")
    nlm = parse_spec(NLM_SPEC, source="<bench nlm>")
    settings = sum(1 for _ in EPS) * len(grid.defences)
    evaluations = N_IMAGES * settings

    # The same images and model object for the references (loaded once, not timed).
    split = ds.load_splits("synthetic", seed=0)["test"]
    x, y = ds.load_arrays(split, SIZE, limit=N_IMAGES, seed=0)
    model = load_bundle(bundle).model

    cold = _ours(grid, bundle, tmp / "ours")  # model load + tracing
    art = None if args.no_art else _art_loops(model, x, y)
    art_nested, art_reuse = art if art is not None else (None, None)
    serial = None if args.no_serial else _serial_loop(model, x, y)
    refs = {"art_nested": art_nested, "art_reuse": art_reuse, "serial": serial}
    for fn in refs.values():
        if fn is not None:
            fn()  # warm-up (ART's first calls; single-image shapes for the serial loop)

    times: dict[str, list[float]] = {"ours": [], **{k: [] for k in refs}}
    for _ in range(args.repeats):
        times["ours"].append(_ours(grid, bundle, tmp / "ours"))
        for name, fn in refs.items():
            if fn is not None:
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    cores = [_defence_cores(nlm, bundle, tmp / "nlm") for _ in range(args.repeats)]

    def rate(name: str) -> float | None:
        return evaluations / statistics.median(times[name]) if times[name] else None

    results: dict = {
        **machine_info(
            loadavg_1m_at_end=loadavg(), tensorflow=tf.__version__, opencv=cv2.__version__
        ),
        "grid": {
            "model": "mobilenet_v3_small (random weights), 224x224, 4 classes",
            "images": N_IMAGES,
            "attack": "fgsm",
            "eps": list(EPS),
            "defences": [d.key for d in grid.defences],
            "evaluations": evaluations,
        },
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "cold_first_run_s": round(cold, 3),
        "throughput_per_s": {k: (round(r, 1) if r else None) for k in times if (r := rate(k))},
        "defence_phase": {
            "defence": "nlm (defaults)",
            "images": N_IMAGES,
            "cores": [round(c, 2) for c, _ in cores],
            "seconds": [round(w, 3) for _, w in cores],
            "median_cores": round(statistics.median(c for c, _ in cores), 2),
        },
    }
    results["bars"] = _bars(results)
    write_results(results, _table(results), args.out)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _bars(results: dict) -> list[tuple[str, bool, str]]:
    out = []
    tp = results["throughput_per_s"]
    # The reference is the straightforward ART loop: attack and defend every cell.
    if tp.get("art_nested"):
        r = tp["ours"] / tp["art_nested"]
        out.append(
            ("pipeline vs straightforward ART loop", r >= BARS["vs_art"], f"{r:.2f}x (bar >= 3x)")
        )
    c = results["defence_phase"]["median_cores"]
    out.append(("cores busy in the defence phase", c >= BARS["defence_cores"], f"{c} (bar >= 1.7)"))
    return out


def _table(results: dict) -> str:
    g = results["grid"]
    lines = [
        "",
        f"Recap pipeline: {g['images']} images x {len(g['eps'])} eps x "
        f"{len(g['defences'])} defences = {g['evaluations']} evaluations "
        f"({g['model']}, CPU x{results['machine']['cpus']})",
        "",
        f"{'loop':<36}{'median s':>10}{'eval/s':>10}{'speed-up':>10}",
    ]
    names = {
        "ours": "ours (engine.evaluation.run_sweep)",
        "art_nested": "ART nested loop (attack per cell)",
        "art_reuse": "ART loop, attack once per eps",
        "serial": "naive serial loop (our engine)",
    }
    ours = results["throughput_per_s"]["ours"]
    for key, label in names.items():
        secs = results["seconds"][key]
        if not secs:
            continue
        rate = results["throughput_per_s"][key]
        lines.append(
            f"{label:<36}{statistics.median(secs):>10.2f}{rate:>10.1f}{ours / rate:>9.2f}x"
        )
    d = results["defence_phase"]
    lines += [
        "",
        f"cold first run (model load + tracing): {results['cold_first_run_s']:.2f} s",
        f"defence phase (NLM, {d['images']} images): {d['median_cores']} cores "
        f"(runs: {d['cores']}, {d['seconds']} s)",
        f"1-minute load average at the end: {results['machine']['loadavg_1m_at_end']}",
        "",
        "Bars:",
    ]
    for name, ok, text in results["bars"]:
        lines.append(f"  [{'PASS' if ok else 'FAIL'}] {name}: {text}")
    if results["throughput_per_s"].get("art_reuse"):
        r = ours / results["throughput_per_s"]["art_reuse"]
        lines += [
            "",
            f"For information, against a hand-optimised ART loop that attacks once per eps and "
            f"reuses the images: {r:.2f}x.",
            "Both then spend most of their time in the same model forward passes, which caps "
            "this ratio; the bar is set against the straightforward loop.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
