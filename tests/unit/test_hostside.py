"""The host-side programs are sent as source and run by the host's python3: each imports the standard library
only (nothing from kbootstrap or PyPI), and the package that holds them imports nothing."""

from __future__ import annotations

import ast
import sys

import pytest

from tests.conftest import REPO

HOSTSIDE = REPO / "kbootstrap" / "hostside"


@pytest.mark.parametrize("path", sorted(HOSTSIDE.glob("*.py")), ids=lambda p: p.name)
def test_imports_only_the_standard_library(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import (it runs alone on the host)"
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    if path.name == "__init__.py":
        assert imported == set()


def test_the_programs_are_here():
    assert {p.name for p in HOSTSIDE.glob("*.py")} == {"__init__.py", "agent.py", "probe.py", "csr_approver.py",
                                                      "certs.py"}
