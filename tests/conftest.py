"""Shared fixtures: inventories built from the lab files, rendered clusters in temp directories."""

from __future__ import annotations

import copy
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
