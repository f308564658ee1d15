"""A second `init` and `join` on a finished cluster against `plan` on the same cluster, side by side.

For each layout: bring it up, run `init` and `join` (timed: the first run), then REPS rounds of `plan`,
`init`, `join` one after the other (the same machine load for all three), and print the medians: wall time,
the ratio to `plan`, SSH round trips a host (the most any host took) and the controller's CPU time (user +
sys of the kbootstrap process) per host. Nothing is asserted.

Layouts: lab-stacked (7 hosts: 2 load balancers, 3 control planes, 2 workers), then 22 hosts and the most
this machine can boot. Lab hosts share this machine's inotify budget (docs/lab.md): a running control plane
takes ~27 instances, a worker 13, a load balancer 4, so the larger layouts are one control plane and load
balancers (real haproxy and keepalived, converged by the same phases); they have no workers, so `join` is
measured on lab-stacked only.

    python bench/workflow_noop_bench.py               # all three layouts (about 10 minutes)
    python bench/workflow_noop_bench.py --reps 3 --no-scale

Needs root and the lab prerequisites (docs/lab.md). Brings each layout up fresh and down afterwards.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kbootstrap.lab import lifecycle  # noqa: E402
from kbootstrap.lab.check import INOTIFY_IN_CLUSTER, INOTIFY_PER_NODE_IDLE, inotify_budget  # noqa: E402
from kbootstrap.lab.errors import LabRefused  # noqa: E402
from kbootstrap.lab.layout import load_layout  # noqa: E402


@dataclass
class Run:
    seconds: float
    cpu: float  # the controller's user + sys, seconds
    trips: int  # the most round trips any host took
    hosts: int
    changes: int


def kb(command: str, inventory: Path, cluster_dir: Path) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "kbootstrap", command, "-i", str(inventory), "--cluster-dir",
                        str(cluster_dir), "--output", "json"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{command} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    report = json.loads(p.stdout)
    trips = report["commands_per_host"]  # every SSH command of the run, the runner's and the command's own
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(seconds, cpu, max(trips.values(), default=0), len({h["host"] for h in report["hosts"]}),
               sum(len(h["changes"]) for h in report["hosts"]))


def scale_inventory(hosts: int, out: Path) -> Path:
    """One stacked control plane and hosts-1 load balancers on lab-stacked's bridge and VIP."""
    base = yaml.safe_load((REPO / "inventories/lab-stacked.yaml").read_text())
    base["cluster"]["name"] = f"lab-lb{hosts}"
    base["nodes"] = [{"name": "cp1", "address": "10.77.0.21", "roles": ["control-plane", "etcd"],
                      "size": {"cpus": 2, "memory_mb": 2048}}]
    base["nodes"] += [{"name": f"lb{i}", "address": f"10.77.0.{100 + i}", "roles": ["loadbalancer"],
                       "size": {"cpus": 1, "memory_mb": 256}} for i in range(1, hosts)]
    out.write_text(yaml.safe_dump(base, sort_keys=False))
    return out


def largest() -> int:
    """The most hosts of the scale layout that fit this machine's inotify budget now."""
    free = inotify_budget().free
    return 1 + max(0, (free - INOTIFY_IN_CLUSTER["control-plane"]) // INOTIFY_PER_NODE_IDLE)


def median(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def bench_layout(inventory: Path, reps: int, log) -> list[str]:
    layout = load_layout(inventory)
    quiet = lambda msg: None  # noqa: E731
    has_workers = any("worker" in n.roles for n in layout.nodes)
    commands = ["plan", "init", *(["join"] if has_workers else [])]
    lifecycle.down(layout, log=quiet)
    try:  # up inside: a lab up that fails half-way, or ^C, leaves no container behind
        lifecycle.up(layout, "lxc", log=quiet)
        with tempfile.TemporaryDirectory() as d:
            cd = Path(d) / "cluster"
            first = {"init": kb("init", inventory, cd)}
            log(f"  {layout.cluster}: first init {first['init'].seconds:.0f} s")
            if has_workers:
                first["join"] = kb("join", inventory, cd)
                log(f"  {layout.cluster}: first join {first['join'].seconds:.0f} s")
            runs: dict[str, list[Run]] = {c: [] for c in commands}
            for _ in range(reps):
                for c in commands:
                    runs[c].append(kb(c, inventory, cd))
    finally:
        lifecycle.down(layout, log=quiet)
    plan = median(runs["plan"], "seconds")
    lines = []
    for c in commands:
        rs = runs[c]
        changed = max(r.changes for r in rs)
        hosts = rs[0].hosts
        first_s = f"{first[c].seconds:>7.1f}s" if c in first else f"{'':>8}"
        lines.append(f"{layout.cluster:<12} {len(layout.nodes):>5} {c:<5} {hosts:>5} {first_s} "
                     f"{median(rs, 'seconds'):>8.2f}s {median(rs, 'seconds') / plan:>6.2f}x "
                     f"{max(r.trips for r in rs):>6} {1000 * median(rs, 'cpu') / hosts:>9.0f} ms "
                     f"{changed:>8}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="rounds of plan, init, join on each finished cluster")
    ap.add_argument("--no-scale", action="store_true", help="lab-stacked only")
    args = ap.parse_args()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    top = largest()
    print(f"no-op runs on a finished cluster: medians of {args.reps}, side by side with `plan` "
          f"(the most hosts that fit here now: {top})")
    print(f"{'layout':<12} {'nodes':>5} {'cmd':<5} {'hosts':>5} {'first':>8} {'no-op':>9} {'/plan':>7} "
          f"{'trips':>6} {'CPU/host':>12} {'changes':>8}")
    with tempfile.TemporaryDirectory() as d:
        layouts = [REPO / "inventories/lab-stacked.yaml"]
        if not args.no_scale:
            layouts += [scale_inventory(n, Path(d) / f"lab-lb{n}.yaml") for n in sorted({22, top}) if n >= 22]
        for inv in layouts:
            try:
                for line in bench_layout(inv, args.reps, log):
                    print(line, flush=True)
            except LabRefused as e:  # too many hosts for this machine: say so, go on with the next
                print(f"{inv.stem:<12} refused: {str(e).splitlines()[-2]}", flush=True)
    print("(hosts: that the command works on; trips: SSH commands of the host that took the most;"
          " CPU/host: the controller's user+sys time divided by hosts; changes: the most any no-op run made)")


if __name__ == "__main__":
    main()
