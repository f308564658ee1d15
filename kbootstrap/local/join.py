"""`kbootstrap join --local`: a `join: local` worker joins itself, run as root on the node, like `kubeadm join`.

The node holds no inventory, no SSH access to anything and no CA key. It learns and trusts the cluster from
a bootstrap token and the CA's public-key pin (discovery.py), reads the node profile the cluster publishes
(node_profile.py), and then runs the same phases `kbootstrap join` runs over SSH, on this machine. The
kubelet gets its client certificate by TLS bootstrap and its serving certificate by CSR (approved by the
control planes' kbootstrap-csr-approver); kube-proxy runs on the kubelet's client certificate.

Every check that can refuse (arguments, discovery, the profile, this node's name and address, the bundle)
runs before anything on the node is written.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from kbootstrap.engine.localfs import write_if_changed
from kbootstrap.engine.poll import Pending, poll
from kbootstrap.engine.session import LOG, RunFailed
from kbootstrap.errors import Refused
from kbootstrap.local.discovery import PIN, DiscoveryError, ca_pin, discover, https_get, parse_token
from kbootstrap.local.node_profile import CONFIGMAP, KEY, NAMESPACE, spec_from_profile
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.render.node import KUBELET_CLIENT
from kbootstrap.render.node_sync import ENV_FILE as SYNC_ENV
from kbootstrap.render.node_sync import INTERVAL as SYNC_INTERVAL
from kbootstrap.render.node_sync import TIMER as SYNC_TIMER

if TYPE_CHECKING:
    from kbootstrap.engine.session import Session

STATE_DIR = Path("/var/lib/kbootstrap/local")  # lock, journal and run logs of join --local on this node
LOCAL_CA = "/etc/kubernetes/pki/ca.crt"


class NodeNotReady(RunFailed):
    """The join's phases passed but the node did not become Ready (exit 1: a failure, not bad input)."""


class LocalJoinError(Refused):
    pass


@dataclass(frozen=True)
class Trust:
    """What the node trusts and how it authenticates: a bootstrap token (first join) or, once joined, its
    kubelet's client certificate (a re-run needs no token)."""

    server: str  # where to read from: --server
    ca_pem: bytes
    token: str | None
    client_cert: str | None  # cert and key in one PEM file

    @property
    def joined(self) -> bool:
        return self.client_cert is not None


def establish_trust(server: str, token: str | None, ca_cert_hash: str, ca_file: str = LOCAL_CA,
                    client_cert: str = KUBELET_CLIENT, wait: float = 30) -> Trust:
    """A joined node (a kubelet client certificate, and a CA with the pinned key) trusts what it has;
    otherwise the token and pin must pass discovery."""
    if not PIN.match(ca_cert_hash):
        raise LocalJoinError("--ca-cert-hash: expected sha256:<64 hex digits> (kbootstrap token create prints it)")
    ca = Path(ca_file)
    if Path(client_cert).is_file() and ca.is_file():
        ca_pem = ca.read_bytes()
        if ca_pin(ca_pem) != ca_cert_hash:
            raise LocalJoinError(f"{ca_file} has public key {ca_pin(ca_pem)}, --ca-cert-hash says {ca_cert_hash}: "
                                 "this node belongs to another cluster (`kbootstrap reset --local --yes` it first)")
        return Trust(server, ca_pem, None, client_cert)
    if token is None:
        raise LocalJoinError("--token (or --token-file, or KBOOTSTRAP_TOKEN) is needed: this node has not joined yet")
    found = discover(server, token, ca_cert_hash, wait=wait)
    return Trust(server, found.ca_pem, token, None)


def api_get(trust: Trust, path: str, timeout: float = 10) -> tuple[int, bytes]:
    """GET over TLS verified against the pinned CA (the host name must be in the apiserver's certificate)."""
    return https_get(trust.server, path, trust.ca_pem, token=None if trust.client_cert else trust.token,
                     client_cert=trust.client_cert, timeout=timeout)


def read_profile(trust: Trust) -> str:
    """The node profile's text (kept on the node after the join, so `reset --local` works without the API)."""
    status, body = api_get(trust, f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CONFIGMAP}")
    if status == 404:
        raise LocalJoinError(f"{NAMESPACE}/{CONFIGMAP} is not in the cluster: list this node in the inventory with "
                             "`join: local`, then run `kbootstrap init` on the controller (it publishes the node profile)")
    if status != 200:
        raise LocalJoinError(f"{trust.server}: reading {NAMESPACE}/{CONFIGMAP} answered HTTP {status}")
    try:
        return json.loads(body)["data"][KEY]
    except (ValueError, KeyError, TypeError) as e:
        raise LocalJoinError(f"{NAMESPACE}/{CONFIGMAP} has no {KEY}") from e


