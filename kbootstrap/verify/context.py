"""The render context for `verify`, read from the cluster directory without writing anything to it.

`ensure_pki` / `ensure_secrets` issue what is missing; `verify` must not: a certificate issued now would not
be on any host, and verify is a read-only command. So it loads exactly what is there, names what is
missing, and reports certificates that the next init/apply would reissue as a check of their own.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

from kbootstrap.errors import PKIError
from kbootstrap.model.etcd_members import MembersRecord
from kbootstrap.model.spec import ClusterSpec
from kbootstrap.pki.issue import (
    CERTS,
    KEYPAIRS,
    ClusterPKI,
    KeyCert,
    PKIReport,
    _load_key,
    _load_pair,
    mismatch,
    wanted_certs,
)
from kbootstrap.pki.secrets import ClusterSecrets
from kbootstrap.render import RenderContext


def load_context(spec: ClusterSpec, root: Path) -> RenderContext:
    """The cluster's PKI and secrets as they are in `root`; a missing file is an error naming it."""
    if not root.is_dir():
        raise PKIError(f"no cluster directory at {root}: pass --cluster-dir, or set KBOOTSTRAP_HOME "
                       f"(verify reads the PKI that `kbootstrap init` made; it creates nothing)")
    missing: list[str] = []
    certs: dict[tuple[str, str | None], KeyCert] = {}
    for row in CERTS:
        if row.is_ca:
            _put(certs, (row.name, None), root, f"pki/{row.base}", missing)
    for want in wanted_certs(spec):
        _put(certs, (want.name, want.node), root, want.store_as, missing)
    keypairs = {}
    for kp in KEYPAIRS:
        path = root / f"pki/{kp.base}.key"
        if path.exists():
            keypairs[kp.name] = _load_key(path)
        else:
            missing.append(str(path.relative_to(root)))
    key_file = root / "secrets" / "encryption-key"
    if not key_file.exists():
        missing.append("secrets/encryption-key")
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise PKIError(f"{root} lacks {shown}: it is not this cluster's directory, or init has not run "
                       "for every node of the inventory (verify creates nothing)")
    secrets = ClusterSecrets(encryption_key=base64.b64decode(key_file.read_bytes().strip()))
    return RenderContext(spec, ClusterPKI(root=root, certs=certs, keypairs=keypairs, report=PKIReport()), secrets,
                         etcd_record=MembersRecord.load(root))


def _put(certs: dict, key: tuple[str, str | None], root: Path, store_as: str, missing: list[str]) -> None:
    pair = _load_pair(root, store_as)
    if pair is None:
        missing.append(f"{store_as}.crt")
    else:
        certs[key] = pair


def stale_certificates(ctx: RenderContext, now: dt.datetime | None = None) -> list[str]:
    """Leaf certificates the next `init`/`apply` would reissue (near expiry, SANs changed...), with why."""
    now = now or dt.datetime.now(dt.UTC)
    out = []
    for want in wanted_certs(ctx.spec):
        why = mismatch(want, ctx.pki.get(want.name, want.node), ctx.pki.ca(want.ca), now)  # type: ignore[arg-type]
        if why:
            out.append(f"{want.label}: {why}")
    return out
