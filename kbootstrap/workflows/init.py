"""`kbootstrap init`: from bare hosts to the API answering through the load balancer, control planes Ready."""

from __future__ import annotations

from kbootstrap.phases import (
    add_etcd_members,
    bootstrap_cluster,
    configure_files,
    install_kubernetes,
    install_packages,
    install_runtime,
    prepare_os,
    start_control_plane,
    start_etcd,
    start_loadbalancers,
)
from kbootstrap.workflows.table import Inputs, PhaseSpec, Workflow


def _cluster(i: Inputs):
    """Only with the first control plane among the hosts (it applies the cluster's objects)."""
    first = i.ctx.spec.control_planes[0]
    if first not in i.nodes:
        return None
    ready = [n.name for n in i.ctx.spec.control_planes if n in i.nodes]
    return bootstrap_cluster.bootstrap_cluster(i.ctx, i.nodes, ready, i.binaries)


OS = PhaseSpec(prepare_os.NAME, "kernel modules, sysctls, swap off, node names in /etc/hosts",
               lambda i: prepare_os.prepare_os(i.ctx, i.nodes))
PACKAGES = PhaseSpec(install_packages.NAME, "haproxy, keepalived (load balancers); iptables, conntrack (nodes): "
                     "from the bundle's .debs",
                     lambda i: install_packages.install_packages(i.ctx, i.bundle_dir, i.manifest, i.nodes))
RUNTIME = PhaseSpec(install_runtime.NAME, "containerd, runc, crictl, CNI plugins, sandbox image",
                    lambda i: install_runtime.install_runtime(i.ctx, i.bundle_dir, i.manifest, i.nodes))
BINARIES = PhaseSpec(install_kubernetes.NAME, "kubelet, kube-proxy, kubectl, etcd; control-plane binaries or images",
                     lambda i: install_kubernetes.install_kubernetes(i.ctx, i.bundle_dir, i.manifest, i.nodes))
FILES = PhaseSpec(configure_files.NAME, "certificates, kubeconfigs, configs and units (as `kbootstrap render` shows "
                  "them)", lambda i: configure_files.configure_files(i.ctx, i.nodes))

INIT = Workflow("init", (
    OS, PACKAGES, RUNTIME, BINARIES, FILES,
    PhaseSpec(start_loadbalancers.NAME, "haproxy, keepalived",
              lambda i: start_loadbalancers.start_loadbalancers(i.ctx, i.nodes)),
    PhaseSpec(add_etcd_members.NAME, "a control plane added later: its etcd member added as a learner",
              lambda i: add_etcd_members.add_etcd_members(i.ctx, i.nodes)),
    PhaseSpec(start_etcd.NAME, "etcd services, each member healthy (systemd form / external etcd)",
              lambda i: start_etcd.start_etcd(i.ctx, i.nodes, i.binaries)),
    PhaseSpec(start_control_plane.NAME, "kubelet (static pods) or services; apiserver ready; the API through the "
              "load balancer", lambda i: start_control_plane.start_control_plane(i.ctx, i.nodes, i.binaries)),
    PhaseSpec(bootstrap_cluster.NAME, "bootstrap RBAC; control-plane nodes Ready", _cluster),
))
