"""Shared fixtures: inventories built from the lab files, rendered clusters in temp directories."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INVENTORIES = REPO / "inventories"


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
