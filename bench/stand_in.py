"""BPDA stand-ins: the identity or a Gaussian blur's backward pass, which attacks a filter better?

Run with ``python -m bench.stand_in``. Prints a table and writes
``bench/results/stand_in.json``.

An adaptive attack through a defence with no useful gradient replaces the
defence's backward pass by a stand-in (BPDA; Athalye, Carlini & Wagner 2018,
section 4.1: any differentiable ``g`` with ``g(x) ~ D(x)``). The engine's
default is the straight-through identity; ``run_attack(...,
stand_in="gaussian", stand_in_sigma=s)`` uses the exact backward pass (the
adjoint) of a Gaussian blur of sigma ``s`` instead, for the BPDA members of
the defence only (:class:`engine.attacks.adaptive.StandIn`). A smoothing
filter looks more like a blur than like the identity, so the Gaussian may
point the attack better; this script measures whether it does.

Model and images: the shipped ``chest_xray__mobilenet_v3_large`` bundle at its
input size (160x160), on a seeded stratified subset of 64 Kermany test images
when ``../shared/data`` (or another data root) has them, else on random
pixels with random labels (the output says which; the accuracies then mean
nothing). Loaded as :mod:`bench.adaptive` loads them.

Measured, for each defence (NLM with h = h_color = 10; bilateral with d 9,
sigma_color 75, sigma_space 75; the 3x3 median; the seed chain NLM →
bilateral → guided filter with default settings) and each budget eps in
{2, 4}: adaptive PGD-10 (step size ``max(0.5, 2.5 * eps / 10)``, random start
with seed 0) crafted through the defence with the identity stand-in and with
the Gaussian stand-in (sigma 1, :data:`SIGMA`). The adversarial images go
through the deployed defence and the model:

* **accuracy** (%) through the defence: lower is a stronger attack;
* **mean cross-entropy** of the true class through the defence: higher is a
  stronger attack (it separates stand-ins whose accuracies tie, e.g. both 0 %);
* seconds per attack (the Gaussian's backward pass adds two small matrix
  products per image and channel at every step).

The stronger stand-in of a ``(defence, eps)`` is the one with the lower
accuracy, the higher loss where the accuracies tie; of a defence, the one
with the lower accuracy summed over the budgets (then the summed loss).
Clean accuracy through each defence is reported for scale.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from bench._common import loadavg, machine_info, write_results
from bench.adaptive import BUNDLE, _images

EPS = (2.0, 4.0)
STEPS = 10
SIGMA = 1.0  # the Gaussian stand-in's sigma (pixels)
STAND_INS = ("identity", "gaussian")
DEFENCES = (  # (name, defence id or "seed_chain", parameters)
    ("NLM", "nlm", {"h": 10.0, "h_color": 10.0}),
    ("Bilateral", "bilateral", {"d": 9, "sigma_color": 75.0, "sigma_space": 75.0}),
    ("Median 3x3", "median", {"kernel": 3}),
    ("Seed chain", "seed_chain", {}),
)


def _pgd(eps: float) -> dict:
    """PGD-10 at ``eps``: the default spec's step rule, a random start with seed 0."""
    return {
        "eps": eps,
        "steps": STEPS,
        "step_size": max(0.5, 2.5 * eps / STEPS),
        "random_start": True,
        "seed": 0,
    }


def _defence(kind: str, params: dict):
    from engine.defences import make_defence, seed_chain

    return seed_chain() if kind == "seed_chain" else make_defence(kind, params)


