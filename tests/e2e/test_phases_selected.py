"""init's phases from its table, selected on the command line, on lab-mini's real hosts: `--only-phases` runs
the named phases alone (installing and writing files loads no configuration and starts no kubelet — Debian's
haproxy package starts haproxy with its own empty configuration; `loadbalancers` alone makes it serve the API
port and starts nothing else), `--skip-phases loadbalancers` finishes the cluster without touching the load balancer (haproxy's
start time unchanged, no journal entry for that phase), and a dry run after it has nothing left to do."""

from __future__ import annotations

import json
import os

import pytest

from kbootstrap.lab import lxc

pytestmark = [pytest.mark.lab, pytest.mark.bundle, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

def _active(layout, node: str, unit: str) -> str:
    return lxc.attach(layout.container(layout.node(node)), "systemctl", "is-active", unit, check=False).stdout.strip()


def _listens(layout, node: str, port: int) -> bool:
    out = lxc.attach(layout.container(layout.node(node)), "ss", "-Hltn", f"sport = :{port}").stdout
    return bool(out.strip())


def _started(layout, node: str, unit: str) -> str:
    return lxc.attach(layout.container(layout.node(node)), "systemctl", "show", "-p", "ActiveEnterTimestampMonotonic",
                      unit).stdout.strip()


def _phases_run(home) -> list[tuple[str, str]]:
    """(command, phase) of every applied journal entry of the last run."""
    lines = [json.loads(x) for x in (home / "clusters/lab-mini/journal.jsonl").read_text().splitlines()]
    last = lines[-1]["run"]
    return sorted({(e["command"], e["phase"]) for e in lines if e["run"] == last and e["applied"]})


def test_phases_alone_then_the_rest_without_the_load_balancers(mini, kb_mini):
    home = kb_mini.home
    p = kb_mini("init", "--only-phases", "os,packages,runtime,binaries,files")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert _phases_run(home) == [("init", n) for n in sorted(["os", "packages", "runtime", "binaries", "files"])]
    assert lxc.attach(mini.container(mini.node("mlb1")), "test", "-s", "/etc/haproxy/haproxy.cfg", check=False).returncode == 0
    assert not _listens(mini, "mlb1", 6443) and _active(mini, "mcp1", "kubelet") != "active"

    p = kb_mini("init", "--only-phases", "loadbalancers")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert _phases_run(home) == [("init", "loadbalancers")]
    assert _listens(mini, "mlb1", 6443) and _active(mini, "mcp1", "kubelet") != "active"
    haproxy_started = _started(mini, "mlb1", "haproxy")

    p = kb_mini("init", "--skip-phases", "loadbalancers")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert ("init", "loadbalancers") not in _phases_run(home) and ("init", "cluster") in _phases_run(home)
    assert _started(mini, "mlb1", "haproxy") == haproxy_started
    assert _active(mini, "mcp1", "kubelet") == "active"

    p = kb_mini("init", "--dry-run")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]  # nothing left to do: exit 0, not 3
