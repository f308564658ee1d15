"""The controller's side of the probe: send probe.py to a host as one command, and type what it reports.

Facts are plain data (frozen dataclasses) so that checks.py stays pure and tests can craft them. The
probe is packed the way transport/remote.py packs the agent (zlib + base64 into `python3 -c`); the
controller's clock is read just before and just after the call, which bounds the host's clock skew
without trusting the round trip to be symmetric.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kbootstrap.errors import StepError
from kbootstrap.transport.base import Transport
from kbootstrap.transport.remote import packed_python

MODULES = ("overlay", "br_netfilter")
COMMANDS = ("systemctl", "iptables", "mount", "nsenter")
CONNECT_TIMEOUT = 0.5


@dataclass(frozen=True)
class Swap:
    name: str
    size_kb: int


@dataclass(frozen=True)
class Listener:
    port: int
    address: str
    process: str | None  # "haproxy (pid 812)", None when the probe could not tell


@dataclass(frozen=True)
class Connect:
    address: str
    port: int
    result: str  # ok | refused | timeout | unreachable | error
    error: str = ""

    @property
    def reachable(self) -> bool:
        # Before init nothing listens: a refusal still proves the route both ways.
        return self.result in ("ok", "refused")

    def describe(self) -> str:
        return "timed out" if self.result == "timeout" else ": ".join(filter(None, (self.result, self.error)))


@dataclass(frozen=True)
class PreflightFacts:
    os_id: str
    os_version: str
    os_pretty: str
    arch: str  # platform.machine(): x86_64, aarch64, ...
    kernel: str
    systemd: bool  # systemd is PID 1
    container: str | None  # "lxc", "docker", ... when the host is a container
    swaps: tuple[Swap, ...]
    listening: tuple[Listener, ...]  # only the ports asked about
    hostname: str
    machine_id: str
    product_uuid: str | None
    macs: dict[str, str]  # interface -> MAC, loopback and all-zero MACs left out
    modules: dict[str, str]  # name -> loaded | builtin | loadable | missing
    cgroup: str  # v2 | hybrid | v1 | none
    var_free: int  # bytes
    mem_total: int  # bytes
    cpus: int
    python: str
    python_version: tuple[int, ...]
    commands: dict[str, str | None]  # name -> path on sudo's PATH, or None
    connects: tuple[Connect, ...]
    host_time: float  # the host's epoch time, read at the end of the probe
    sent_at: float = 0.0  # the controller's clock just before and just after the call
    received_at: float = 0.0
    addresses: dict[str, tuple[str, ...]] = field(default_factory=dict)  # interface -> IPv4 "address/prefix"

    @property
    def skew_bounds(self) -> tuple[float, float]:
        """The host clock's offset from the controller's lies in this range (seconds, + = host ahead)."""
        return self.host_time - self.received_at, self.host_time - self.sent_at


def from_json(raw: dict[str, Any], sent_at: float = 0.0, received_at: float = 0.0) -> PreflightFacts:
    return PreflightFacts(
        os_id=raw["os"]["id"], os_version=raw["os"]["version_id"], os_pretty=raw["os"]["pretty_name"],
        arch=raw["arch"], kernel=raw["kernel"], systemd=raw["systemd"], container=raw["container"],
        swaps=tuple(Swap(s["name"], s["size_kb"]) for s in raw["swaps"]),
        listening=tuple(Listener(x["port"], x["address"], x["process"]) for x in raw["listening"]),
        hostname=raw["hostname"], machine_id=raw["machine_id"], product_uuid=raw["product_uuid"],
        macs=raw["macs"], modules=raw["modules"], cgroup=raw["cgroup"], var_free=raw["var_free"],
        mem_total=raw["mem_total"], cpus=raw["cpus"], python=raw["python"],
        python_version=tuple(raw["python_version"]), commands=raw["commands"],
        connects=tuple(Connect(c["address"], c["port"], c["result"], c["error"]) for c in raw["connects"]),
        host_time=raw["time"], sent_at=sent_at, received_at=received_at,
        addresses={i: tuple(a) for i, a in raw.get("addresses", {}).items()},
    )


PROBE = Path(__file__).parents[1] / "hostside" / "probe.py"


def _probe_argv() -> tuple[str, ...]:
    return packed_python(PROBE, "kbootstrap-probe", "main()")


def probe_request(wanted_ports: Iterable[int], targets: Iterable[tuple[str, int]] = (), *,
                  modules: Iterable[str] = MODULES, commands: Iterable[str] = COMMANDS,
                  timeout: float = CONNECT_TIMEOUT) -> dict[str, Any]:
    return {"ports": sorted(set(wanted_ports)), "modules": list(modules), "commands": list(commands),
            "targets": [[a, p] for a, p in dict.fromkeys((str(a), int(p)) for a, p in targets)],
            "timeout": timeout}


@cache
def _probe_source() -> str:
    return PROBE.read_text()


def probe_program(request: dict[str, Any]) -> dict[str, Any]:
    """The probe as a program the agent runs beside the facts, in the same round trip (engine runner's gate)."""
    return {"source": _probe_source(), "call": "probe", "arg": request}


def parse(host: str, raw: Any, sent_at: float = 0.0, received_at: float = 0.0) -> PreflightFacts:
    try:
        return from_json(raw, sent_at, received_at)
    except (ValueError, KeyError, TypeError) as e:
        raise StepError(host, "preflight", "kbootstrap preflight probe", 0, f"unreadable report: {e}") from None


def gather_preflight(t: Transport, wanted_ports: Iterable[int], targets: Iterable[tuple[str, int]] = (), *,
                     modules: Iterable[str] = MODULES, commands: Iterable[str] = COMMANDS,
                     timeout: float = CONNECT_TIMEOUT, clock: Callable[[], float] = time.time) -> PreflightFacts:
    """Probe one host with one command. Raises StepError when the probe cannot run (no python3, no sudo)."""
    return run_probe(t, probe_request(wanted_ports, targets, modules=modules, commands=commands, timeout=timeout),
                     clock)


def run_probe(t: Transport, request: dict[str, Any], clock: Callable[[], float] = time.time) -> PreflightFacts:
    """The probe as its own command on one host, asked `request` (probe_request)."""
    sent_at = clock()
    r = t.run(list(_probe_argv()), sudo=True, stdin=json.dumps(request).encode(), timeout=60)
    received_at = clock()
    if not r.ok:
        raise StepError(t.host, "preflight", "kbootstrap preflight probe", r.rc, r.stderr_tail())
    try:
        raw = json.loads(r.stdout)
    except ValueError as e:
        raise StepError(t.host, "preflight", "kbootstrap preflight probe", r.rc, f"unreadable report: {e}") from None
    return parse(t.host, raw, sent_at, received_at)
