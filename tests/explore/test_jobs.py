"""LatestJobQueue: one job at a time, a waiting job replaced by a newer one of its kind, errors handed back."""

from __future__ import annotations

import threading

import pytest

from monai_gen.explore.jobs import JobSuperseded, LatestJobQueue


@pytest.fixture
def queue():
    jobs = LatestJobQueue()
    yield jobs
    jobs.close()


def _blocker():
    release, started = threading.Event(), threading.Event()

    def work():
        started.set()
        release.wait(10)
        return "first"

    return work, started, release


def test_newer_job_replaces_the_waiting_one_of_its_kind(queue):
    work, started, release = _blocker()
    running = queue.submit("sample", work)
    assert started.wait(5)
    ran = []
    waiting = [queue.submit("sample", lambda i=i: ran.append(i) or i) for i in range(5)]  # a slider dragged
    release.set()
    assert running.result(timeout=5) == "first"
    assert waiting[-1].result(timeout=5) == 4
    for ticket in waiting[:-1]:
        with pytest.raises(JobSuperseded, match="newer sample request"):
            ticket.result(timeout=5)
        assert ticket.state == "superseded"
    assert ran == [4]  # only the last position was generated


def test_jobs_of_other_kinds_wait_their_turn_and_run_one_at_a_time(queue):
    work, started, release = _blocker()
    queue.submit("sample", work)
    assert started.wait(5)
    active, overlaps = [], []

    def job(name):
        def run():
            active.append(name)
            overlaps.append(len(active))
            active.remove(name)
            return name
        return run

    tickets = [queue.submit(kind, job(kind)) for kind in ("sweep", "export", "sample")]
    assert queue.busy
    release.set()
    assert [t.result(timeout=5) for t in tickets] == ["sweep", "export", "sample"]
    assert overlaps == [1, 1, 1]


def test_errors_reach_the_caller_and_the_worker_goes_on(queue):
    def fail():
        raise ValueError("condition 'qt' = 900 ms is outside its valid range [200, 700].")

    with pytest.raises(ValueError, match="valid range"):
        queue.submit("sample", fail).result(timeout=5)
    assert queue.submit("sample", lambda: 3).result(timeout=5) == 3


def test_closed_queue_refuses_jobs():
    jobs = LatestJobQueue()
    jobs.close()
    with pytest.raises(RuntimeError, match="closed"):
        jobs.submit("sample", lambda: 1)


def test_progress_tells_a_waiting_ticket_its_place_and_a_running_one_its_step(queue):
    work, started, release = _blocker()
    running = queue.submit("load", work)
    assert started.wait(5)
    sweep = queue.submit("sweep", lambda: "sweep")
    reached, hold = threading.Event(), threading.Event()

    def sample():
        for step in range(1, 4):
            queue.report(step, 3, "sampling")
        reached.set()
        hold.wait(10)  # keep running so the last report can be read
        return "sample"

    ticket = queue.submit("sample", sample)
    assert queue.progress(running)["state"] == "running"
    assert queue.progress(sweep) == {"state": "waiting", "ahead": 1, "step": 0, "total": 0, "stage": ""}
    assert queue.progress(ticket)["ahead"] == 2  # the running load, then the sweep
    release.set()
    assert reached.wait(5)
    assert queue.progress(ticket) == {"state": "running", "ahead": 0, "step": 3, "total": 3, "stage": "sampling"}
    hold.set()
    assert ticket.result(timeout=5) == "sample" and queue.progress(ticket)["state"] == "done"
    queue.report(9, 9, "ignored")  # nothing runs: no ticket changes
    assert queue.progress(ticket)["step"] == 3
