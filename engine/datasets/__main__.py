"""Command line: ``python -m engine.datasets list``, ``... info ID`` and ``... download ID``.

``ID`` may also be the path of a folder of class sub-folders (for ``list`` and
``info``). ``download ID [--root DIR] [--force]`` fetches a dataset that has a
stable public file (checksum-verified, resumable, with a progress bar) and, for
any other dataset, prints the manual steps and exits with status 2. Errors
print ``error: <message>`` (no traceback) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from tqdm.auto import tqdm

from engine.datasets.download import ProgressFn, cached_file, destination, download
from engine.datasets.index import class_counts
from engine.datasets.locate import CACHE_DIR, data_roots, find_dataset_dir
from engine.datasets.registry import REGISTRY, get_dataset, load_splits
from engine.datasets.spec import DatasetSpec
from engine.errors import DatasetError, EngineError, run_cli


def _where(spec: DatasetSpec, root: str | None) -> str:
    if spec.generated:
        return "generated in code (no files needed)"
    try:
        found = find_dataset_dir(spec, root)
    except EngineError:
        return "not found"
    return f"found at {found}"


def _how_to_download(spec: DatasetSpec) -> str:
    if spec.generated:
        return "not needed (generated in code)"
    if spec.downloadable:
        return f"automatic: python -m engine.datasets download {spec.id}"
    return f"by hand (python -m engine.datasets download {spec.id} prints the steps)"


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
        print(f"  download: {_how_to_download(spec)}")
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
        print(f"download: {_how_to_download(spec)}")
        print("how to get it:")
        print(textwrap.indent(spec.how_to_get, "  "))
        if spec.layout:
            print("expected layout:")
            print(textwrap.indent(spec.layout, "  "))
        print("looked in data roots: " + ", ".join(str(r) for r in data_roots(root)))
        return
    splits = load_splits(spec, root=root, seed=seed)
    print("splits:")
    for split, index in splits.items():
        counts = ", ".join(f"{c} {n}" for c, n in class_counts(index).items())
        print(f"  {split}: {len(index)} ({counts}); fingerprint {index.fingerprint}")


@contextmanager
def _byte_bar(desc: str) -> Iterator[ProgressFn]:
    """A tqdm bar in bytes (with rate and ETA) on stderr, driven by ``progress(done, total)``.

    The bar appears at the first call, i.e. once the server has answered.
    """
    bar: tqdm | None = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        total_or_none = total or None
        if bar is None:
            bar = tqdm(
                desc=desc,
                total=total_or_none,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        if done < bar.n:  # the server restarted the file
            bar.reset(total=total_or_none)
        elif bar.total != total_or_none:
            bar.total = total_or_none
            bar.refresh()
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def cmd_download(name: str, root: str | None, force: bool) -> None:
    """Download one dataset (or raise ``DatasetError`` with the manual steps)."""
    spec = get_dataset(name)
    dest = destination(spec, root)  # raises with the manual steps when not downloadable
    remote = spec.download
    assert remote is not None  # destination() raised otherwise
    if not force and cached_file(spec, root=root) is not None:
        print(f"{spec.id}: already downloaded and verified: {dest} (use --force to fetch again)")
    else:
        print(f"{spec.id}: downloading {remote.url}")
        print(f"  to {dest}")
        try:
            with _byte_bar(spec.id) as progress:
                dest = download(spec, root=root, force=force, progress=progress)
        except KeyboardInterrupt:
            raise DatasetError(
                f"download of {spec.id} interrupted; the partial file is kept at "
                f"{dest}.part: run the same command again to resume it"
            ) from None
        print(f"{spec.id}: downloaded and verified ({remote.algorithm.upper()} OK): {dest}")
    found = find_dataset_dir(spec, root)
    if found.resolve() != dest.parent.resolve():
        print(
            f"note: the loaders find another {spec.id} folder first, at {found}. To use "
            f"the downloaded file, give the data root {dest.parent.parent} (--root here, "
            "--data-root when training) or move the other folder away."
        )
    print(f"licence: {spec.licence}; credit: {spec.attribution}")


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
    fetch = sub.add_parser(
        "download",
        help="download a dataset that has a stable public file (others: print the steps)",
        description="Download a dataset's public file, verify its checksum and put it where "
        "the loaders look. For a dataset without such a file, print the manual steps and "
        "exit with status 2.",
    )
    fetch.add_argument("id", help=f"a dataset id ({', '.join(REGISTRY)})")
    fetch.add_argument(
        "--root",
        default=argparse.SUPPRESS,
        help=f"data root to download into (default {CACHE_DIR})",
    )
    fetch.add_argument(
        "--force", action="store_true", help="download again even if a verified copy exists"
    )
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[], None]] = {
        "list": lambda: cmd_list(args.root, args.seed),
        "info": lambda: cmd_info(args.id, args.root, args.seed),
        "download": lambda: cmd_download(args.id, args.root, args.force),
    }
    return run_cli(commands[args.command])


if __name__ == "__main__":
    sys.exit(main())
