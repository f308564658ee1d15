"""The availability probe: requests at a steady rate to the API through the VIP (`/version`, anonymous, the
server verified against the cluster CA) and to workload URLs, counting failures and the longest gap without
an answer. What `kbootstrap verify --watch` prints, and what the lab tests run through every disruptive step.

Each request is a new connection (as a new client would make), sent on a fixed schedule whatever the earlier
ones are doing, so a stalled load balancer shows as failures and a gap instead of slowing the probe down.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from kbootstrap.errors import Refused


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    ca_file: Path | None = None  # https: verify the server against this CA (None: the system's trust)
    expect: Callable[[int, bytes], bool] = lambda status, body: status == 200

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(f"--url: {self.url!r} is not an http(s) URL with a host")


def api_target(server_url: str, ca_file: Path) -> Target:
    """GET /version: a request the API serves to anyone, as it serves the others. Not /readyz: an apiserver
    shutting down gracefully fails its /readyz on purpose (so load balancers take it out) while it still
    serves every request, and the probe asks what clients get."""
    return Target("API /version through " + urlsplit(server_url).netloc, server_url.rstrip("/") + "/version",
                  ca_file, lambda status, body: status == 200 and b'"gitVersion"' in body)


@dataclass
class Sample:
    sent: float  # monotonic seconds since the probe started
    done: float
    ok: bool
    error: str = ""


@dataclass
class Figures:
    """One target's record: requests, failures, and the longest time between two answered requests."""

    target: str
    samples: list[Sample] = field(default_factory=list)
    duration: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def failures(self) -> int:
        return sum(not s.ok for s in self.samples)

    @property
    def longest_gap(self) -> float:
        """Longest stretch with no successful answer: between the probe's start, each success (by when it was
        sent) and the end. At 10 requests/s with every request answered, about 0.1 s."""
        marks = [0.0, *sorted(s.sent for s in self.samples if s.ok), self.duration]
        return max((b - a for a, b in zip(marks, marks[1:], strict=False)), default=self.duration)

    @property
    def errors(self) -> dict[str, int]:
        seen: dict[str, int] = {}
        for s in self.samples:
            if not s.ok:
                seen[s.error] = seen.get(s.error, 0) + 1
        return seen

    def line(self) -> str:
        kinds = "; ".join(f"{n}× {e}" for e, n in sorted(self.errors.items(), key=lambda x: -x[1])[:3])
        return (f"{self.target}: {self.requests} requests, {self.failures} failed, longest gap {self.longest_gap:.1f} s"
                + (f" ({kinds})" if kinds else ""))

    def as_json(self) -> dict:
        return {"target": self.target, "requests": self.requests, "failures": self.failures,
                "longest_gap_s": round(self.longest_gap, 3), "duration_s": round(self.duration, 3),
                "errors": self.errors}


def request_once(target: Target, timeout: float) -> tuple[bool, str]:
    parts = urlsplit(target.url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = parts.hostname or ""  # a Target always has one
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        ctx = ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)
        conn = http.client.HTTPSConnection(host, parts.port or 443, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(4096)
        if target.expect(resp.status, body):
            return True, ""
        return False, f"HTTP {resp.status}"
    except (OSError, http.client.HTTPException) as e:
        return False, _kind(e)
    finally:
        conn.close()


def _kind(e: BaseException) -> str:
    """A short, stable name for a failure, so the summary counts them by kind."""
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset"
    if isinstance(e, ssl.SSLError):
        return f"TLS: {e.reason or e}"
    strerror = getattr(e, "strerror", None)
    return type(e).__name__ + (f": {strerror}" if strerror else "")


class Probe:
    """`with Probe(targets, rate) as p: ...` probes while the block runs; `p.figures()` after. Thread-based:
    it runs beside whatever the block does (a CLI command, a test's `lxc-stop`)."""

    def __init__(self, targets: list[Target], rate: float = 10.0, timeout: float = 2.0):
        if not targets:
            raise Refused("--url: nothing to probe")
        if not 0 < rate <= 100:
            raise Refused(f"--rate: {rate} requests a second per target; expected more than 0, at most 100")
        self.targets, self.rate, self.timeout = targets, rate, timeout
        self._stop = threading.Event()
        self._figures = {t.name: Figures(t.name) for t in targets}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(4, int(len(targets) * rate * (timeout + 1)) + 2))
        self._thread = threading.Thread(target=self._schedule, name="availability-probe", daemon=True)
        self._t0 = 0.0

    def __enter__(self) -> Probe:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)  # the requests in flight finish (bounded by the timeout)
        end = time.monotonic() - self._t0
        for f in self._figures.values():
            f.duration = end

    def _schedule(self) -> None:
        interval, n = 1.0 / self.rate, 0
        while not self._stop.is_set():
            for t in self.targets:
                self._pool.submit(self._one, t)
            n += 1
            self._stop.wait(max(0.0, self._t0 + n * interval - time.monotonic()))

    def _one(self, target: Target) -> None:
        sent = time.monotonic() - self._t0
        ok, error = request_once(target, self.timeout)
        with self._lock:
            self._figures[target.name].samples.append(Sample(sent, time.monotonic() - self._t0, ok, error))

    def figures(self) -> list[Figures]:
        with self._lock:
            out = []
            for t in self.targets:
                f = self._figures[t.name]
                out.append(Figures(f.target, sorted(f.samples, key=lambda s: s.sent),
                                   f.duration or time.monotonic() - self._t0))
            return out