def node_sync_env(server: str, ca_pem: bytes, bundle: Path) -> bytes:
    """What kbootstrap-node-sync re-runs the join with (render/node_sync.py): this Python and this copy of
    kbootstrap, the server and pin of the join, the bundle. No token: a joined node does not need one."""
    import kbootstrap

    values = {
        "KBOOTSTRAP_PYTHON": sys.executable,
        "PYTHONPATH": str(Path(kbootstrap.__file__).resolve().parent.parent),
        "KBOOTSTRAP_SERVER": server,
        "KBOOTSTRAP_CA_CERT_HASH": ca_pin(ca_pem),
        "KBOOTSTRAP_ARTIFACTS": str(bundle.resolve()),
    }
    lines = ["# Written by `kbootstrap join --local` for kbootstrap-node-sync.service; nothing secret."]
    for key, value in values.items():
        if any(c in value for c in '\n"\\$`'):  # systemd's EnvironmentFile and sh would both read these
            raise LocalJoinError(f"{key}: {value!r} has a quote, backslash, $, ` or newline; kbootstrap-node-sync "
                                 "cannot carry it (run kbootstrap and the bundle from a plain path)")
        lines.append(f'{key}="{value}"')
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class Joined:
    """What `join --local` keeps on the node: enough to reset it with the cluster gone. Nothing secret."""

    node: str
    server: str
    ca_pem: bytes
    profile: str

    PATH = STATE_DIR / "joined.yaml"

    def save(self) -> None:
        doc = {"node": self.node, "server": self.server, "ca": self.ca_pem.decode(), "profile": self.profile}
        write_if_changed(self.PATH, yaml.safe_dump(doc, sort_keys=False).encode(), 0o600)  # a re-run: unchanged

    @classmethod
    def load(cls) -> Joined:
        try:
            doc = yaml.safe_load(cls.PATH.read_text())
            return cls(doc["node"], doc["server"], doc["ca"].encode(), doc["profile"])
        except FileNotFoundError:
            raise LocalJoinError(f"{cls.PATH} is missing: this machine was not joined with `kbootstrap join "
                                 "--local` (a node joined over SSH is reset from the controller)") from None
        except (yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
            raise LocalJoinError(f"{cls.PATH}: unreadable ({e})") from None


def local_addresses() -> set[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=False).stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}


def this_node(spec: ClusterSpec, name: str | None, addresses: set[str]) -> Node:
    """The inventory's entry for this machine: a `join: local` worker whose address is on this machine."""
    name = name or socket.gethostname().split(".")[0].lower()
    try:
        node = spec.node(name)
    except KeyError:
        local = ", ".join(n.name for n in spec.local_nodes) or "none"
        raise LocalJoinError(f"{name}: not a node of cluster {spec.cluster.name} (its `join: local` workers: {local}); "
                             "add it to the inventory with `join: local` and run `kbootstrap init` on the "
                             "controller, or pass --node-name") from None
    if not node.joins_locally:
        raise LocalJoinError(f"{name}: the inventory says `join: {node.join.value}` for it; kbootstrap joins it over "
                             "SSH (`kbootstrap join` on the controller). Set `join: local` to join it from here")
    if str(node.address) not in addresses:
        raise LocalJoinError(f"{name}: the inventory gives it address {node.address}, which is not on this machine "
                             f"(here: {', '.join(sorted(addresses)) or 'none'})")
    return node


def wait_node_ready(trust_after: Trust, name: str, timeout: float, interval: float = 2) -> None:
    """Node Ready, read as the node itself (the node authorizer lets it get its own Node)."""

    def ready() -> bool | Pending:
        try:
            status, body = api_get(trust_after, f"/api/v1/nodes/{name}")
        except DiscoveryError as e:  # the API not answering yet: try again until the deadline
            return Pending(str(e))
        if status != 200:
            return Pending(f"HTTP {status}" if status != 404 else "not registered")
        conditions = {c["type"]: c for c in json.loads(body)["status"].get("conditions", [])}
        cond = conditions.get("Ready", {})
        return True if cond.get("status") == "True" else Pending(f"Ready={cond.get('status', '?')}: "
                                                                  f"{cond.get('message', '')}")

    result = poll(ready, timeout=timeout, interval=interval)
    if isinstance(result, Pending):
        raise LocalJoinError(f"node {name} not Ready after {timeout:.0f}s ({result.why}); "
                                "see `journalctl -u kubelet`")


