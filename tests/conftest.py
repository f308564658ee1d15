"""Shared fixtures: inventories built from the lab files, rendered clusters in temp directories."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INVENTORIES = REPO / "inventories"


def kb(*args: str, home: Path | None = None, timeout: float = 120, prefix: tuple[str, ...] = (),
       check: bool = False) -> subprocess.CompletedProcess:
    """The kbootstrap command line as a user runs it (`python -m kbootstrap ARGS`, from the repository), with its
    own KBOOTSTRAP_HOME when `home` is given, so no test writes into the real cluster directories. `prefix`: a
    command to run it under (unshare, env). `check`: exit 0 or the test fails, showing both outputs."""
    env = {**os.environ, "KBOOTSTRAP_HOME": str(home)} if home is not None else None
    p = subprocess.run([*prefix, sys.executable, "-m", "kbootstrap", *args], capture_output=True, text=True, env=env,
                       timeout=timeout, cwd=REPO)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def kubectl(binary: Path, kubeconfig: Path, *args: str, check: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess:
    """The bundle's kubectl against a test cluster, bounded (a request never hangs a test)."""
    return subprocess.run([str(binary), "--kubeconfig", str(kubeconfig), "--request-timeout", "5s", *args],
                          capture_output=True, text=True, check=check, timeout=timeout)


def render_context(spec, root: Path, **kwargs):
    """A RenderContext with the cluster's PKI and secrets made (or reused) in `root`."""
    from kbootstrap.pki.issue import ensure_pki
    from kbootstrap.pki.secrets import ensure_secrets
    from kbootstrap.render import RenderContext

    return RenderContext(spec, ensure_pki(spec, root), ensure_secrets(root), **kwargs)


@pytest.fixture
def stacked_data() -> dict:
    """The lab-stacked inventory as plain data, for tests that break one field at a time."""
    return copy.deepcopy(yaml.safe_load((INVENTORIES / "lab-stacked.yaml").read_text()))


@pytest.fixture
def external_data() -> dict:
    return copy.deepcopy(yaml.safe_load((INVENTORIES / "lab-external.yaml").read_text()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI every program is installed, so a `tools` test that skips is a failure (KB_FORBID_SKIPS=1)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("KB_FORBID_SKIPS") and item.get_closest_marker("tools"):
        report.outcome = "failed"
        report.longrepr = f"skipped where it must run (KB_FORBID_SKIPS is set): {report.longrepr}"
