"""Preflight for a whole cluster: ask each host for what its roles need, in parallel, then check all at once.

One probe per host with the ports, peers and commands that checks.py says the host's roles need: its own
command (facts.gather_preflight, `kbootstrap preflight`), or run by the agent in the same round trip as the
engine's facts (`init` and `join`: workflows/init_cluster.Preflight, a runner Gate). A host where the probe
cannot run at all (no SSH, no sudo, no python3) becomes a finding like any other, so the operator still sees
every problem of every host in one report.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kbootstrap.errors import KbootstrapError, StepError
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.preflight.checks import Finding, check, reach_targets, required_commands, required_ports
from kbootstrap.preflight.facts import PreflightFacts, parse, probe_request, run_probe
from kbootstrap.transport.base import Transport

PROBE_FAILED = "expected SSH, sudo and python3 (3.6 or newer) to work on the host"


def _did_not_run(node: Node, detail: str) -> Finding:
    return Finding(node.name, f"the preflight probe did not run ({detail.removeprefix(node.name + ': ')}); "
                              + PROBE_FAILED)


def request_for(spec: ClusterSpec, node: Node) -> dict[str, Any]:
    """What the probe is asked on `node`: the ports, peers and commands its roles need (checks.py)."""
    return probe_request(required_ports(spec, node), [(x.address, x.port) for x in reach_targets(spec, node)],
                         commands=required_commands(node))


def _probe(spec: ClusterSpec, node: Node, t: Transport) -> PreflightFacts | Finding:
    try:
        return run_probe(t, request_for(spec, node))
    except KbootstrapError as e:
        return _did_not_run(node, f"exit {e.rc}: {e.stderr_tail or 'no output'}" if isinstance(e, StepError) else str(e))


def from_answer(node: Node, raw: Any, error: str | None, sent_at: float, received_at: float) -> PreflightFacts | Finding:
    """A probe answer that came with the engine's facts (runner Gate) as facts, or as the finding it makes."""
    if error is not None:
        return _did_not_run(node, error)
    try:
        return parse(node.name, raw, sent_at, received_at)
    except StepError as e:
        return _did_not_run(node, e.stderr_tail)


def judge(spec: ClusterSpec, probed: Mapping[str, PreflightFacts | Finding], *, bundle_arch: str | None = None,
          expected_listeners: Mapping[str, Collection[int]] | None = None,
          will_install: Collection[str] = ()) -> list[Finding]:
    """Every finding, from each host's probe (or the finding that it did not run)."""
    facts = {h: r for h, r in probed.items() if isinstance(r, PreflightFacts)}
    failed = [r for r in probed.values() if isinstance(r, Finding)]
    return failed + check(spec, facts, bundle_arch=bundle_arch, expected_listeners=expected_listeners,
                          will_install=will_install)


def run_preflight(spec: ClusterSpec, transports: Mapping[str, Transport], *, bundle_arch: str | None = None,
                  expected_listeners: Mapping[str, Collection[int]] | None = None,
                  will_install: Collection[str] = (), parallel: int = 10) -> list[Finding]:
    """Probe every node that has a transport (keyed by inventory name) and return every finding."""
    nodes = [n for n in spec.nodes if n.name in transports]
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(nodes) or 1))) as pool:
        results = list(pool.map(lambda n: _probe(spec, n, transports[n.name]), nodes))
    return judge(spec, {n.name: r for n, r in zip(nodes, results, strict=True)}, bundle_arch=bundle_arch,
                 expected_listeners=expected_listeners, will_install=will_install)
