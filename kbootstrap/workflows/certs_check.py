"""`kbootstrap certs check`: every certificate on every host, read in one round trip a host (the agent runs
hostside/certs.py beside its facts), as one table sorted by expiry. Read-only; no lock, like `verify`."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from kbootstrap.engine.hosts import connect_all
from kbootstrap.errors import KbootstrapError
from kbootstrap.model.host import CERT_ROOTS
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.pki.held import HeldCert, by_expiry, parse_held
from kbootstrap.transport import remote
from kbootstrap.transport.base import Transport

PROGRAM = Path(__file__).parents[1] / "hostside" / "certs.py"


@cache
def _source() -> str:
    return PROGRAM.read_text()


@dataclass
class CertsReport:
    rows: list[HeldCert]
    failed: dict[str, str] = field(default_factory=dict)  # host -> why it could not be read
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def due(self, warn_days: int) -> list[HeldCert]:
        return [r for r in self.rows if r.days_left(self.now) < warn_days]


def read_host(t: Transport) -> list[HeldCert]:
    program = {"source": _source(), "call": "certificates", "arg": {"roots": list(CERT_ROOTS)}}
    answer = remote.gather(t, [], programs={"certs": program}).programs["certs"]
    if "error" in answer:
        raise KbootstrapError(f"{t.host}: reading certificates failed: {answer['error']}")
    return parse_held(t.host, answer["result"])


def check_certs(spec: ClusterSpec, nodes: list[Node], parallel: int = 10, accept_new_host_keys: bool = False) -> CertsReport:
    report = CertsReport([])
    with connect_all(spec, nodes, accept_new_host_keys) as transports, \
            ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {name: pool.submit(read_host, t) for name, t in transports.items()}
        for name, f in futures.items():
            try:
                report.rows += f.result()
            except KbootstrapError as e:  # unreachable, host key, sudo: a failed host, the others still shown
                report.failed[name] = " ".join(str(e).split())
    report.rows = by_expiry(report.rows)
    return report
