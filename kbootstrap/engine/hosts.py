"""Connections to the inventory's hosts, one transport each, closed together."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.transport.base import Transport
from kbootstrap.transport.ssh import SSHTransport


@contextmanager
def connect_all(spec: ClusterSpec, nodes: list[Node], accept_new_host_keys: bool = False) -> Iterator[dict[str, Transport]]:
    transports: dict[str, Transport] = {
        n.name: SSHTransport(n.name, str(n.address), spec.ssh_for(n), host_key=n.host_key,
                             accept_new_host_keys=accept_new_host_keys)
        for n in nodes
    }
    try:
        yield transports
    finally:
        for t in transports.values():
            t.close()
