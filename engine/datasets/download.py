"""Download the datasets that have a stable public file: checksum-verified and resumable.

Only a dataset whose :class:`~engine.datasets.spec.DatasetSpec` names a
:class:`~engine.datasets.spec.RemoteFile` is fetched (PneumoniaMNIST and its
MedMNIST+ sizes). For every other dataset :func:`download` raises
:class:`~engine.errors.DatasetError` with the manual steps: it never pretends.

How a download goes
-------------------
1. The file goes where the loader looks: ``<root>/<dataset folder>/<file>``,
   ``root`` defaulting to the per-user cache ``~/.cache/robustlens/data``.
2. If that file exists and its checksum matches, nothing is fetched.
3. Bytes are written to ``<file>.part``. When a ``.part`` is already there the
   request carries ``Range: bytes=N-``; a ``206`` answer is appended, a ``200``
   answer (a server that ignores ranges) starts the file over.
4. A transfer that stops midway is resumed (``retries`` times) after a short wait.
5. Only when the whole file's checksum matches the published one is ``.part``
   renamed to the final name (an atomic rename); on a mismatch ``.part`` is deleted.

Network failures (offline machine, unreachable host, HTTP errors, timeouts)
raise :class:`~engine.errors.DatasetError` whose message says what failed and
how to fetch the file by hand. Only the standard library (``urllib``) is used.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from engine.datasets.locate import CACHE_DIR, ENV_VAR
from engine.datasets.registry import get_dataset
from engine.datasets.spec import DatasetSpec, RemoteFile
from engine.errors import DatasetError, ParamError

logger = logging.getLogger(__name__)

TIMEOUT_S = 30.0
"""Seconds to wait for a connection, and then for each block of data."""
CHUNK_BYTES = 1 << 16
"""Bytes read from the network at a time."""
RETRY_WAIT_S = 2.0
"""Seconds to wait before resuming an interrupted transfer (times the attempt number)."""
USER_AGENT = "RobustLens-datasets/1 (+python urllib)"

ProgressFn = Callable[[int, int], None]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


class _Interrupted(Exception):
    """A transfer stopped midway; the ``.part`` file can be resumed."""

    def __init__(self, reason: str, done: int, total: int | None) -> None:
        super().__init__(reason)
        self.reason, self.done, self.total = reason, done, total


# --------------------------------------------------------------------------- paths


def destination(dataset: str | DatasetSpec, root: str | os.PathLike | None = None) -> Path:
    """Where :func:`download` puts a dataset's file.

    Parameters
    ----------
    dataset : str or DatasetSpec
        A downloadable dataset (see :attr:`DatasetSpec.downloadable`).
    root : str or os.PathLike, optional
        The data root; default the per-user cache ``~/.cache/robustlens/data``.
        A root already named like the dataset folder is used as that folder
        (as :func:`~engine.datasets.locate.find_dataset_dir` does).

    Returns
    -------
    pathlib.Path
        ``<root>/<first folder name>/<file name>``.

    Raises
    ------
    DatasetError
        If the dataset cannot be downloaded automatically (the message gives
        the manual steps).
    """
    spec = get_dataset(dataset)
    remote = _remote_file(spec)
    base = Path(root).expanduser() if root is not None else Path(CACHE_DIR).expanduser()
    folder = base if base.name in spec.folder_names else base / spec.folder_names[0]
    return folder / remote.filename


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def file_checksum(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in blocks.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    algorithm : {"md5", "sha256"}, default="sha256"
        Hash function.

    Returns
    -------
    str
        Lower-case hex digest.

    Raises
    ------
    DatasetError
        If the file cannot be read.
    """
    if algorithm not in ("md5", "sha256"):
        raise ParamError(f"algorithm must be 'md5' or 'sha256'; got {algorithm!r}")
    h = hashlib.new(algorithm, usedforsecurity=False)
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


def cached_file(
    dataset: str | DatasetSpec, *, root: str | os.PathLike | None = None
) -> Path | None:
    """The downloaded file when it is present and its checksum matches, else ``None``.

    Parameters
    ----------
    dataset : str or DatasetSpec
        A downloadable dataset.
    root : str or os.PathLike, optional
        The data root (see :func:`destination`).

    Returns
    -------
    pathlib.Path or None
    """
    spec = get_dataset(dataset)
    remote = _remote_file(spec)
    dest = destination(spec, root)
    if dest.is_file() and file_checksum(dest, remote.algorithm) == remote.digest:
        return dest
    return None


