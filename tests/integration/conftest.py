"""The lab bundles the `bundle` tests check (lab/build-bundle.sh VERSION), one test run per supported release.

A bundle that exists is always checked. A missing one skips, saying why; it fails instead when KB_FORBID_SKIPS is set
and KB_BUNDLE_VERSIONS (default: "1.34.2", the one .ci/install builds; space- or comma-separated) lists its version —
an environment that is meant to have it. KB_BUNDLE_DIR=DIR checks that one directory instead (its manifest says the
version).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kbootstrap.artifacts.build import default_bundle_dir
from kbootstrap.model import versions


def required_bundle_versions() -> list[str]:
    raw = os.environ.get("KB_BUNDLE_VERSIONS", versions.DEFAULT_VERSION)
    return [v.removeprefix("v") for v in raw.replace(",", " ").split()]


def lab_bundles() -> dict[str, Path]:
    """version -> bundle directory, for every release the tests check."""
    if os.environ.get("KB_BUNDLE_DIR"):
        path = Path(os.environ["KB_BUNDLE_DIR"])
        try:
            version = json.loads((path / "manifest.json").read_text())["kubernetes"]
        except (OSError, ValueError, KeyError):
            version = versions.DEFAULT_VERSION
        return {version: path}
    return {v: default_bundle_dir(v) for v in versions.SUPPORTED}


LAB_BUNDLES = lab_bundles()


@pytest.fixture(scope="module", params=list(LAB_BUNDLES.items()), ids=list(LAB_BUNDLES))
def lab_bundle(request) -> tuple[str, Path]:
    """(version, directory) of a built lab bundle; skips (or fails, see above) when the bundle is not there."""
    version, path = request.param
    if not (path / "manifest.json").is_file():
        how = f"build it with lab/build-bundle.sh {version}"
        listed = os.environ.get("KB_BUNDLE_VERSIONS", versions.DEFAULT_VERSION)
        if version not in required_bundle_versions():
            pytest.skip(f"no lab bundle {version} at {path}, and KB_BUNDLE_VERSIONS ({listed!r}) does not list "
                        f"{version}: not required here ({how}; list it in KB_BUNDLE_VERSIONS to require it)")
        if os.environ.get("KB_FORBID_SKIPS"):
            pytest.fail(f"no lab bundle at {path}, and KB_BUNDLE_VERSIONS ({listed!r}) requires {version} ({how})")
        pytest.skip(f"no lab bundle at {path} ({how})")
    return version, path
