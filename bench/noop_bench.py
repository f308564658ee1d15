"""No-op re-run benchmark on the lab: how long `apply` takes when nothing has to change, and how many
SSH round trips it costs a host, against the first run and against a per-file baseline.

Baseline: the same check done the way task-per-file tools do it — one remote command per file
(`sha256sum PATH`) over one persistent SSH connection per host (Ansible with pipelining and
ControlPersist is at best this). Both run in this one process, side by side; nothing is asserted.

    python bench/noop_bench.py                       # lab-mini and lab-stacked, then a 22-node layout
    python bench/noop_bench.py --scale-workers 0     # skip the scaling layout

Needs root and the lab prerequisites (docs/lab.md). Brings each layout up fresh and down afterwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kbootstrap.lab import lifecycle  # noqa: E402
from kbootstrap.lab.errors import LabRefused  # noqa: E402
from kbootstrap.lab.layout import load_layout  # noqa: E402
from kbootstrap.model.spec import load_inventory  # noqa: E402
from kbootstrap.pki.issue import ensure_pki  # noqa: E402
from kbootstrap.pki.secrets import ensure_secrets  # noqa: E402
from kbootstrap.render import RenderContext, render_host  # noqa: E402
from kbootstrap.transport.ssh import SSHTransport  # noqa: E402


def kb_apply(inventory: Path, cluster_dir: Path) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "kbootstrap", "apply", "-i", str(inventory), "--cluster-dir",
                        str(cluster_dir), "--output", "json"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"apply failed:\n{r.stdout}\n{r.stderr}")
    return seconds, json.loads(r.stdout)


def per_file_baseline(inventory: Path, cluster_dir: Path) -> tuple[float, int]:
    """One `sha256sum` command per rendered file per host, hosts in parallel. Returns (seconds, files)."""
    spec = load_inventory(inventory)
    ctx = RenderContext(spec, ensure_pki(spec, cluster_dir), ensure_secrets(cluster_dir))
    work = {n.name: (n, [a.path for a in render_host(ctx, n)]) for n in spec.nodes}

    def check(name: str) -> int:
        node, paths = work[name]
        t = SSHTransport(name, str(node.address), spec.ssh_for(node))
        try:
            for p in paths:
                t.run(["sha256sum", p], sudo=True)
        finally:
            t.close()
        return len(paths)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=10) as pool:
        files = sum(pool.map(check, work))
    return time.perf_counter() - t0, files


def scale_inventory(workers: int, out: Path) -> Path:
    nodes = [{"name": "slb1", "address": "10.77.0.40", "roles": ["loadbalancer"], "size": {"memory_mb": 256}},
             {"name": "scp1", "address": "10.77.0.41", "roles": ["control-plane", "etcd"], "size": {"memory_mb": 512}}]
    nodes += [{"name": f"sw{i}", "address": f"10.77.0.{50 + i}", "roles": ["worker"], "size": {"memory_mb": 256}}
              for i in range(1, workers + 1)]
    base = yaml.safe_load((REPO / "inventories/lab-mini.yaml").read_text())
    base["cluster"]["name"] = "lab-scale"
    base["nodes"] = nodes
    out.write_text(yaml.safe_dump(base, sort_keys=False))
    return out


def bench_layout(inventory: Path) -> str:
    layout = load_layout(inventory)
    quiet = lambda msg: None  # noqa: E731
    lifecycle.down(layout, log=quiet)
    try:  # up inside: a lab up that fails half-way, or ^C, leaves no container behind
        lifecycle.up(layout, "lxc", log=quiet)
        with tempfile.TemporaryDirectory() as d:
            cd = Path(d) / "cluster"
            first_s, first = kb_apply(inventory, cd)
            noop_s, noop = kb_apply(inventory, cd)
            base_s, files = per_file_baseline(inventory, cd)
    finally:
        lifecycle.down(layout, log=quiet)
    hosts = len(noop["hosts"])
    trips = max(h["round_trips"] for h in noop["hosts"])
    changes = sum(len(h["changes"]) for h in first["hosts"])
    return (f"{layout.cluster:<12} {hosts:>5} {files:>6} {changes:>8} {first_s:>9.2f}s {noop_s:>9.2f}s "
            f"{trips:>6} {base_s:>10.2f}s {files // hosts:>8} {base_s / noop_s:>6.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale-workers", type=int, default=20, help="workers in the scaling layout (0: skip)")
    args = ap.parse_args()
    print("apply on the lab: first run, no-op re-run (kbootstrap), and a per-file check baseline")
    print(f"{'layout':<12} {'hosts':>5} {'files':>6} {'changes':>8} {'first':>10} {'no-op':>10} "
          f"{'trips':>6} {'baseline':>11} {'trips':>8} {'ratio':>7}")
    layouts = [REPO / "inventories/lab-mini.yaml", REPO / "inventories/lab-stacked.yaml"]
    with tempfile.TemporaryDirectory() as d:
        if args.scale_workers:
            layouts.append(scale_inventory(args.scale_workers, Path(d) / "lab-scale.yaml"))
        for inv in layouts:
            try:
                print(bench_layout(inv), flush=True)
            except LabRefused as e:  # too many hosts for this machine: say so, go on with the next
                print(f"{inv.stem:<12} refused: {str(e).splitlines()[-2]}", flush=True)
    print("(trips: SSH commands per host in the no-op run; baseline trips: one per file per host)")


if __name__ == "__main__":
    main()
