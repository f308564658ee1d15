"""What is issued in a cluster directory, and when it expires."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509

from kbootstrap.model.spec import ClusterSpec
from kbootstrap.pki.issue import wanted_certs
from kbootstrap.pki.table import CERTS


def issued_status(spec: ClusterSpec, root: Path) -> list[tuple[str, str, str, str, str]]:
    now = dt.datetime.now(dt.UTC)
    rows = []
    entries: list[tuple[str, str | None, str]] = [(r.name, None, f"pki/{r.base}") for r in CERTS if r.is_ca]
    entries += [(w.name, w.node, w.store_as) for w in wanted_certs(spec)]
    for name, node, store_as in entries:
        path = root / f"{store_as}.crt"
        if not path.exists():
            rows.append((name, node or "", "-", "not issued", "-"))
            continue
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        left = (cert.not_valid_after_utc - now).days
        rows.append((name, node or "", cert.subject.rfc4514_string(), f"{cert.not_valid_after_utc:%Y-%m-%d}", str(left)))
    return rows
