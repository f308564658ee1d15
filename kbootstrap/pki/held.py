"""Certificates as a host holds them (read by hostside/certs.py), typed and dated for `kbootstrap certs check`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

# kubeconfig field -> how the row names it
FIELDS = {"": "", "certificate-authority-data": "CA", "client-certificate-data": "client"}


@dataclass(frozen=True)
class HeldCert:
    host: str
    path: str
    field: str  # "" for a certificate file, "CA" or "client" for a kubeconfig's embedded one
    subject: str
    issuer: str
    not_after: dt.datetime
    is_ca: bool

    @property
    def file(self) -> str:
        return f"{self.path} ({self.field})" if self.field else self.path

    def days_left(self, now: dt.datetime) -> int:
        return (self.not_after - now).days

    def as_json(self, now: dt.datetime) -> dict:
        return {"host": self.host, "path": self.path, "field": self.field, "subject": self.subject,
                "issuer": self.issuer, "expires": self.not_after.isoformat(), "days_left": self.days_left(now),
                "ca": self.is_ca}


def _name(name: x509.Name) -> str:
    """The common name (and organisations) as kubeadm's `certs check-expiration` shows a certificate: short."""
    cn = [a.value for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    text = str(cn[0]) if cn else name.rfc4514_string()
    return f"{text} (O={','.join(str(o) for o in orgs)})" if orgs else text


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def parse_held(host: str, raw: list[dict]) -> list[HeldCert]:
    """The program's answer [{"path", "field", "pem"}] as rows; a block that does not parse is skipped."""
    rows = []
    for item in raw:
        try:
            cert = x509.load_pem_x509_certificate(item["pem"].encode())
        except (ValueError, KeyError, TypeError):
            continue
        rows.append(HeldCert(host, item["path"], FIELDS.get(item.get("field", ""), item.get("field", "")),
                             _name(cert.subject), _name(cert.issuer), cert.not_valid_after_utc, _is_ca(cert)))
    return rows


def by_expiry(rows: list[HeldCert]) -> list[HeldCert]:
    return sorted(rows, key=lambda r: (r.not_after, r.host, r.path, r.field))
