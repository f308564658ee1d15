"""Preflight for a whole cluster: ask each host for what its roles need, in parallel, then check all at once.

One probe command per host (facts.gather_preflight) with the ports, peers and commands that checks.py
says the host's roles need. A host where the probe cannot run at all (no SSH, no sudo, no python3)
becomes a finding like any other, so the operator still sees every problem of every host in one report.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor

from kbootstrap.errors import KbootstrapError, StepError
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.preflight.checks import Finding, check, reach_targets, required_commands, required_ports
from kbootstrap.preflight.facts import PreflightFacts, gather_preflight
from kbootstrap.transport.base import Transport


def _probe(spec: ClusterSpec, node: Node, t: Transport) -> PreflightFacts | Finding:
    try:
        return gather_preflight(t, required_ports(spec, node), [(x.address, x.port) for x in reach_targets(spec, node)],
                                commands=required_commands(node))
    except KbootstrapError as e:
        detail = f"exit {e.rc}: {e.stderr_tail or 'no output'}" if isinstance(e, StepError) else str(e)
        return Finding(node.name, f"the preflight probe did not run ({detail.removeprefix(node.name + ': ')}); "
                                  "expected SSH, sudo and python3 (3.6 or newer) to work on the host")


def run_preflight(spec: ClusterSpec, transports: Mapping[str, Transport], *, bundle_arch: str | None = None,
                  expected_listeners: Mapping[str, Collection[int]] | None = None,
                  will_install: Collection[str] = (), parallel: int = 10) -> list[Finding]:
    """Probe every node that has a transport (keyed by inventory name) and return every finding."""
    nodes = [n for n in spec.nodes if n.name in transports]
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(nodes) or 1))) as pool:
        results = list(pool.map(lambda n: _probe(spec, n, transports[n.name]), nodes))
    facts = {n.name: r for n, r in zip(nodes, results, strict=True) if isinstance(r, PreflightFacts)}
    failed = [r for r in results if isinstance(r, Finding)]
    return failed + check(spec, facts, bundle_arch=bundle_arch, expected_listeners=expected_listeners,
                          will_install=will_install)
