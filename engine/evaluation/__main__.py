"""``python -m engine.evaluation``: run, resume, extend, check or reproduce a recap sweep.

Usage::

    python -m engine.evaluation --spec assets/specs/default.toml --model BUNDLE --out DIR
    python -m engine.evaluation --spec ... --model BUNDLE --out DIR --limit 200   # fewer images
    python -m engine.evaluation --spec ... --model BUNDLE --out DIR --force       # start over
    python -m engine.evaluation --model BUNDLE --out DIR --only pgd:8:jpeg:quality=75
    python -m engine.evaluation --model BUNDLE --out DIR --only pgd:8:jpeg:quality=75 \\
        --threat adaptive                        # an adaptive cell: crafted through jpeg
    python -m engine.evaluation --model BUNDLE --out DIR --check

Exit status: 0 on success (``--only``: the cell was reproduced exactly;
``--check``: the results are fresh), 1 when ``--only`` finds a difference or
``--check`` finds the results stale, 2 for a user error (the message starts
with ``error:``), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

from engine.errors import ParamError, run_cli
from engine.evaluation.spec import SweepOptions
from engine.params import add_options, check_values
from engine.threat import ADAPTIVE, TRANSFER

log = logging.getLogger("engine.evaluation")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m engine.evaluation`` argument parser (``--limit`` from its declaration)."""

    p = argparse.ArgumentParser(
        prog="python -m engine.evaluation",
        description="Precompute recap curves: every attack budget through every defence "
        "setting of a sweep spec, for one model bundle.",
    )
    p.add_argument("--spec", help="sweep spec (TOML), e.g. assets/specs/default.toml")
    p.add_argument("--model", required=True, help="model bundle folder")
    p.add_argument("--out", required=True, help="results folder (created; resumable)")
    p.add_argument("--data-root", default=None, help="folder holding the datasets")
    add_options(p, SweepOptions, only=("limit",))
    p.add_argument(
        "--force", action="store_true", help="delete results of a different sweep in --out"
    )
    p.add_argument(
        "--only",
        metavar="ATTACK:EPS:DEFENCE",
        default=None,
        help="recompute one stored cell in memory and compare (DEFENCE is its key, "
        "e.g. jpeg:quality=75, or its id when unique); --limit N checks the first N images",
    )
    p.add_argument(
        "--threat",
        choices=(TRANSFER.id, ADAPTIVE.id),
        default=TRANSFER.id,
        help="with --only: the cell's threat model (adaptive: crafted through its defence)",
    )
    p.add_argument(
        "--check", action="store_true", help="say whether --out is stale for --model; exit 1 if so"
    )
    return p


class _Bars:
    """Two tqdm bars on stderr: overall cells (with ETA) and the current stage."""

    def __init__(self) -> None:
        self.cells: tqdm | None = None
        self.stage: tqdm | None = None
        self.stage_name = ""

    def overall(self, done: int, total: int) -> None:
        if self.cells is None:
            self.cells = tqdm(
                total=total,
                initial=done,
                desc="cells",
                unit="cell",
                file=sys.stderr,
                dynamic_ncols=True,
                position=0,
            )
        self.cells.n = done
        self.cells.refresh()

    def step(self, name: str, done: int, total: int) -> None:
        if self.stage is None or name != self.stage_name:
            if self.stage is not None:
                self.stage.close()
            self.stage_name = name
            self.stage = tqdm(
                total=total,
                desc=name,
                unit="img",
                file=sys.stderr,
                dynamic_ncols=True,
                position=1,
                leave=False,
            )
        self.stage.n = done
        self.stage.refresh()

    def close(self) -> None:
        for bar in (self.stage, self.cells):
            if bar is not None:
                bar.close()


@contextmanager
def _bars() -> Iterator[_Bars]:
    bars = _Bars()
    try:
        yield bars
    finally:
        bars.close()


def _parse_only(text: str) -> tuple[str, float, str]:
    parts = text.split(":", 2)
    if len(parts) != 3:
        raise ParamError(f"--only must be ATTACK:EPS:DEFENCE, e.g. fgsm:8:none; got {text!r}.")
    try:
        eps = float(parts[1])
    except ValueError:
        raise ParamError(f"--only: EPS must be a number; got {parts[1]!r}.") from None
    return parts[0], eps, parts[2]


def _reproduce(args: argparse.Namespace) -> int:
    from engine.evaluation.results import reproduce_cell

    attack, eps, defence = _parse_only(args.only)
    res = reproduce_cell(
        args.out,
        args.model,
        attack,
        eps,
        defence,
        data_root=args.data_root,
        limit=args.limit,
        threat=args.threat,
    )
    print(
        f"cell {res['attack']}:{res['eps']:g}:{res['defence_key']} ({res['threat']}) "
        f"on {res['n_images']} images"
    )
    print(f"  stored per-image records compared: {res['per_image_checked']}")
    print(f"  predicted classes that differ: {res['pred_mismatches']}")
    for key, diff in res["max_abs_diff"].items():
        print(f"  {key:<24} max |diff| = {diff:.3g}")
    print("identical" if res["identical"] else "DIFFERENT")
    return 0 if res["identical"] else 1


def _check(args: argparse.Namespace) -> int:
    from engine.evaluation.results import check_stale

    reasons = check_stale(args.out, args.model)
    for r in reasons:
        print(f"stale: {r}")
    if not reasons:
        print(f"{args.out} is up to date.")
    return 1 if reasons else 0


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from engine.evaluation.sweep import run_sweep

    if not args.spec:
        raise ParamError("--spec is required to run a sweep.")
    again = [a for a in argv if a != "--force"]
    command = "python -m engine.evaluation " + " ".join(shlex.quote(a) for a in again)
    try:
        with _bars() as bars:
            out = run_sweep(
                args.spec,
                args.model,
                args.out,
                data_root=args.data_root,
                limit=args.limit,
                force=args.force,
                progress=bars.overall,
                stage_progress=bars.step,
            )
    except KeyboardInterrupt:
        print(
            f"\nInterrupted. Finished cells are saved in {os.path.join(args.out, 'cells')}; "
            f"run the same command again to continue:\n  {command}",
            file=sys.stderr,
        )
        return 130
    from engine.evaluation.results import load_manifest

    m = load_manifest(out)
    print(
        f"{m['status']}: {m['rows']} rows, {m['cells']['done']}/{m['cells']['total']} cells "
        f"in {out} ({m['elapsed_s']:.0f} s in total)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def body() -> int:
        check_values(SweepOptions, {"limit": args.limit}, "python -m engine.evaluation")
        if args.only:
            return _reproduce(args)
        return _check(args) if args.check else _run(args, argv)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
