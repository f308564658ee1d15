"""Cluster secrets that are not certificates: the encryption-at-rest key."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from kbootstrap.engine.localfs import write_atomic


@dataclass(frozen=True)
class ClusterSecrets:
    encryption_key: bytes  # 32 random bytes for the aescbc provider


def ensure_secrets(root: Path) -> ClusterSecrets:
    """Load the cluster's secrets, creating them once. Kept 0600 beside the PKI; never regenerated."""
    path = root / "secrets" / "encryption-key"
    if path.exists():
        key = base64.b64decode(path.read_bytes().strip())
    else:
        key = os.urandom(32)
        write_atomic(path, base64.b64encode(key) + b"\n", 0o600)
    return ClusterSecrets(encryption_key=key)
