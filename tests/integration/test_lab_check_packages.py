"""The controller check's table says which Debian package ships each command and file: this machine's dpkg
database agrees for every row, and every package the table names is in .ci/packages, a direct dependency of one,
or in every Debian root (priority required), so the fix the check prints is right and .ci/install installs it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kbootstrap.lab import check
from kbootstrap.lab.layout import REPO

pytestmark = [pytest.mark.tools, pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg")]

ROWS = {**check.COMMANDS, **check.VAGRANT_COMMANDS, **check.FILES, **check.VAGRANT_FILES}
LISTED = {line.strip() for line in (REPO / ".ci/packages").read_text().splitlines()
          if line.strip() and not line.startswith("#")}


def _field(package: str, field: str) -> str:
    return subprocess.run(["dpkg-query", "-W", "-f", "${" + field + "}", package], capture_output=True,
                          text=True).stdout


DEPENDS = {re.split(r"[\s:(]", d.strip())[0] for p in LISTED for f in ("Depends", "Pre-Depends")
           for d in re.split(r"[,|]", _field(p, f)) if d.strip()}


def _owner(path: str) -> set[str]:
    """Packages owning a path, trying the usrmerge aliases (dpkg records /bin/tar, the system has /usr/bin/tar)."""
    candidates = [path]
    for a, b in (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/")):
        if path.startswith(a):
            candidates.append(b + path[len(a):])
    for c in candidates:
        p = subprocess.run(["dpkg-query", "-S", c], capture_output=True, text=True)
        if p.returncode == 0:
            return {line.split(":")[0].strip() for line in p.stdout.splitlines()}
    return set()


@pytest.mark.parametrize("name", sorted(ROWS))
def test_the_named_package_ships_it_and_is_installed_by_ci(name):
    package = ROWS[name][0]
    found = check.find_file(Path("/"), name) if name.startswith("/") else check.find_command(Path("/"), name)
    assert found, f"{name} is not on this machine (.ci/install installs {package})"
    assert package in _owner(str(found)), f"{found} belongs to {_owner(str(found))}, the table says {package}"
    required = _field(package, "Priority") == "required"
    assert package in LISTED | DEPENDS or required, f"{package}: not in .ci/packages, nor a dependency, nor required"