def read_token(token: str | None, token_file: Path | None) -> str | None:
    """--token, else --token-file, else $KBOOTSTRAP_TOKEN. Checked for shape; never echoed."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as e:
            raise LocalJoinError(f"--token-file {token_file}: {e.strerror}") from None
    token = token or os.environ.get("KBOOTSTRAP_TOKEN") or None
    if token is not None:
        try:
            parse_token(token)
        except DiscoveryError as e:
            raise LocalJoinError(str(e)) from None
    return token


def _require_root(why: str) -> None:
    if os.geteuid() != 0:
        raise LocalJoinError(f"{why}: run it as root on the node")


@contextmanager
def _local_session(spec: ClusterSpec, ca_pem: bytes, node: Node, command: str) -> Iterator[Session]:
    """One locked, journaled run on this machine (lock, journal and logs in STATE_DIR), rendering with the
    cluster CA's certificate alone: no cluster secrets and no keys, which a worker's files need neither of (a
    renderer reaching for one fails loudly)."""
    from kbootstrap.engine.journal import ClusterLock, Journal
    from kbootstrap.engine.session import Session, run_log
    from kbootstrap.pki.issue import ca_only
    from kbootstrap.render import RenderContext
    from kbootstrap.transport.local import LocalTransport

    ctx = RenderContext(spec, ca_only(ca_pem), None)  # type: ignore[arg-type]
    with ClusterLock(STATE_DIR, command) as lock:
        journal = Journal(STATE_DIR, command)
        with run_log(journal):
            if lock.broke_stale:
                LOG.warning(f"note: {lock.broke_stale}")
            yield Session(ctx, {node.name: LocalTransport(node.name)}, journal, STATE_DIR)


def run_local_join(server: str, token: str | None, ca_cert_hash: str, artifacts: Path | None, node_name: str | None,
                   dry_run: bool, timeout: float):
    """The whole `join --local`. Refusals raise before the first write on this machine; the phases then
    run through the same engine, journal and lock as over SSH, kept in STATE_DIR."""
    from dataclasses import replace

    from kbootstrap.phases.bundle_payload import load_bundle
    from kbootstrap.workflows import JOIN_LOCAL, Inputs
    from kbootstrap.workflows.init_cluster import preflight

    _require_root("join --local installs and starts services")
    trust = establish_trust(server, token, ca_cert_hash)
    profile = read_profile(trust)
    spec = spec_from_profile(profile)
    node = this_node(spec, node_name, local_addresses())
    bundle, manifest = load_bundle(spec, artifacts)
    sync_env = node_sync_env(server, trust.ca_pem, bundle)  # may refuse a path: before anything is written
    with _local_session(spec, trust.ca_pem, node, "join --local") as s:
        s.note(f"{node.name}: " + ("already joined: checking every phase, no token used" if trust.joined else
                                   f"joining cluster {spec.cluster.name} at {spec.api_server_url}"))
        preflight(s, [node], manifest)
        phases = JOIN_LOCAL.build(Inputs(s.ctx, [node], bundle, manifest, token=trust.token,
                                         new=[node] if trust.token else [], timeout=timeout))
        result = s.run(phases, apply=not dry_run, parallel=1, diffs=dry_run)
        not_ready = None
        if not result.failed and not dry_run:
            Joined(node.name, server, trust.ca_pem, profile).save()
            if write_if_changed(Path(SYNC_ENV), sync_env, 0o644):
                s.note(f"{node.name}: wrote {SYNC_ENV} ({SYNC_TIMER} re-runs this join every {SYNC_INTERVAL})")
            try:
                wait_node_ready(replace(trust, token=None, client_cert=KUBELET_CLIENT), node.name, timeout)
                s.note(f"{node.name}: Ready")
            except LocalJoinError as e:
                not_ready = str(e)
                LOG.error(f"FAILED: {not_ready}", extra={"log_only": True})  # the terminal gets it as the error
    if not_ready:  # the phases passed, the node did not come up: a failure (exit 1), not bad input
        raise NodeNotReady(not_ready, result)
    return result


def run_local_reset(dry_run: bool):
    """`reset --local`: `reset`'s phases for this node, from what the join kept (the cluster may be gone).
    The Node object stays in the cluster, as after `kubeadm reset`."""
    from kbootstrap.workflows import RESET, Inputs

    _require_root("reset --local stops services and removes files")
    joined = Joined.load()
    spec = spec_from_profile(joined.profile)
    node = spec.node(joined.node)
    with _local_session(spec, joined.ca_pem, node, "reset --local") as s:
        result = s.run(RESET.build(Inputs(s.ctx, [node], detach=False)), apply=not dry_run, parallel=1, diffs=dry_run)
        if not result.failed and not dry_run:
            s.note(f"{node.name} is reset; its Node object stays in the cluster: `kubectl delete node {node.name}` "
                   "on the controller, or `kbootstrap join --local` with a new token to join again")
    return result
