"""A workload that answers HTTP, for the availability probe: etcd's own image (the only one in the lab bundle
that serves HTTP; the lab has no registry yet) run as a plain HTTP server on :8080, two replicas on the
workers behind a NodePort Service. Its image is imported on the workers here: the bundle puts it on etcd
members only."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from kbootstrap.artifacts.build import default_bundle_dir
from kbootstrap.verify.availability import Probe, Target, api_target, request_once

NODE_PORT = 30080
NAME = "web"


def _image(bundle: Path) -> tuple[str, Path]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    f = next(f for f in manifest["files"] if f.get("component") == "etcd" and f["path"].startswith("images/"))
    return f["image"], bundle / f["path"]


def deploy(cluster) -> str:
    """Idempotent; returns the URL the probe asks (a worker's NodePort)."""
    ref, tar = _image(default_bundle_dir(cluster.spec.cluster.kubernetes_version))
    for w in cluster.spec.workers:  # the inventory's: a removed worker is out of it
        ct = cluster.layout.container(cluster.layout.node(w.name))
        ctr = ["lxc-attach", "-n", ct, "--", "/usr/local/bin/ctr", "-n", "k8s.io", "images"]
        if ref not in subprocess.run([*ctr, "ls", "-q"], capture_output=True, text=True, check=True).stdout:
            with tar.open("rb") as f:
                subprocess.run([*ctr, "import", "-"], stdin=f, capture_output=True, check=True, timeout=300)
    labels = {"app": NAME}
    docs = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": "default"},
         "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                      "name": "http", "image": ref, "imagePullPolicy": "Never",
                      "command": ["/usr/local/bin/etcd", "--data-dir=/tmp/data", "--name=web",
                                  "--listen-client-urls=http://0.0.0.0:8080",
                                  "--advertise-client-urls=http://127.0.0.1:8080",
                                  "--listen-peer-urls=http://127.0.0.1:2380"],
                      "readinessProbe": {"httpGet": {"path": "/version", "port": 8080}, "periodSeconds": 2},
                  }]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": "default"},
         "spec": {"type": "NodePort", "selector": labels,
                  "ports": [{"port": 80, "targetPort": 8080, "nodePort": NODE_PORT}]}},
    ]
    subprocess.run([str(cluster.kubectl_binary), "--kubeconfig", str(cluster.admin_conf), "apply", "-f", "-"],
                   input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}), text=True, check=True,
                   capture_output=True, timeout=60)
    cluster.kubectl("rollout", "status", f"deployment/{NAME}", "--timeout=180s", timeout=200)
    url = f"http://{cluster.spec.workers[0].address}:{NODE_PORT}/version"
    # Ready pods are not yet a Service: kube-proxy on the node programs the NodePort once it sees the endpoints
    # (refused until then). Ten answers in a row before the probe may count anything.
    target, streak, deadline = Target(NAME, url), 0, time.monotonic() + 60
    while streak < 10:
        assert time.monotonic() < deadline, f"{url} not answering 60 s after the rollout"
        streak = streak + 1 if request_once(target, 2)[0] else 0
        time.sleep(0.1)
    return url


def probe(cluster, rate: float = 10, timeout: float = 2) -> Probe:
    """The API through the VIP and the workload's Service: `with probe(cluster) as p: ...`."""
    url = deploy(cluster)
    ca = cluster.admin_conf.parent / "pki" / "ca.crt"
    return Probe([api_target(cluster.spec.api_server_url, ca), Target(f"Service {NAME} via {url}", url)], rate,
                 timeout)


def figures(cluster, what: str, p: Probe) -> list:
    """The probe's figures, printed with the run's timings; returns them for the test's assertions."""
    out = p.figures()
    for f in out:
        cluster.timings.append(f"{cluster.name}: {what}: {f.line()}")
    return out
