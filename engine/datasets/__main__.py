"""Command line: ``python -m engine.datasets list`` and ``... info ID``.

``ID`` may also be the path of a folder of class sub-folders. Errors print
their message (no traceback) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from engine.datasets.base import DatasetSpec, class_counts, data_roots, find_dataset_dir
from engine.datasets.registry import REGISTRY, get_dataset, load_splits
from engine.errors import EngineError


def _where(spec: DatasetSpec, root: str | None) -> str:
    if spec.generated:
        return "generated in code (no files needed)"
    try:
        found = find_dataset_dir(spec, root)
    except EngineError:
        return "not found"
    return f"found at {found}"


def _sizes(spec: DatasetSpec, root: str | None, seed: int | None) -> str:
    splits = load_splits(spec, root=root, seed=seed)
    return ", ".join(f"{name} {len(index)}" for name, index in splits.items())


def cmd_list(root: str | None, seed: int | None) -> None:
    """Print every registered dataset, whether it is available and its split sizes."""
    print("Data roots searched: " + ", ".join(str(r) for r in data_roots(root)))
    for spec in REGISTRY.values():
        print(f"\n{spec.id}: {spec.title}")
        print(f"  classes: {', '.join(spec.classes) or 'discovered from the folder'}")
        where = _where(spec, root)
        print(f"  {where}")
        if where != "not found":
            try:
                print(f"  splits: {_sizes(spec, root, seed)}")
            except EngineError as exc:
                print("  cannot be loaded: " + str(exc).replace("\n", "\n    "))


def cmd_info(name: str, root: str | None, seed: int | None) -> None:
    """Print the details of one dataset."""
    spec = get_dataset(name)
    wrap = textwrap.TextWrapper(width=88, initial_indent="  ", subsequent_indent="  ")
    print(f"{spec.id}: {spec.title}")
    print(f"  classes: {', '.join(spec.classes) or 'discovered from the folder'}")
    if spec.class_titles:
        for c in spec.classes:
            print(f"    {c}: {spec.class_title(c)}")
    if spec.medical:
        print(f"  positive (sick) classes: {', '.join(spec.positive)}")
    for label, text in (
        ("description", spec.description),
        ("licence", spec.licence),
        ("attribution", spec.attribution),
        ("caveat", spec.caveat),
    ):
        if text:
            print(f"{label}:")
            print(wrap.fill(text))
    where = _where(spec, root)
    print(f"location: {where}")
    if where == "not found":
        print("how to get it:")
        print(textwrap.indent(spec.how_to_get, "  "))
        print("looked in data roots: " + ", ".join(str(r) for r in data_roots(root)))
        return
    splits = load_splits(spec, root=root, seed=seed)
    print("splits:")
    for split, index in splits.items():
        counts = ", ".join(f"{c} {n}" for c, n in class_counts(index).items())
        print(f"  {split}: {len(index)} ({counts}); fingerprint {index.fingerprint}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m engine.datasets", description="RobustLens datasets."
    )
    parser.add_argument("--root", help="a data root to search first")
    parser.add_argument("--seed", type=int, default=None, help="split seed (default 0)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list every dataset and whether it is available")
    info = sub.add_parser("info", help="details of one dataset")
    info.add_argument("id", help="a dataset id, or a folder of class sub-folders")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            cmd_list(args.root, args.seed)
        else:
            cmd_info(args.id, args.root, args.seed)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
