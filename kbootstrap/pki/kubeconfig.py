"""Kubeconfig files with embedded client certificates (as kubeadm writes them)."""

from __future__ import annotations

import base64

import yaml

from kbootstrap.pki.issue import KeyCert


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(cluster: str, server: str, ca_pem: bytes, user: str, client: KeyCert | None = None,
               token: str | None = None) -> bytes:
    """A single-context kubeconfig; exactly one of `client` (cert auth) or `token` (bootstrap token)."""
    credentials: dict[str, str] = {}
    if client is not None:
        credentials = {"client-certificate-data": _b64(client.cert_pem), "client-key-data": _b64(client.key_pem)}
    elif token is not None:
        credentials = {"token": token}
    return _doc(cluster, server, {"certificate-authority-data": _b64(ca_pem)}, user, credentials)


def kubeconfig_from_files(cluster: str, server: str, ca_file: str, user: str, cert_and_key_file: str) -> bytes:
    """A kubeconfig that names files instead of embedding them: client-go re-reads a client certificate file
    that changes, so a component on the kubelet's rotating certificate follows its renewals."""
    return _doc(cluster, server, {"certificate-authority": ca_file}, user,
                {"client-certificate": cert_and_key_file, "client-key": cert_and_key_file})


def _doc(cluster: str, server: str, ca: dict[str, str], user: str, credentials: dict[str, str]) -> bytes:
    context = f"{user}@{cluster}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, **ca}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [{"name": user, "user": credentials}],
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()