def _through(model, defence, images: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Accuracy (%) and mean true-class cross-entropy of ``images`` through ``defence``."""
    from engine.gradients import compiled

    logits = compiled(model).logits(defence(images).astype(np.float32)).astype(np.float64)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(len(y)), y]
    acc = 100.0 * float(np.mean(logits.argmax(axis=1) == y))
    return round(acc, 1), round(float(loss.mean()), 4)


def _stronger(a: tuple[float, float], b: tuple[float, float], names: tuple[str, str]) -> str:
    """The name whose (accuracy, loss) is the stronger attack: lower accuracy, then higher loss."""
    if a[0] != b[0]:
        return names[0] if a[0] < b[0] else names[1]
    if a[1] != b[1]:
        return names[0] if a[1] > b[1] else names[1]
    return "tie"


def bench_defence(model, name: str, defence, x: np.ndarray, y: np.ndarray, sigma: float) -> dict:
    """Both stand-ins through one defence at every budget."""
    from engine.attacks import run_attack
    from engine.attacks.adaptive import StandIn, threat_label
    from engine.defences import describe

    clean_acc, clean_loss = _through(model, defence, x, y)
    out: dict = {
        "defence": describe(defence),
        "backward": defence.backward,
        "clean_accuracy": clean_acc,
        "clean_loss": clean_loss,
        "labels": {
            s: threat_label(defence, 1, StandIn(stand_in=s, stand_in_sigma=sigma))
            for s in STAND_INS
        },
        "eps": {},
    }
    for eps in EPS:
        row: dict = {"params": _pgd(eps)}
        for s in STAND_INS:
            t = time.perf_counter()
            adv = run_attack(
                "pgd", model, x, y, _pgd(eps), defence=defence, stand_in=s, stand_in_sigma=sigma
            )
            seconds = time.perf_counter() - t
            acc, loss = _through(model, defence, adv, y)
            row[s] = {"accuracy": acc, "loss": loss, "seconds": round(seconds, 2)}
            print(f"  {name}, eps {eps:g}, {s}: {acc:.1f} % ({seconds:.0f} s)", flush=True)
        row["stronger"] = _stronger(
            (row["identity"]["accuracy"], row["identity"]["loss"]),
            (row["gaussian"]["accuracy"], row["gaussian"]["loss"]),
            STAND_INS,
        )
        out["eps"][f"{eps:g}"] = row
    rows = out["eps"].values()
    totals = {
        s: (
            round(sum(r[s]["accuracy"] for r in rows), 1),
            round(sum(r[s]["loss"] for r in rows), 4),
        )
        for s in STAND_INS
    }
    out["summed"] = {s: {"accuracy": a, "loss": lo} for s, (a, lo) in totals.items()}
    out["stronger"] = _stronger(totals["identity"], totals["gaussian"], STAND_INS)
    return out


def _table(results: dict) -> str:
    m = results["machine"]
    g = f"gaussian σ{results['sigma']:g}"
    lines = [
        "",
        f"BPDA stand-ins: adaptive PGD-{STEPS} (random start, seed 0) through each defence, "
        f"{results['images']} images at {results['size']}x{results['size']}, "
        f"{results['model']}, CPU x{m['cpus']}",
        f"images: {results['data']}",
        "",
        "Accuracy (%) through the defence (lower = stronger attack); loss = mean "
        "cross-entropy of the true class (higher = stronger)",
        f"{'defence':<12}{'clean':>7}{'eps':>5}{'identity':>10}{g:>15}{'Δ pts':>7}"
        f"{'loss id':>9}{'loss g':>9}{'s id':>6}{'s g':>6}  stronger",
    ]
    for name, r in results["defences"].items():
        for i, (eps, row) in enumerate(r["eps"].items()):
            ident, gauss = row["identity"], row["gaussian"]
            lines.append(
                f"{name if i == 0 else '':<12}"
                + (f"{r['clean_accuracy']:>7.1f}" if i == 0 else f"{'':>7}")
                + f"{eps:>5}{ident['accuracy']:>10.1f}{gauss['accuracy']:>15.1f}"
                f"{gauss['accuracy'] - ident['accuracy']:>+7.1f}"
                f"{ident['loss']:>9.3f}{gauss['loss']:>9.3f}"
                f"{ident['seconds']:>6.0f}{gauss['seconds']:>6.0f}  {row['stronger']}"
            )
    lines += ["", "Stronger stand-in per defence (accuracy summed over eps, then loss):"]
    for name, r in results["defences"].items():
        s = r["summed"]
        lines.append(
            f"  {name:<12}{r['stronger']:<10} (identity {s['identity']['accuracy']:.1f}, "
            f"gaussian {s['gaussian']['accuracy']:.1f} accuracy points summed)"
        )
    labels = next(iter(results["defences"].values()))["labels"]
    lines += [
        "",
        "Threat-model labels: " + "; ".join(repr(v) for v in labels.values()),
        "",
        f"1-minute load average: {m['loadavg_1m_at_start']} at the start, "
        f"{m['loadavg_1m_at_end']} at the end (2 cores shared with other work)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    p = argparse.ArgumentParser(prog="python -m bench.stand_in", description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=64, help="images (one batch)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image subset")
    p.add_argument("--sigma", type=float, default=SIGMA, help="sigma of the Gaussian stand-in")
    p.add_argument("--out", default="bench/results/stand_in.json")
    args = p.parse_args(argv)
    import cv2
    import tensorflow as tf

    from engine.models import load_bundle

    head = machine_info(
        loadavg_1m_at_start=loadavg(), tensorflow=tf.__version__, opencv=cv2.__version__
    )
    bundle = load_bundle(BUNDLE)
    size = bundle.meta.input_size
    x, y, data = _images(args.images, size, args.seed)
    defences = {}
    for name, kind, params in DEFENCES:
        defences[name] = bench_defence(bundle.model, name, _defence(kind, params), x, y, args.sigma)
    head["machine"]["loadavg_1m_at_end"] = loadavg()
    results: dict = {
        **head,
        "model": BUNDLE.rsplit("/", 1)[-1],
        "size": size,
        "images": len(x),
        "data": data,
        "steps": STEPS,
        "sigma": args.sigma,
        "defences": defences,
    }
    write_results(results, _table(results), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
