"""The model worker's child process and its end of the pipe, seen from the parent.

:class:`Child` starts :func:`app.worker.server.child_main` in a spawned
process without letting it re-run the parent's main script (the spawn
guard), sends it messages, waits for its answers with a time limit, and
stops it. It knows nothing of what the messages mean: that is
:class:`app.worker.client.ModelWorker`'s job.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import time
import types
from collections.abc import Iterator
from multiprocessing.context import SpawnContext

from app.worker import protocol as msg
from app.worker.server import WorkerConfig, child_main

__all__ = ["Child", "ChildDied", "TimedOut", "no_main_script", "rss_mb"]

log = logging.getLogger(__name__)

_main_lock = threading.Lock()


class ChildDied(Exception):
    """The child process ended (or its pipe broke)."""


class TimedOut(Exception):
    """The child stayed silent for longer than allowed."""


@contextlib.contextmanager
def no_main_script() -> Iterator[None]:
    """Hide ``__main__`` while a spawn child starts, so it does not re-run the main script.

    A spawn child normally re-imports the parent's main script. Inside
    Streamlit, ``sys.modules["__main__"]`` is the page being run, and the
    child would execute the whole page. The worker's entry point lives in
    :mod:`app.worker.server`, so the child needs nothing from ``__main__``.
    """
    with _main_lock:
        saved = sys.modules.get("__main__")
        stub = types.ModuleType("__main__")
        sys.modules["__main__"] = stub
        try:
            yield
        finally:
            if sys.modules.get("__main__") is stub and saved is not None:
                sys.modules["__main__"] = saved


def rss_mb(pid: int | None) -> float:
    """Resident memory of process ``pid`` in MB (``/proc``, Linux); ``nan`` if unknown."""
    if pid is None:
        return math.nan
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return math.nan


class Child:
    """A started worker process (``multiprocessing`` context ``"spawn"``, daemon)."""

    def __init__(self, ctx: SpawnContext, config: WorkerConfig) -> None:
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=child_main,
            args=(child_conn, dict(config)),
            name="robustlens-model-worker",
            daemon=True,
        )
        with no_main_script():
            self.proc.start()
        child_conn.close()  # so that the child's death reads as EOF here
        self.conn = parent_conn
        log.info("model worker started (pid %s)", self.proc.pid)

    def is_alive(self) -> bool:
        """Whether the process is running."""
        return self.proc.is_alive()

    @property
    def exitcode(self) -> int | None:
        """The process's exit code, ``None`` while it runs."""
        return self.proc.exitcode

    def send(self, message: object) -> None:
        """Send one message; :class:`ChildDied` when the pipe is broken."""
        try:
            self.conn.send(message)
        except (EOFError, OSError) as exc:  # BrokenPipeError is an OSError
            raise ChildDied from exc

    def receive(self, timeout: float) -> object:
        """The next message; raise :class:`TimedOut` after ``timeout`` s of silence."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimedOut
            try:
                if self.conn.poll(min(left, 1.0)):
                    return self.conn.recv()
            except (EOFError, OSError) as exc:
                raise ChildDied from exc
            if not self.proc.is_alive() and not self.conn.poll(0):
                raise ChildDied

    def stop(self, *, graceful: bool) -> None:
        """Ask the child to exit (when ``graceful``), then terminate or kill it if it lingers."""
        proc = self.proc
        if graceful and proc.is_alive():
            with contextlib.suppress(Exception):
                self.conn.send(msg.Close())
            proc.join(2.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)
        with contextlib.suppress(Exception):
            self.conn.close()
