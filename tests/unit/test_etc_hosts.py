"""The /etc/hosts block's shell, run for real (sh, awk, sed) on a file standing in for /etc/hosts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kbootstrap.model.spec import load_inventory
from kbootstrap.render import etc_hosts

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(tmp_path):
    hosts = tmp_path / "hosts"

    def sh(argv: list[str]) -> int:
        script = argv[2].replace("/etc/hosts", str(hosts)).replace("/etc/.hosts", str(tmp_path / ".hosts"))
        return subprocess.run(["sh", "-c", script], capture_output=True, text=True).returncode

    return hosts, sh


def test_block_replaced_rest_kept_then_no_change(run):
    hosts, sh = run
    spec = load_inventory(REPO / "inventories" / "lab-stacked.yaml")
    hosts.write_text("127.0.0.1\tlocalhost\n# BEGIN kbootstrap: old\n10.0.0.9 gone\n# END kbootstrap\n::1 ip6-localhost\n")
    step = etc_hosts.hosts_step(spec)
    assert sh(step.probe) != 0
    assert sh(step.command) == 0 and sh(step.probe) == 0
    text = hosts.read_text()
    assert text.startswith("127.0.0.1\tlocalhost\n::1 ip6-localhost\n# BEGIN kbootstrap")
    assert "gone" not in text and "10.77.0.22  cp2\n" in text and text.count("# BEGIN") == 1
    assert sh(step.command) == 0 and hosts.read_text() == text
    assert [p.name for p in hosts.parent.iterdir()] == ["hosts"]  # no temporary file left


def test_remove_keeps_everything_else_even_without_end_marker(run):
    hosts, sh = run
    step = etc_hosts.remove_hosts_step()
    hosts.write_text("a\n# BEGIN kbootstrap: x\n1.2.3.4 n\n# END kbootstrap\nb\n")
    assert sh(step.probe) != 0
    assert sh(step.command) == 0 and hosts.read_text() == "a\nb\n" and sh(step.probe) == 0
    hosts.write_text("a\n# BEGIN kbootstrap: cut short\nb\nc\n")  # an END line deleted by hand
    assert sh(step.command) == 0 and hosts.read_text() == "a\nb\nc\n"
