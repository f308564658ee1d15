"""Phase `runtime` on a real lab node, from the lab bundle: containerd, runc, crictl and CNI plugins installed,
containerd running with the rendered config, the sandbox image imported and listed by `crictl images`;
a second run changes nothing (containerd not restarted)."""

from __future__ import annotations

import pytest

from kbootstrap.artifacts.build import default_bundle_dir
from kbootstrap.artifacts.bundle import open_bundle
from kbootstrap.engine.runner import run_phases
from kbootstrap.model.spec import load_inventory
from kbootstrap.phases.install_runtime import install_runtime
from kbootstrap.pki.issue import ensure_pki
from kbootstrap.pki.secrets import ensure_secrets
from kbootstrap.render import RenderContext
from kbootstrap.transport.ssh import SSHTransport

pytestmark = [pytest.mark.lab, pytest.mark.bundle, pytest.mark.lab_engine("lxc")]


@pytest.fixture(scope="module")
def bundle():
    path = default_bundle_dir("1.34.2")
    if not (path / "manifest.json").exists():
        pytest.skip("no lab bundle: run lab/build-bundle.sh 1.34.2")
    return path, open_bundle(path)


def test_runtime_from_the_bundle_then_no_change(lab, bundle, root_hosts, tmp_path):
    spec = load_inventory(lab.layout.inventory)
    ctx = RenderContext(spec, ensure_pki(spec, tmp_path / "cd"), ensure_secrets(tmp_path / "cd"))
    node = spec.node("w1")
    phase = install_runtime(ctx, bundle[0], bundle[1], [node])
    t = SSHTransport("w1", str(node.address), spec.ssh_for(node))
    h = root_hosts["w1"]
    try:
        first = run_phases({"w1": t}, [phase], apply=True)
        assert not first.failed, first.failed[0].error
        actions = {(c.action, c.target) for c in first.hosts[0].changes}
        assert ("create", "/usr/local/bin/containerd") in actions and ("start", "containerd") in actions
        assert ("import", "registry.k8s.io/pause:3.10.1") in actions
        assert h.service("containerd").is_running
        assert "v2.1.4" in h.check_output("/usr/local/bin/containerd --version")
        assert "runc version 1.3.3" in h.check_output("/usr/local/sbin/runc --version")
        images = h.check_output("/usr/local/bin/crictl images")
        assert "registry.k8s.io/pause" in images and "3.10.1" in images, images
        started = h.check_output("systemctl show -p ExecMainStartTimestampMonotonic --value containerd")

        second = run_phases({"w1": t}, [phase], apply=True)
        assert not second.failed and second.hosts[0].changes == []
        assert second.hosts[0].round_trips == 1
        assert h.check_output("systemctl show -p ExecMainStartTimestampMonotonic --value containerd") == started
    finally:
        t.close()
