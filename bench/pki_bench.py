"""PKI benchmark: the whole PKI of 3 control planes + 3 etcd + 100 workers, kbootstrap vs the openssl CLI.

The baseline issues the very same set (same subjects, SANs, usages, key type) the way
kubernetes-the-hard-way does: one `openssl genpkey` + `req` + `x509 -req` per certificate, in sequence.
Both are timed in this one run, side by side; nothing is asserted.

    python bench/pki_bench.py [--workers 100] [--repeat 1]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from kbootstrap.model.spec import build_spec
from kbootstrap.pki.issue import ensure_pki, wanted_certs
from kbootstrap.pki.table import CERTS


def inventory(workers: int, algorithm: str) -> dict:
    nodes = [{"name": f"lb{i}", "address": f"10.90.0.{10 + i}", "roles": ["loadbalancer"]} for i in (1, 2)]
    nodes += [{"name": f"cp{i}", "address": f"10.90.0.{20 + i}", "roles": ["control-plane"]} for i in (1, 2, 3)]
    nodes += [{"name": f"etcd{i}", "address": f"10.90.0.{30 + i}", "roles": ["etcd"]} for i in (1, 2, 3)]
    nodes += [{"name": f"w{i}", "address": f"10.90.{1 + i // 250}.{1 + i % 250}", "roles": ["worker"]}
              for i in range(workers)]
    return {"cluster": {"name": "bench", "topology": "external"}, "load_balancer": {"vip": "10.90.0.10"},
            "certificates": {"key_algorithm": algorithm}, "nodes": nodes}


def openssl_hard_way(spec, root: Path) -> int:
    """Issue the same certificates with the openssl CLI. Returns how many certificates were made."""
    algo = (["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
            if spec.certificates.key_algorithm.value == "ecdsa-p256" else
            ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    count = 0
    for row in CERTS:
        if row.is_ca:
            key, crt = root / f"{row.name}.key", root / f"{row.name}.crt"
            run("genpkey", *algo, "-out", str(key))
            run("req", "-x509", "-new", "-key", str(key), "-subj", f"/CN={row.cn}", "-days", "3650",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign", "-out", str(crt))
            count += 1
    run("genpkey", *algo, "-out", str(root / "sa.key"))
    run("pkey", "-in", str(root / "sa.key"), "-pubout", "-out", str(root / "sa.pub"))
    for i, want in enumerate(wanted_certs(spec)):
        key, csr, crt, ext = (root / f"{i}.{s}" for s in ("key", "csr", "crt", "ext"))
        subj = "".join(f"/O={o}" for o in want.orgs) + f"/CN={want.cn}"
        sans = [f"DNS:{d}" for d in want.dns] + [f"IP:{ip}" for ip in want.ips]
        lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 "extendedKeyUsage=" + ",".join(u.value for u in want.usages)]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        run("genpkey", *algo, "-out", str(key))
        run("req", "-new", "-key", str(key), "-subj", subj, "-out", str(csr))
        run("x509", "-req", "-in", str(csr), "-CA", str(root / f"{want.ca}.crt"), "-CAkey", str(root / f"{want.ca}.key"),
            "-CAcreateserial", "-days", "365", "-sha256", "-extfile", str(ext), "-out", str(crt))
        count += 1
    return count


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the best time is shown")
    args = ap.parse_args()
    print(f"PKI for 3 control planes + 3 etcd + 2 load balancers + {args.workers} workers")
    print(f"{'key type':<11} {'certs':>6} {'kbootstrap':>11} {'reuse run':>10} {'openssl CLI':>12} {'ratio':>7}")
    for algorithm in ("rsa-2048", "ecdsa-p256"):
        spec = build_spec(inventory(args.workers, algorithm))
        best_kb = best_reuse = best_cli = float("inf")
        n_kb = n_cli = 0
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as d:
                t, pki = timed(lambda: ensure_pki(spec, Path(d) / "cluster"))
                best_kb, n_kb = min(best_kb, t), len(pki.report.created)
                t, _ = timed(lambda: ensure_pki(spec, Path(d) / "cluster"))
                best_reuse = min(best_reuse, t)
            with tempfile.TemporaryDirectory() as d:
                t, n_cli = timed(lambda: openssl_hard_way(spec, Path(d)))
                best_cli = min(best_cli, t)
        print(f"{algorithm:<11} {n_kb:>6} {best_kb:>10.2f}s {best_reuse:>9.2f}s {best_cli:>11.2f}s "
              f"{best_cli / best_kb:>6.1f}x   (openssl made {n_cli} certs + sa key)")


if __name__ == "__main__":
    if not shutil.which("openssl"):
        raise SystemExit("openssl not found")
    main()
