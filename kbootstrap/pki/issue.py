"""Keys, CAs and signed certificates, kept in the operator's cluster directory.

`ensure_pki` is load-or-create: existing valid files are reused, only what is missing or no longer matches
the table (a new node, changed SANs, near expiry) is issued, and a CA is never replaced behind the
operator's back. Keys are generated in a thread pool (OpenSSL releases the GIL while generating).
"""

from __future__ import annotations

import datetime as dt
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kbootstrap.engine.localfs import private_dirs, write_atomic
from kbootstrap.errors import PKIError
from kbootstrap.model.spec import ClusterSpec, KeyAlgorithm, Node
from kbootstrap.pki.table import CERT_BY_NAME, CERTS, KEYPAIRS, KUBECONFIGS, CertRow, SANs, Usage, alt_names, subjects

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
# Issue certificates valid from a little in the past so a node whose clock lags does not reject them.
BACKDATE = dt.timedelta(minutes=5)
# PKIReport.reissued's reason for a leaf `certs renew` asked for (the others say why they no longer fit).
RENEWED = "renewed"
# Leaf certificates closer than this to expiry are renewed on the next run.
RENEW_BEFORE = dt.timedelta(days=30)

_EKU = {Usage.SERVER: ExtendedKeyUsageOID.SERVER_AUTH, Usage.CLIENT: ExtendedKeyUsageOID.CLIENT_AUTH}


@dataclass(frozen=True)
class KeyCert:
    key: PrivateKey  # None only in `ca_only`'s CA: a node that joins by itself never holds a CA key
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


@dataclass(frozen=True)
class Wanted:
    """What one certificate must look like: derived from a table row and, for per-node rows, a node."""

    name: str  # row name
    node: str | None
    ca: str | None
    cn: str
    orgs: tuple[str, ...]
    usages: tuple[Usage, ...]
    dns: tuple[str, ...]
    ips: tuple[IPv4Address | IPv6Address, ...]
    store_as: str  # path in the cluster directory, without extension

    @property
    def label(self) -> str:
        return f"{self.name} ({self.node})" if self.node else self.name


@dataclass(frozen=True)
class Renewal:
    """`certs renew`: reissue these leaves (row names of wanted_certs; none named: every leaf), except one issued
    since `fresh_since`, so a re-run, or a resume after a failure, pushes what it renewed instead of renewing it
    again. `save=False` (--dry-run) issues in memory only."""

    fresh_since: dt.datetime
    names: frozenset[str] = frozenset()
    save: bool = True

    def wants(self, want: Wanted, have: KeyCert) -> bool:
        issued = have.cert.not_valid_before_utc + BACKDATE
        return (not self.names or want.name in self.names) and issued < self.fresh_since


@dataclass
class PKIReport:
    created: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    reissued: list[tuple[str, str]] = field(default_factory=list)  # (label, why)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.reissued)


@dataclass
class ClusterPKI:
    """Every key and certificate of one cluster, loaded in memory."""

    root: Path
    certs: dict[tuple[str, str | None], KeyCert]
    keypairs: dict[str, PrivateKey]
    report: PKIReport

    def get(self, name: str, node: str | None = None) -> KeyCert:
        return self.certs[(name, node)]

    def ca(self, name: str) -> KeyCert:
        return self.certs[(name, None)]


def ca_only(ca_pem: bytes) -> ClusterPKI:
    """All a node that joins by itself (`join --local`) knows of the PKI: the cluster CA's certificate, as
    discovery verified it. Rendering for a `join: local` worker reads nothing else (pki/table.py gives it
    no kbootstrap-issued certificate)."""
    ca = KeyCert(key=None, cert=x509.load_pem_x509_certificate(ca_pem))  # type: ignore[arg-type]
    return ClusterPKI(Path("/nonexistent"), {("ca", None): ca}, {}, PKIReport())


def key_pem(key: PrivateKey) -> bytes:
    # "RSA PRIVATE KEY" (PKCS#1) / "EC PRIVATE KEY" (SEC1), as kubeadm's keyutil writes them.
    fmt = serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(kc: KeyCert) -> bool:
    cert_pub = kc.cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public_pem(kc.key) == cert_pub


def new_key(algorithm: KeyAlgorithm) -> PrivateKey:
    if algorithm is KeyAlgorithm.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _algorithm_of(key: PrivateKey) -> KeyAlgorithm:
    return KeyAlgorithm.ECDSA_P256 if isinstance(key, ec.EllipticCurvePrivateKey) else KeyAlgorithm.RSA_2048


