"""The one bounded wait every part of kbootstrap uses: try, and again after `interval`, until an attempt gives
an answer or `timeout` has passed. An attempt that is not there yet returns Pending(why); the caller raises its
own error from the last Pending, so a timeout always says what was awaited and what was last seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Pending:
    """Not there yet; `why` is what the last attempt saw (for the timeout's message)."""

    why: str = ""


def poll(attempt: Callable[[], T | Pending], *, timeout: float, interval: float) -> T | Pending:
    """attempt() until it returns something other than Pending, or the last Pending once `timeout` seconds have
    passed. It always runs at least once; it never sleeps past the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = attempt()
        left = deadline - time.monotonic()
        if not isinstance(result, Pending) or left <= 0:
            return result
        time.sleep(min(interval, left))
