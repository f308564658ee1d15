"""engine/poll.py, the one bounded wait: it returns the first answer, or the last Pending once the time is up;
it tries at least once and never sleeps past the deadline."""

from __future__ import annotations

import time

from kbootstrap.engine.poll import Pending, poll


def test_the_first_answer_is_returned():
    tries = iter([Pending("a"), Pending("b"), "done"])
    assert poll(lambda: next(tries), timeout=5, interval=0.01) == "done"


def test_the_last_pending_comes_back_when_time_is_up(monkeypatch):
    seen, slept = [], []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (slept.append(s), real_sleep(s)))  # record, then really sleep

    def attempt():
        seen.append(len(seen))
        return Pending(f"try {len(seen)}")

    result = poll(attempt, timeout=0.2, interval=0.07)
    assert isinstance(result, Pending) and result.why == f"try {len(seen)}"
    assert len(seen) == len(slept) + 1 >= 2
    assert all(0 < s <= 0.07 for s in slept) and sum(slept) <= 0.2  # never sleeps past the deadline


def test_it_tries_once_even_with_no_time():
    assert poll(lambda: 7, timeout=0, interval=1) == 7
    assert isinstance(poll(lambda: Pending("x"), timeout=0, interval=1), Pending)
