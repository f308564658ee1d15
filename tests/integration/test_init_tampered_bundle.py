"""A bundle file that does not match its manifest stops `init` and `join` before any host is contacted.

The bundle is the lab's (symlinked, not copied) with one file replaced by a tampered copy; the inventory's
hosts are lab addresses no node has, so reaching any of them would show up as a connection error instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kbootstrap.artifacts.build import default_bundle_dir

pytestmark = pytest.mark.bundle
BUNDLE = default_bundle_dir("1.34.2")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tampered(tmp_path):
    if not (BUNDLE / "manifest.json").exists():
        pytest.fail(f"no lab bundle at {BUNDLE}: run lab/build-bundle.sh 1.34.2")
    out = tmp_path / "bundle"
    for src in BUNDLE.rglob("*"):
        if src.is_file():
            dst = out / src.relative_to(BUNDLE)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.name == "manifest.json":
                dst.write_bytes(src.read_bytes())
            else:
                dst.symlink_to(src)
    victim = out / "crictl" / "crictl"
    data = bytearray(victim.resolve().read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.unlink()
    victim.write_bytes(bytes(data))
    return out


def _inventory(tmp_path: Path) -> Path:
    doc = yaml.safe_load((REPO / "inventories/lab-mini.yaml").read_text())
    doc.pop("artifacts", None)
    doc["ssh"] = {"user": "nobody", "connect_timeout": 1}
    for i, n in enumerate(doc["nodes"]):
        n["address"] = f"10.77.0.{250 + i}"  # lab addresses no node has: nothing would answer
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("command", ["init", "join"])
def test_tampered_bundle_is_refused_before_any_host(command, tampered, tmp_path):
    inv = _inventory(tmp_path)
    env = {**os.environ, "KBOOTSTRAP_HOME": str(tmp_path / "home")}
    p = subprocess.run([sys.executable, "-m", "kbootstrap", command, "-i", str(inv), "--artifacts", str(tampered)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "crictl/crictl" in p.stderr and "sha256" in p.stderr, p.stderr
    assert "10.77.0.25" not in p.stdout + p.stderr  # no host was contacted
    assert not (tmp_path / "home" / "clusters").exists() or not any((tmp_path / "home" / "clusters").rglob("journal.jsonl"))