def _key_usage(key: PrivateKey, ca: bool) -> x509.KeyUsage:
    # kubeadm: digitalSignature (+ keyEncipherment for RSA keys, meaningless for ECDSA), + keyCertSign for CAs.
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        key_cert_sign=ca,
        content_commitment=False, data_encipherment=False, key_agreement=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def make_ca(cn: str, key: PrivateKey, days: int, now: dt.datetime | None = None) -> x509.Certificate:
    now = now or dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(key, ca=True), critical=True)
        .add_extension(ski, critical=False)
        # kubeadm gives each CA a DNS SAN equal to its CN.
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )


def sign(want: Wanted, key: PrivateKey, ca: KeyCert, days: int, now: dt.datetime | None = None) -> x509.Certificate:
    now = now or dt.datetime.now(dt.UTC)
    # A leaf never outlives its CA.
    not_after = min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(want.cn, want.orgs))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([_EKU[u] for u in want.usages]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in want.dns]
    sans += [x509.IPAddress(i) for i in want.ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _serial() -> int:
    return secrets.randbits(63) | 1


# ----------------------------------------------------------------------------------------------------------
# what the table asks for


def wanted_certs(spec: ClusterSpec) -> list[Wanted]:
    """Every leaf certificate the cluster needs (CAs excluded), from the cert and kubeconfig tables."""
    out: list[Wanted] = []
    for row in CERTS:
        if row.is_ca:
            continue
        for node in subjects(spec, row.per_node):
            out.append(_wanted_from_row(spec, row, node))
    for kc in KUBECONFIGS:
        for node in subjects(spec, kc.per_node):
            stem = kc.file.removesuffix(".conf")
            out.append(
                Wanted(
                    name=kc.cert_name, node=node.name if node else None, ca="ca",
                    cn=kc.cn.format(node=node.name if node else ""), orgs=kc.orgs, usages=(Usage.CLIENT,),
                    dns=(), ips=(),
                    store_as=f"kubeconfig/nodes/{node.name}/{stem}" if node else f"kubeconfig/{stem}",
                )
            )
    return out


def _wanted_from_row(spec: ClusterSpec, row: CertRow, node: Node | None) -> Wanted:
    dns, ips = alt_names(spec, row.sans, node) if row.sans is not SANs.NONE else ([], [])
    return Wanted(
        name=row.name, node=node.name if node else None, ca=row.ca,
        cn=row.cn.format(node=node.name if node else ""), orgs=row.orgs, usages=row.usages,
        dns=tuple(dns), ips=tuple(ips),
        store_as=f"pki/nodes/{node.name}/{row.base}" if node else f"pki/{row.base}",
    )


def mismatch(want: Wanted, have: KeyCert, ca: KeyCert, now: dt.datetime) -> str | None:
    """Why an existing certificate no longer fits, or None when it can be reused."""
    c = have.cert
    if not key_matches(have):
        return "key does not match certificate"
    if c.issuer != ca.cert.subject:
        return "issued by another CA"
    try:
        c.verify_directly_issued_by(ca.cert)
    except Exception:  # noqa: BLE001 - whatever fails to verify gets reissued
        return "signature does not verify against the current CA"
    if c.subject != _name(want.cn, want.orgs):
        return f"subject changed to CN={want.cn} O={','.join(want.orgs)}"
    try:
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have_dns = set(san.get_values_for_type(x509.DNSName))
        have_ips = set(san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        have_dns, have_ips = set(), set()
    if have_dns != set(want.dns) or have_ips != set(want.ips):
        return "subject alternative names changed"
    try:
        eku = set(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        eku = set()
    if eku != {_EKU[u] for u in want.usages}:
        return "key usages changed"
    if c.not_valid_after_utc - now < RENEW_BEFORE:
        return f"expires {c.not_valid_after_utc:%Y-%m-%d}"
    return None


# ----------------------------------------------------------------------------------------------------------
# the cluster directory


def _load_key(path: Path) -> PrivateKey:
    # The RSA consistency check costs ~50 ms a key; every key is compared with its certificate instead.
    key = serialization.load_pem_private_key(path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise PKIError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def _load_pair(root: Path, store_as: str) -> KeyCert | None:
    crt, key = root / f"{store_as}.crt", root / f"{store_as}.key"
    if not crt.exists() and not key.exists():
        return None
    if not crt.exists() or not key.exists():
        missing = crt if not crt.exists() else key
        raise PKIError(f"{missing} is missing while its pair exists; restore it or remove both files")
    try:
        return KeyCert(_load_key(key), x509.load_pem_x509_certificate(crt.read_bytes()))
    except ValueError as e:
        raise PKIError(f"{crt} / {key}: cannot be read ({e})") from None


def _save_pair(root: Path, store_as: str, kc: KeyCert) -> None:
    write_atomic(root / f"{store_as}.key", kc.key_pem, 0o600)
    write_atomic(root / f"{store_as}.crt", kc.cert_pem, 0o644)


def ensure_pki(spec: ClusterSpec, root: Path, workers: int = 4, now: dt.datetime | None = None,
               renewal: Renewal | None = None) -> ClusterPKI:
    """Load the cluster's PKI from `root`, issuing whatever is missing or stale (and what `renewal` names).
    Never replaces a CA."""
    now = now or dt.datetime.now(dt.UTC)
    save = renewal is None or renewal.save
    private_dirs(root)
    algo = spec.certificates.key_algorithm
    report = PKIReport()
    certs: dict[tuple[str, str | None], KeyCert] = {}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # 1. CAs: load, or create when absent. A CA whose key does not match its cert stops everything.
        ca_rows = [r for r in CERTS if r.is_ca]
        loaded = {r.name: _load_pair(root, f"pki/{r.base}") for r in ca_rows}
        new_keys = {r.name: pool.submit(new_key, algo) for r in ca_rows if loaded[r.name] is None}
        for row in ca_rows:
            have = loaded[row.name]
            if have is not None:
                if not key_matches(have):
                    raise PKIError(
                        f"{root}/pki/{row.base}.key does not match {row.base}.crt; kbootstrap never replaces a CA: "
                        "restore the matching key (or move the cluster directory away to start a new cluster)"
                    )
                if have.cert.not_valid_after_utc < now:
                    raise PKIError(f"CA {row.name} expired on {have.cert.not_valid_after_utc:%Y-%m-%d}; rotate it first")
                certs[(row.name, None)] = have
                report.reused.append(row.name)
            else:
                key = new_keys[row.name].result()
                kc = KeyCert(key, make_ca(row.cn, key, spec.certificates.ca_validity_days, now))
                if save:
                    _save_pair(root, f"pki/{row.base}", kc)
                certs[(row.name, None)] = kc
                report.created.append(row.name)

        # 2. Leaves: reuse what still fits, issue the rest (keys in parallel).
        todo: list[tuple[Wanted, str | None]] = []
        for want in wanted_certs(spec):
            ca = certs[(want.ca, None)]  # type: ignore[index]
            have = _load_pair(root, want.store_as)
            why = None if have is None else mismatch(want, have, ca, now)
            if have is not None and why is None and renewal is not None and renewal.wants(want, have):
                why = RENEWED
            if have is not None and why is None:
                certs[(want.name, want.node)] = have
                report.reused.append(want.label)
            else:
                todo.append((want, why))
        keys = list(pool.map(lambda _: new_key(algo), todo))
        for (want, why), key in zip(todo, keys, strict=True):
            ca = certs[(want.ca, None)]  # type: ignore[index]
            kc = KeyCert(key, sign(want, key, ca, spec.certificates.validity_days, now))
            if save:
                _save_pair(root, want.store_as, kc)
            certs[(want.name, want.node)] = kc
            if why is None:
                report.created.append(want.label)
            else:
                report.reissued.append((want.label, why))

        # 3. Bare key pairs (service-account signing key): create once, keep forever.
        keypairs: dict[str, PrivateKey] = {}
        for kp in KEYPAIRS:
            path = root / f"pki/{kp.base}.key"
            if path.exists():
                keypairs[kp.name] = _load_key(path)
                report.reused.append(kp.name)
            else:
                keypairs[kp.name] = new_key(algo)
                if save:
                    write_atomic(path, key_pem(keypairs[kp.name]), 0o600)
                    write_atomic(root / f"pki/{kp.base}.pub", public_pem(keypairs[kp.name]), 0o644)
                report.created.append(kp.name)

    return ClusterPKI(root=root, certs=certs, keypairs=keypairs, report=report)


__all__ = ["CERT_BY_NAME", "ClusterPKI", "KeyCert", "PKIReport", "Renewal", "Wanted", "ensure_pki", "wanted_certs"]
