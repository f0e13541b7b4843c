"""How long a Live-lab click waits while another session runs an Explorer sweep.

Run with ``python -m bench.worker_fairness``. One :class:`app.worker.ModelWorker`
serves two "sessions" (threads), as ``st.cache_resource`` shares it in the
dashboard: one runs a 64-image mini sweep (FGSM over a few budgets, with and
without a defence), the other clicks the Live lab (one FGSM request) again and
again until the sweep ends. Printed, for each of ``--rounds`` rounds and in
total: the lab round trip alone (median, max), the lab round trip while the
sweep runs (median, max, how many clicks were answered before the sweep
ended) and the sweep's own time alone and with the clicks.

The model is the shipped ``chest_xray__mobilenet_v3_large`` bundle (another
with ``--model``); the images are random pixels at the model's input size
(the timing does not depend on them).
The table goes to stdout and ``bench/results/worker_fairness.json``;
``bench/results/worker_fairness_dfc247c.json`` is the same measurement of the
worker before its fair turns (commit dfc247c: one plain lock, and the whole
sweep in one request).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from bench._common import loadavg, machine_info, write_results

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "assets" / "models" / "chest_xray__mobilenet_v3_large"
EPS_VALUES = [0.0, 2.0, 4.0, 8.0]
DEFENCES = [None, "median"]
LAB_REQUEST = {"attack": "fgsm", "attack_params": {"eps": 8}, "defence": "median"}


def _images(n: int, size: int, k: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return list(x), rng.integers(0, k, n)


def _ms_stats(ms: list[float]) -> dict:
    return {
        "median_ms": round(statistics.median(ms), 1) if ms else None,
        "max_ms": round(max(ms), 1) if ms else None,
        "n": len(ms),
    }


def _lab_ms(worker, model: str, image: np.ndarray) -> float:
    t = time.perf_counter()
    worker.lab(model, image, **LAB_REQUEST)
    return (time.perf_counter() - t) * 1000.0


def _sweep(worker, model: str, images, labels, started: threading.Event | None = None) -> float:
    def progress(done: int, total: int, message: str) -> None:
        if started is not None:
            started.set()

    t = time.perf_counter()
    worker.mini_sweep(
        model,
        images,
        labels,
        attack="fgsm",
        eps_values=EPS_VALUES,
        defences=DEFENCES,
        progress=progress,
    )
    return time.perf_counter() - t


def _round(worker, model: str, image: np.ndarray, images, labels) -> dict:
    """One sweep in a thread, lab clicks from this thread until the sweep ends."""
    started = threading.Event()
    out: dict = {}

    def session_a() -> None:
        out["sweep_s"] = _sweep(worker, model, images, labels, started)

    thread = threading.Thread(target=session_a, name="sweep-session")
    t0 = time.perf_counter()
    thread.start()
    started.wait(600)
    waits, before_end = [], 0
    while thread.is_alive():
        waits.append(_lab_ms(worker, model, image))
        before_end += thread.is_alive()
    thread.join()
    out["wall_s"] = time.perf_counter() - t0
    out["lab_during"] = waits
    out["answered_before_sweep_end"] = before_end
    return out


def run(model: Path, n: int, rounds: int, alone_calls: int) -> dict:
    """Measure; return a JSON-able dict (see the module docstring)."""
    from app.worker import ModelWorker

    worker = ModelWorker()
    try:
        info = worker.load(str(model))
        images, labels = _images(n, info["input_size"], len(info["classes"]))
        image = images[0]
        _lab_ms(worker, info["path"], image)  # warm-up: the lab's shapes,
        _sweep(worker, info["path"], images, labels)  # and the sweep's 64-image batches
        alone = [_lab_ms(worker, info["path"], image) for _ in range(alone_calls)]
        sweep_alone = _sweep(worker, info["path"], images, labels)
        per_round = [_round(worker, info["path"], image, images, labels) for _ in range(rounds)]
    finally:
        worker.close()
    during = [w for r in per_round for w in r["lab_during"]]
    return {
        "model": model.name,
        "images": n,
        "eps_values": EPS_VALUES,
        "defences": [str(d) for d in DEFENCES],
        "lab_alone": _ms_stats(alone),
        "lab_during_sweep": _ms_stats(during),
        "answered_before_sweep_end": sum(r["answered_before_sweep_end"] for r in per_round),
        "sweep_alone_s": round(sweep_alone, 2),
        "sweep_with_clicks_s": [round(r["sweep_s"], 2) for r in per_round],
        "rounds": [
            {**_ms_stats(r["lab_during"]), "sweep_s": round(r["sweep_s"], 2)} for r in per_round
        ],
    }


def _table(res: dict) -> str:
    a, d = res["lab_alone"], res["lab_during_sweep"]
    lines = [
        f"Lab wait under a concurrent {res['images']}-image sweep ({res['model']}, "
        f"random pixels; eps {res['eps_values']} x defences {res['defences']})",
        f"  {'':<34}{'median ms':>11}{'max ms':>10}{'clicks':>8}",
        f"  {'lab alone':<34}{a['median_ms']:>11}{a['max_ms']:>10}{a['n']:>8}",
        f"  {'lab during the sweep':<34}{d['median_ms']:>11}{d['max_ms']:>10}{d['n']:>8}",
        f"  clicks answered before the sweep ended: {res['answered_before_sweep_end']}",
        f"  sweep alone {res['sweep_alone_s']:.1f} s; with the clicks "
        + ", ".join(f"{s:.1f}" for s in res["sweep_with_clicks_s"])
        + " s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    p = argparse.ArgumentParser(
        prog="python -m bench.worker_fairness", description=__doc__.split("\n")[0]
    )
    p.add_argument("--model", type=Path, default=MODEL, help="bundle folder")
    p.add_argument("--images", type=int, default=64, help="images in the sweep")
    p.add_argument("--rounds", type=int, default=2, help="sweeps with concurrent clicks")
    p.add_argument("--alone", type=int, default=10, help="lab calls without a sweep")
    p.add_argument("--out", default="bench/results/worker_fairness.json")
    args = p.parse_args(argv)
    results = {**machine_info(loadavg_1m_at_start=loadavg())}
    results["fairness"] = run(args.model, args.images, args.rounds, args.alone)
    results["machine"]["loadavg_1m_at_end"] = loadavg()
    write_results(results, _table(results["fairness"]), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
