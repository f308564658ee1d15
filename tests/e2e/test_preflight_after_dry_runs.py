"""init's preflight after runs that changed nothing (issue: the journal defect), on lab-mini's real hosts.

The journal used to key its entries by host and phase alone, so `init --dry-run`, `plan` and `reset` (which has a
`files` phase too) left entries that made init's preflight take every host as already configured and skip its
port-in-use check; a program on port 2379 of the control plane then surfaced four minutes later as an etcd TLS
error. Here: those three commands run, another program takes port 2379 on mcp1, and `init` is refused by
preflight (exit 2) naming mcp1, the port and the program, with nothing changed on any host (the pending plan is
the same before and after).
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from kbootstrap.lab import lxc
from tests.conftest import INVENTORIES, kb

MINI = INVENTORIES / "lab-mini.yaml"

pytestmark = [pytest.mark.lab, pytest.mark.bundle, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

def _pending(kb_mini) -> list[tuple[str, str]]:
    p = kb_mini("plan", "--output", "json")
    assert p.returncode == 3, p.stdout[-2000:] + p.stderr[-2000:]
    return sorted((h["host"], c["target"]) for h in json.loads(p.stdout)["hosts"] for c in h["changes"])


def test_preflight_checks_ports_after_a_dry_run_a_plan_and_a_reset(mini, kb_mini):
    dry = kb_mini("init", "--dry-run")
    assert dry.returncode == 3, dry.stdout[-2000:] + dry.stderr[-2000:]
    before = _pending(kb_mini)
    reset = kb_mini("reset", "--yes")
    assert reset.returncode == 0, reset.stdout[-2000:] + reset.stderr[-2000:]
    cp = lxc.attach(mini.container(mini.node("mcp1")), "systemd-run", "--unit", "kb-squatter", "python3", "-m",
                    "http.server", "2379")
    assert cp.returncode == 0
    lxc.attach(mini.container(mini.node("mcp1")), "sh", "-c",
               "for i in $(seq 50); do ss -ltn | grep -q ':2379 ' && exit 0; sleep 0.1; done; exit 1")
    init = kb_mini("init")
    print(init.stderr[-3000:])
    assert init.returncode == 2, init.stdout[-2000:] + init.stderr[-2000:]
    assert "preflight found errors" in init.stderr
    line = next(x for x in init.stderr.splitlines() if "port 2379" in x)
    assert "python3" in line and "etcd clients" in line
    mcp1 = init.stderr.index("mcp1:")
    assert mcp1 < init.stderr.index("port 2379")
    assert _pending(kb_mini) == before  # nothing changed on any host


def test_a_vip_outside_the_load_balancers_subnet_is_refused_before_any_change(mini, kb_mini, tmp_path):
    """Bad input the inventory alone cannot show: the VIP is a valid address, but not of the subnet mlb1's eth0 is
    on (10.77.0.0/24). Preflight refuses, exit 2, naming mlb1, the field and the subnet; nothing changed."""
    before = _pending(kb_mini)
    doc = yaml.safe_load(MINI.read_text())
    doc["load_balancer"] = {"vip": "192.168.77.10", "interface": "eth0"}
    inventory = tmp_path / "lab-mini-vip.yaml"
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    init = kb("init", "-i", str(inventory), home=kb_mini.home, timeout=900)
    assert init.returncode == 2, init.stdout[-2000:] + init.stderr[-2000:]
    assert "Traceback" not in init.stderr
    line = next(x for x in init.stderr.splitlines() if "load_balancer.vip" in x)
    assert "192.168.77.10" in line and "outside eth0's subnet 10.77.0.0/24" in line, line
    assert init.stderr.index("mlb1:") < init.stderr.index("load_balancer.vip")
    assert _pending(kb_mini) == before  # nothing changed on any host


def test_an_unreachable_host_is_exit_1_for_plan_and_a_preflight_refusal_for_init(mini, kb_mini):
    """The exit-code table on real hosts: mcp1 stopped, `plan` fails on it (1, naming it); `init` is refused by its
    preflight before anything changes (2, naming it)."""
    lxc.stop(mini.container(mini.node("mcp1")))
    plan = kb_mini("plan")
    assert plan.returncode == 1, plan.stdout[-2000:] + plan.stderr[-2000:]
    assert "mcp1" in plan.stderr and "Traceback" not in plan.stderr
    init = kb_mini("init")
    assert init.returncode == 2, init.stdout[-2000:] + init.stderr[-2000:]
    assert "mcp1" in init.stderr and "preflight" in init.stderr and "Traceback" not in init.stderr