# --------------------------------------------------------------------------- messages


def manual_steps(dataset: str | DatasetSpec) -> str:
    """How to get a dataset by hand: source, licence, steps and the expected layout.

    Parameters
    ----------
    dataset : str or DatasetSpec
        Any dataset.

    Returns
    -------
    str
        Several lines of text, ready to print.
    """
    spec = get_dataset(dataset)
    lines = [f"How to get {spec.id} ({spec.title}):", spec.how_to_get]
    if spec.licence:
        lines.append(f"Licence: {spec.licence}")
    if spec.layout:
        lines += [
            "Expected layout, inside a data root (e.g. ~/.cache/robustlens/data, a folder "
            f"given with --root, or one named in ${ENV_VAR}):",
            _indent(spec.layout),
        ]
    lines.append(f"Then check it with: python -m engine.datasets info {spec.id}")
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _remote_file(spec: DatasetSpec) -> RemoteFile:
    if spec.generated:
        raise DatasetError(f"dataset {spec.id} is generated in code: there is nothing to download")
    if spec.download is None:
        raise DatasetError(
            f"dataset {spec.id} cannot be downloaded automatically: its source offers no "
            "direct, stable file whose checksum could be verified (it needs a browser, an "
            "account or accepting terms). Nothing was downloaded.\n" + manual_steps(spec)
        )
    return spec.download


def _by_hand(remote: RemoteFile, url: str, dest: Path) -> str:
    lines = [
        "To fetch the file by hand instead (e.g. in a browser or on another machine):",
        f"  1. download {url}",
    ]
    if remote.page:
        lines[-1] += f" (record: {remote.page})"
    lines += [
        f"  2. check that its {remote.algorithm.upper()} is {remote.digest}",
        f"  3. put it at {dest}",
    ]
    return "\n".join(lines)


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _size(n: int | None) -> str:
    if n is None:
        return "an unknown size"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


# --------------------------------------------------------------------------- download


