"""The README's Vagrant path, run verbatim: the three command lines of its "With Vagrant" block, as a user types
them from the repository root (`vagrant up`, then `kbootstrap init` and `join`, then `vagrant destroy`).

Host keys are verified, never accepted on first use: the lab-stacked addresses are first removed from the lab's
known_hosts, so only the Vagrantfile's after-up trigger (keys read through lxc-attach) can put them back, and
kbootstrap connects with strict checking (no --accept-new-host-keys in the README). Proven: every Kubernetes node
Ready through the VIP, the recorded keys equal to each node's own, and nothing left after `vagrant destroy`.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from kbootstrap.artifacts.build import default_bundle_dir
from kbootstrap.lab import known_hosts, lifecycle, lxc
from kbootstrap.lab.layout import REPO, load_layout

pytestmark = [pytest.mark.lab, pytest.mark.bundle, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

INVENTORY = REPO / "inventories" / "lab-stacked.yaml"
KUBECTL = default_bundle_dir("1.34.2") / "kubectl" / "kubectl"


def readme_vagrant_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"\*\*With Vagrant\*\*.*?```sh\n(.*?)```", text, re.S)
    assert block, "the README has no **With Vagrant** sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def _run(line: str, env: dict, timeout: float = 1200) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=timeout)
    print(f"$ {line}\n  exit {p.returncode} in {time.monotonic() - t0:.0f} s")
    return p


def test_the_readme_vagrant_commands_verbatim(tmp_path):
    lines = readme_vagrant_lines()
    assert len(lines) == 3 and "vagrant up" in lines[0] and "kbootstrap init" in lines[1] and "destroy" in lines[2]
    layout = load_layout(INVENTORY)
    env = {**os.environ, "KBOOTSTRAP_HOME": str(tmp_path / "home")}
    lifecycle.down(layout)  # a crashed earlier run's leftovers; also forgets the recorded host keys
    addresses = [str(n.address) for n in layout.nodes]
    assert not any(known_hosts.entries(layout.known_hosts, a) for a in addresses)
    try:
        up = _run(lines[0], env)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        for n in layout.nodes:  # the trigger recorded each node's own keys, read out of band
            assert sorted(known_hosts.entries(layout.known_hosts, str(n.address))) == \
                sorted(lxc.host_keys(layout.container(n))), n.name
        cluster = _run(lines[1], env)
        assert cluster.returncode == 0, cluster.stdout[-3000:] + cluster.stderr[-3000:]
        assert "host key" not in cluster.stderr.lower()
        conf = tmp_path / "home" / "clusters" / "lab-stacked" / "admin.conf"
        nodes = subprocess.run([str(KUBECTL), "--kubeconfig", str(conf), "get", "nodes", "--no-headers"],
                               capture_output=True, text=True, timeout=60)
        print(nodes.stdout)
        rows = [r.split() for r in nodes.stdout.splitlines()]
        kube_nodes = {n.name for n in layout.nodes if set(n.roles) & {"control-plane", "worker"}}
        assert {r[0] for r in rows} == kube_nodes and all(r[1] == "Ready" for r in rows), nodes.stdout + nodes.stderr
        destroy = _run(lines[2], env, timeout=600)
        assert destroy.returncode == 0, destroy.stdout[-3000:] + destroy.stderr[-3000:]
        assert all(not lxc.info(layout.container(n)).exists for n in layout.nodes)
        assert not any(known_hosts.entries(layout.known_hosts, a) for a in addresses)  # forgotten on destroy
    finally:
        lifecycle.down(layout)
