"""Errors of the artifact cache, bundles and builds (all KbootstrapError, so the CLI prints them cleanly)."""

from __future__ import annotations

from kbootstrap.errors import KbootstrapError


class ArtifactError(KbootstrapError):
    """A download, checksum, lock or bundle problem; the message names the file."""


class ChecksumMismatch(ArtifactError):
    def __init__(self, what: str, expected: str, actual: str, against: str):
        self.what, self.expected, self.actual, self.against = what, expected, actual, against
        super().__init__(
            f"{what}: sha256 mismatch against {against}: expected {expected}, got {actual}; the file was not kept"
        )