def download(
    dataset_id: str | DatasetSpec,
    *,
    root: str | os.PathLike | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    url: str | None = None,
    timeout: float = TIMEOUT_S,
    retries: int = 2,
) -> Path:
    """Download a dataset's public file, verify its checksum, and put it where the loader looks.

    Parameters
    ----------
    dataset_id : str or DatasetSpec
        A dataset with a :class:`~engine.datasets.spec.RemoteFile` (e.g.
        ``"pneumoniamnist"``); any other dataset raises with the manual steps.
    root : str or os.PathLike, optional
        The data root to download into; default ``~/.cache/robustlens/data``
        (always searched by the loaders).
    force : bool, default=False
        Download again even when a verified file is already there (it is only
        replaced once the new copy is verified), discarding any ``.part`` file.
    progress : callable, optional
        ``progress(done, total)`` in bytes after each block; ``total`` is 0
        when the server does not give the size.
    url : str, optional
        Fetch from this address instead of the published one (a mirror); the
        published checksum still applies.
    timeout : float, default=30
        Seconds to wait for the connection and then for each block.
    retries : int, default=2
        How many times an interrupted transfer is resumed before giving up
        (the ``.part`` file is kept so that a later call resumes it).

    Returns
    -------
    pathlib.Path
        The verified file, e.g. ``~/.cache/robustlens/data/pneumoniamnist/pneumoniamnist.npz``.

    Raises
    ------
    DatasetError
        When the dataset cannot be downloaded automatically (with the manual
        steps), when the machine is offline or the server fails (with the
        address to fetch by hand and where to put the file), when the
        checksum does not match (the partial file is deleted), or when a file
        that is not the official one is in the way (use ``force``).
    ParamError
        For an invalid ``timeout`` or ``retries``.

    Examples
    --------
    >>> from engine.datasets.download import download
    >>> path = download("pneumoniamnist")  # doctest: +SKIP
    >>> load_splits("pneumoniamnist")  # found in the per-user cache  # doctest: +SKIP
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ParamError(f"timeout must be a positive number of seconds; got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ParamError(f"retries must be a non-negative integer; got {retries!r}")
    spec = get_dataset(dataset_id)
    remote = _remote_file(spec)
    source = url or remote.url
    dest = destination(spec, root)
    part = _part_path(dest)
    by_hand = _by_hand(remote, source, dest)

    if dest.exists() and not force:
        digest = file_checksum(dest, remote.algorithm)
        if digest == remote.digest:
            logger.info("%s: %s is already downloaded and verified", spec.id, dest)
            return dest
        raise DatasetError(
            f"{dest} already exists but its {remote.algorithm.upper()} is {digest}, not the "
            f"published {remote.digest}: it is not the official file (a modified or "
            "damaged copy?). Move it away, or download again with force=True "
            "(--force) to replace it once the new copy is verified."
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if force:
            part.unlink(missing_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot write to {dest.parent}: {exc.strerror or exc}") from None

    attempt = 0
    while True:
        try:
            _fetch(source, part, progress, timeout, spec, by_hand)
            break
        except _Interrupted as exc:
            if attempt >= retries:
                raise DatasetError(
                    f"could not download {spec.id}: the transfer from {_host(source)} stopped "
                    f"after {_size(exc.done)} of {_size(exc.total)} ({exc.reason}), "
                    f"{attempt + 1} time(s). The partial file is kept at {part}; run the "
                    "download again to resume it.\n" + by_hand
                ) from None
            attempt += 1
            wait_s = RETRY_WAIT_S * attempt
            logger.warning(
                "%s: transfer stopped after %s (%s); resuming in %.0f s (retry %d of %d)",
                spec.id,
                _size(exc.done),
                exc.reason,
                wait_s,
                attempt,
                retries,
            )
            time.sleep(wait_s)

    digest = file_checksum(part, remote.algorithm)
    if digest != remote.digest:
        part.unlink(missing_ok=True)
        raise DatasetError(
            f"checksum mismatch for {spec.id}: the downloaded file's "
            f"{remote.algorithm.upper()} is {digest}, but the published one is "
            f"{remote.digest}. The download was corrupted, or the server sent another file; "
            f"it has been deleted (nothing was installed). Try again.\n" + by_hand
        )
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise DatasetError(f"cannot rename {part} to {dest}: {exc.strerror or exc}") from None
    logger.info("%s: downloaded and verified %s", spec.id, dest)
    return dest


def _fetch(
    url: str,
    part: Path,
    progress: ProgressFn | None,
    timeout: float,
    spec: DatasetSpec,
    by_hand: str,
) -> None:
    """One request: write (or append) the answer to ``part``.

    Raises ``_Interrupted`` when the connection breaks after the transfer began,
    :class:`DatasetError` for anything a retry would not fix.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    host = _host(url)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            # Nothing left after ``offset``: the .part is complete (or wrong); the checksum decides.
            logger.info("%s: the server has no bytes after %d; checking the file", spec.id, offset)
            return
        raise DatasetError(
            f"could not download {spec.id}: {host} answered HTTP {exc.code} "
            f"({exc.reason}) for {url}. The file may have moved or the server may be "
            f"having trouble; try again later.\n{by_hand}"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
            what = f"{host} did not answer within {timeout:g} s"
        else:
            what = f"cannot connect to {host} ({reason})"
        raise DatasetError(
            f"could not download {spec.id}: {what}. This machine seems to be offline, or "
            f"the server is unreachable from here (firewall, proxy, outage).\n{by_hand}"
        ) from None

    with response:
        status = response.status
        header = response.headers.get("Content-Length", "")
        length = int(header) if header.strip().isdigit() else None
        if offset and status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise _Interrupted("the server sent an unexpected byte range", 0, None)
            total = int(match.group(3)) if match.group(3) != "*" else None
            logger.info("%s: resuming at byte %d", spec.id, offset)
            mode = "ab"
        elif status == 200:
            if offset:
                logger.info("%s: the server does not resume downloads; starting over", spec.id)
            offset, total, mode = 0, length, "wb"
        else:
            raise DatasetError(
                f"could not download {spec.id}: {host} answered HTTP {status} for {url}, "
                f"which is not a file.\n{by_hand}"
            )
        if total is None and length is not None:
            total = offset + length
        done = offset
        if progress is not None:
            progress(done, total or 0)
        try:
            fh = open(part, mode)  # noqa: SIM115 (closed below; write errors are told apart)
        except OSError as exc:
            raise DatasetError(f"cannot write {part}: {exc.strerror or exc}") from None
        with fh:
            while True:
                try:
                    block = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Interrupted(str(exc) or type(exc).__name__, done, total) from None
                if not block:
                    break
                try:
                    fh.write(block)
                except OSError as exc:
                    raise DatasetError(f"cannot write {part}: {exc.strerror or exc}") from None
                done += len(block)
                if progress is not None:
                    progress(done, total or 0)
    if total is not None and done < total:
        raise _Interrupted("the connection closed early", done, total)
