"""First come, first served: the lock that shares one model worker fairly between sessions.

:class:`threading.Lock` promises no order: a thread that releases it and
asks again at once usually gets it back before a thread that was already
waiting. A session running a mini sweep asks again after every batch, so with
a plain lock one user's sweep would hold the worker until it ends while
another user's Live-lab click waits. :class:`FairLock` hands the lock on
release straight to the thread that has waited longest, so a thread that
asks again queues behind the others. Each session makes one request at a
time, so its turns come round-robin with every other session's: a click waits
for at most the request (one sweep batch) running when it arrived, plus one
turn of each other session already waiting.
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["FairLock"]


class FairLock:
    """A lock granted in the order it was asked for.

    Use it like :class:`threading.Lock` (``with lock:``, or :meth:`acquire`
    and :meth:`release`); it is not re-entrant. A thread that stops waiting
    (a timeout, or an exception such as ``KeyboardInterrupt`` while it waits)
    leaves the queue without blocking the threads behind it.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._queue: deque[threading.Event] = deque()
        self._held = False

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for the lock, behind every thread already waiting.

        Parameters
        ----------
        timeout : float, optional
            Longest wait in seconds; ``None`` waits as long as it takes.

        Returns
        -------
        bool
            Whether the lock is now held by the caller.
        """
        with self._mutex:
            if not self._held:  # nobody holds it, so nobody waits for it
                self._held = True
                return True
            turn = threading.Event()
            self._queue.append(turn)
        try:
            if turn.wait(timeout):
                return True
        except BaseException:
            if not self._leave(turn):
                self.release()  # handed over while we were being interrupted
            raise
        return not self._leave(turn)  # handed over just as the wait timed out

    def _leave(self, turn: threading.Event) -> bool:
        """Take ``turn`` out of the queue; ``False`` when the lock was handed to it already."""
        with self._mutex:
            if turn in self._queue:
                self._queue.remove(turn)
                return True
            return False

    def release(self) -> None:
        """Hand the lock to the longest waiter, or free it when nobody waits."""
        with self._mutex:
            if not self._held:
                raise RuntimeError("release of an unheld FairLock")
            if self._queue:
                self._queue.popleft().set()  # the lock stays held, by its new owner
            else:
                self._held = False

    @property
    def waiting(self) -> int:
        """How many threads wait for the lock now."""
        with self._mutex:
            return len(self._queue)

    def locked(self) -> bool:
        """Whether some thread holds the lock."""
        with self._mutex:
            return self._held

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
