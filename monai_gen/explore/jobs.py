"""One generation at a time: a worker thread with one waiting slot per kind of job, newer replacing older.

A slider dragged across its range sends a request per position; generating every one would leave the page minutes
behind. :class:`LatestJobQueue` runs one job at a time on its own thread and keeps at most one *waiting* job per
``kind`` (``"sample"``, ``"sweep"``...): a new job of a kind replaces the waiting one, whose caller is told it was
superseded, so after the slider stops the page gets the sample of its last position, one generation later.

While a job runs it may :meth:`LatestJobQueue.report` its progress (e.g. the sampler's steps); :meth:`~LatestJobQueue.
progress` tells a caller where its ticket stands: its place in the line while it waits, its step while it runs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["JobSuperseded", "QueueClosed", "Ticket", "LatestJobQueue"]


class JobSuperseded(Exception):
    """The job waited in its slot until a newer job of the same kind replaced it; it never ran."""


class QueueClosed(RuntimeError):
    """The queue was closed (the server is stopping): it takes no more jobs."""


class Ticket:
    """A submitted job: :meth:`result` waits for it and returns its value or raises its error.

    Attributes:
        kind: the job's kind (one waiting slot per kind).
        state: ``"waiting"``, ``"running"``, ``"done"``, ``"failed"`` or ``"superseded"``.
        step, total, stage: the progress the job last reported (``step`` of ``total``, e.g. ``"sampling"``).
    """

    def __init__(self, kind: str, work: Callable[[], Any]) -> None:
        self.kind, self.work, self.state = kind, work, "waiting"
        self.step, self.total, self.stage = 0, 0, ""
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def _finish(self, state: str, value: Any = None, error: BaseException | None = None) -> None:
        self.state, self._value, self._error = state, value, error
        self._done.set()

    def result(self, timeout: float | None = None) -> Any:
        """The job's return value.

        Raises:
            JobSuperseded: a newer job of the same kind replaced it before it started.
            TimeoutError: it has not finished within ``timeout`` seconds.
            Exception: whatever the job raised.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"the {self.kind} job did not finish within {timeout} s.")
        if self.state == "superseded":
            raise JobSuperseded(f"a newer {self.kind} request replaced this one before it started.")
        if self._error is not None:
            raise self._error
        return self._value


class LatestJobQueue:
    """Run submitted jobs one at a time, oldest kind first; a job waiting in its kind's slot is replaced by a newer one.

    Examples:
        >>> queue = LatestJobQueue()
        >>> queue.submit("sample", lambda: 1 + 1).result(timeout=5)
        2
        >>> queue.close()
    """

    def __init__(self) -> None:
        self._waiting: OrderedDict[str, Ticket] = OrderedDict()
        self._lock = threading.Condition()
        self._closed = False
        self._running: Ticket | None = None
        self._worker = threading.Thread(target=self._serve, name="monai-gen-explore-worker", daemon=True)
        self._worker.start()

    def submit(self, kind: str, work: Callable[[], Any]) -> Ticket:
        """Queue ``work()`` under ``kind``; a job of that kind still waiting is superseded (it never runs).

        Raises:
            QueueClosed: the queue is closed.
        """
        ticket = Ticket(kind, work)
        with self._lock:
            if self._closed:
                raise QueueClosed("the explorer's job queue is closed.")
            replaced = self._waiting.pop(kind, None)
            if replaced is not None:
                replaced._finish("superseded")
            self._waiting[kind] = ticket
            self._lock.notify()
        return ticket

    def report(self, step: int, total: int, stage: str = "") -> None:
        """Record the running job's progress: ``step`` of ``total`` in ``stage``. Called from inside a job (jobs run
        one at a time on the worker thread, so the running one is the caller); does nothing outside a job."""
        with self._lock:
            if self._running is not None:
                self._running.step, self._running.total, self._running.stage = int(step), int(total), str(stage)

    def progress(self, ticket: Ticket) -> dict[str, Any]:
        """Where ``ticket`` stands: ``{"state", "ahead", "step", "total", "stage"}``; ``ahead`` is the number of jobs
        that run before it (the running one and those waiting in older slots), 0 once it runs."""
        with self._lock:
            ahead = 0
            if ticket.state == "waiting":
                older = list(self._waiting.values())
                ahead = (self._running is not None) + (older.index(ticket) if ticket in older else 0)
            return {"state": ticket.state, "ahead": ahead, "step": ticket.step, "total": ticket.total,
                    "stage": ticket.stage}

    @property
    def busy(self) -> bool:
        """Whether a job is running or waiting."""
        with self._lock:
            return self._running is not None or bool(self._waiting)

    def close(self, timeout: float | None = 10.0) -> None:
        """Supersede the waiting jobs, let the running one finish and stop the worker."""
        with self._lock:
            self._closed = True
            for ticket in self._waiting.values():
                ticket._finish("superseded")
            self._waiting.clear()
            self._lock.notify()
        self._worker.join(timeout)

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                _, ticket = self._waiting.popitem(last=False)
                ticket.state, self._running = "running", ticket
            value, error = None, None
            try:
                value = ticket.work()
            except Exception as failure:  # reported to the caller, who turns it into a message
                error = failure
            with self._lock:  # no longer running before its caller hears of it (a late report() then changes nothing)
                self._running = None
            ticket._finish("done" if error is None else "failed", value, error)
