"""Convergence of the shipped adaptive PGD: does doubling the steps change the result?

Carlini et al. 2019 (§4.2, "verify that the attack has converged"): an
iterative attack whose accuracy still falls when it is given more iterations
has not converged, and the robustness it reports is too high. The adaptive
sweeps ship PGD with 10 steps (``assets/specs/adaptive.toml``); this script
recomputes chosen adaptive PGD cells of a shipped adaptive sweep with twice
the steps, on the same images, the same random start, EOT samples and
restarts, the same first step (the spec's rule ``max(min, factor * eps /
steps)`` with its factor scaled by the steps, so a ``step_decay`` schedule
is stretched over the longer run), and compares the accuracy with the stored
row. The adaptive cells' attack is the ``[[adaptive]]`` entry's own (its
``params`` over the ``[[attacks]]`` table).

Run::

    python -m bench.convergence                        # chest X-ray, eps 2 and 8
    python -m bench.convergence --results assets/results/synthetic__tiny/adaptive \\
        --model assets/models/synthetic__tiny --eps 1 2 4 8

Prints a table (setting, eps, stored accuracy with 10 steps, with 20, the
change in points) and writes ``bench/results/convergence_<model>.json``.
``--base-steps N`` recomputes the base with N steps instead of reading the
stored rows (then the file is ``convergence_<model>_pgdN.json``): whether N
steps would converge where the shipped 10 do not. The
bar of the issue is a change under 1 point for every cell. ``--defences``
restricts the settings (keys as in the results table); by default every
adaptive setting of the sweep is checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench._common import loadavg, machine_info, write_results

ROOT = Path(__file__).resolve().parents[1]
CHEST = "chest_xray__mobilenet_v3_large"


def _with_steps(attack: Any, steps: int, shipped: int) -> Any:
    """``attack`` with ``steps`` steps and, under a step rule, the shipped first step.

    The rule ``max(min, factor * eps / steps)`` is scaled with the steps, so the
    first step is the sweep's and a ``step_decay`` schedule is stretched over
    the longer run: the same attack, given more iterations.
    """
    params = {**attack.params, "steps": steps}
    rule = attack.step_rule
    if rule is not None:
        rule = (rule[0] * steps / shipped, rule[1])
    return dataclasses.replace(attack, params=params, step_rule=rule)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=f"assets/results/{CHEST}/adaptive")
    ap.add_argument("--model", default=f"assets/models/{CHEST}")
    ap.add_argument("--eps", type=float, nargs="+", default=[2.0, 8.0])
    ap.add_argument("--defences", nargs="*", default=None, help="defence keys (default: all)")
    ap.add_argument("--factor", type=int, default=2, help="multiply the steps by this")
    ap.add_argument(
        "--base-steps",
        type=int,
        default=None,
        help="recompute the base with this many steps instead of reading the stored rows",
    )
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)

    import pandas as pd

    from engine.evaluation import cell as sweep
    from engine.evaluation.keys import NO_DEFENCE
    from engine.evaluation.manifest import recorded_spec
    from engine.evaluation.results import load_manifest
    from engine.models import read_meta
    from engine.threat import is_adaptive

    out = ROOT / args.results
    manifest = load_manifest(out)
    spec = recorded_spec(manifest)
    table = pd.read_csv(out / "results.csv")
    rows = table[(table["attack"] == "pgd") & table["threat_model"].map(is_adaptive)]
    rows = rows[rows["eps"].isin(args.eps)]
    if args.defences:
        rows = rows[rows["defence_key"].isin(args.defences)]
    rows = rows[rows["defence_key"] != NO_DEFENCE]
    if rows.empty:
        raise SystemExit("No adaptive PGD cell matches; check --eps and --defences.")
    entry = spec.adaptive_for("pgd")
    attack = entry.attack  # the adaptive cells' own attack ([[adaptive]] params on top)
    shipped = int(attack.params_at(max(args.eps))["steps"])
    steps = args.base_steps or shipped
    base = _with_steps(attack, steps, shipped)
    longer = _with_steps(attack, args.factor * steps, shipped)

    meta = read_meta(ROOT / args.model)
    index, indices = sweep.select(spec, meta, data_root=args.data_root)
    if not np.array_equal(indices, np.asarray(manifest["data"]["indices"])):
        raise SystemExit("The images found here are not the sweep's: check --data-root.")
    prep = sweep.prepare(spec, ROOT / args.model, selected=(index, indices))
    found = []
    t0 = time.perf_counter()
    for _, row in tqdm(list(rows.iterrows()), desc="cells", unit="cell"):
        setting = spec.defence(str(row["defence_key"]))
        eps = float(row["eps"])
        adv, _ = sweep.attack_images(prep, longer, eps, through=(entry, setting))
        result = sweep.evaluate_cell(prep, adv, setting)
        acc = float(result["metrics"]["accuracy"])
        stored = float(row["accuracy"])
        if args.base_steps is not None:
            adv, _ = sweep.attack_images(prep, base, eps, through=(entry, setting))
            stored = float(sweep.evaluate_cell(prep, adv, setting)["metrics"]["accuracy"])
        found.append(
            {
                "defence_key": setting.key,
                "eps": eps,
                "steps": steps,
                "accuracy": stored,
                "steps_more": args.factor * steps,
                "accuracy_more": acc,
                "change_points": round(100 * (acc - stored), 2),
            }
        )
    worst = max(abs(f["change_points"]) for f in found)
    lines = [
        f"Adaptive PGD, {steps} vs {args.factor * steps} steps, {prep.x.shape[0]} images "
        f"({meta.dataset_id}, {manifest['model']['id']})",
        f"{'setting':<46} {'eps':>4} {f'PGD-{steps}':>8} {f'PGD-{args.factor * steps}':>8} "
        f"{'change':>8}",
    ]
    for f in found:
        lines.append(
            f"{f['defence_key']:<46} {f['eps']:>4g} {f['accuracy']:>8.1%} "
            f"{f['accuracy_more']:>8.1%} {f['change_points']:>+7.1f}p"
        )
    verdict = "converged (< 1 point)" if worst < 1 else "NOT converged: use more steps"
    lines.append(f"largest change: {worst:.1f} points: {verdict}")
    results = {
        **machine_info(load_after=loadavg()),
        "results": str(args.results),
        "n_images": int(prep.x.shape[0]),
        "seconds": round(time.perf_counter() - t0, 1),
        "spec_sha256": manifest["spec"]["sha256"],
        "cells": found,
        "largest_change_points": worst,
        "converged": worst < 1,
    }
    name = manifest["model"]["id"] + ("" if args.base_steps is None else f"_pgd{steps}")
    write_results(
        results, "\n".join(lines), ROOT / "bench" / "results" / f"convergence_{name}.json"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
