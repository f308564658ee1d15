"""The TCP ports kbootstrap's services listen on: one place for flags, manifests, probes, haproxy's backends,
preflight's port and reachability checks, verify and reset."""

APISERVER = 6443  # kube-apiserver --secure-port; haproxy's backends; the load balancer's default frontend
CONTROLLER_MANAGER = 10257
SCHEDULER = 10259
ETCD_CLIENT = 2379
ETCD_PEER = 2380
ETCD_METRICS = 2381  # plain HTTP on 127.0.0.1: /health for the static pod's probe
KUBELET = 10250
KUBELET_HEALTHZ = 10248
KUBE_PROXY_METRICS = 10249
KUBE_PROXY_HEALTHZ = 10256
