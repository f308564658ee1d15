"""The preflight probe: what `kbootstrap init` must know about a host before it changes anything.

It runs on the host (`python3 -c`, through sudo, like transport/agent.py) as ONE command, so a cluster's
preflight is one round trip per host. stdin: {"ports": [...], "modules": [...], "commands": [...],
"targets": [[address, port], ...], "timeout": 0.5}; stdout: one JSON object of facts. It only reads:
files under /etc, /proc and /sys, `ip -o -4 addr show`, and TCP connects to the targets (in parallel, so the probe
takes about one timeout). It judges nothing: the rules live in checks.py on the controller.
This file is sent as source text: standard library only, Python 3.6+, no import from kbootstrap.
"""

import concurrent.futures
import errno
import glob
import json
import os
import platform
import shutil
import socket
import struct
import subprocess
import sys
import time


def _read(path, default=None):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return default


def _os_release():
    text = _read("/etc/os-release") or _read("/usr/lib/os-release") or ""
    fields = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            fields[k.strip()] = v.strip().strip("\"'")
    return {"id": fields.get("ID", ""), "version_id": fields.get("VERSION_ID", ""),
            "pretty_name": fields.get("PRETTY_NAME", "")}


def _container():
    kind = (_read("/run/systemd/container") or "").strip()
    if kind:
        return kind
    for item in (_read("/proc/1/environ") or "").split("\0"):
        if item.startswith("container="):
            return item.split("=", 1)[1] or "unknown"
    return "docker" if os.path.exists("/.dockerenv") else None


def _swaps():
    out = []
    for line in (_read("/proc/swaps") or "").splitlines()[1:]:  # header: Filename Type Size Used Priority
        f = line.split()
        if len(f) >= 4:
            out.append({"name": f[0], "type": f[1], "size_kb": int(f[2]), "used_kb": int(f[3])})
    return out


def _hex_address(h):
    # /proc/net/tcp* print addresses as 32-bit words in host (little-endian) order.
    words = [int(h[i:i + 8], 16) for i in range(0, len(h), 8)]
    raw = struct.pack("<%dI" % len(words), *words)
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _socket_owners(inodes):
    """inode -> "comm (pid N)" for the listening sockets asked about (needs root for other users' fds)."""
    owners = {}
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes and link[8:-1] not in owners:
            pid = fd.split("/")[2]
            owners[link[8:-1]] = "%s (pid %s)" % ((_read("/proc/%s/comm" % pid) or "?").strip(), pid)
            if len(owners) == len(inodes):
                break
    return owners


def _listening(ports):
    wanted, found = set(ports), []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in (_read(table) or "").splitlines()[1:]:
            f = line.split()
            if len(f) < 10 or f[3] != "0A":  # 0A = TCP_LISTEN
                continue
            addr, port = f[1].rsplit(":", 1)
            if int(port, 16) in wanted:
                found.append({"port": int(port, 16), "address": _hex_address(addr), "inode": f[9]})
    owners = _socket_owners({x["inode"] for x in found}) if found else {}
    for x in found:
        x["process"] = owners.get(x.pop("inode"))
    return found


def _module(name, release):
    """loaded | builtin | loadable | missing; '-' and '_' are the same in module names."""
    norm = name.replace("-", "_")
    for line in (_read("/proc/modules") or "").splitlines():
        if line.split(" ", 1)[0].replace("-", "_") == norm:
            return "loaded"
    traces = {"overlay": lambda: "overlay" in (_read("/proc/filesystems") or "").split(),
              "br_netfilter": lambda: os.path.isdir("/proc/sys/net/bridge")}
    if os.path.isdir("/sys/module/" + norm) or traces.get(norm, lambda: False)():
        return "builtin"
    base = "/lib/modules/" + release
    for line in (_read(base + "/modules.builtin") or "").splitlines():
        if os.path.basename(line).split(".ko")[0].replace("-", "_") == norm:
            return "builtin"
    for _, _, files in os.walk(base):
        if any(".ko" in f and f.split(".ko")[0].replace("-", "_") == norm for f in files):
            return "loadable"
    return "missing"


def _cgroup():
    types = {}
    for line in (_read("/proc/self/mounts") or "").splitlines():
        f = line.split()
        if len(f) >= 3 and f[2] in ("cgroup", "cgroup2"):
            types.setdefault(f[2], []).append(f[1])
    if "/sys/fs/cgroup" in types.get("cgroup2", []):
        return "v2"
    if "cgroup" in types:
        return "hybrid" if "cgroup2" in types else "v1"
    return "none"


def _macs():
    out = {}
    for path in sorted(glob.glob("/sys/class/net/*/address")):
        iface = path.split("/")[4]
        mac = (_read(path) or "").strip().lower()
        if iface != "lo" and mac and mac.strip("0:"):
            out[iface] = mac
    return out


def _addresses():
    """interface -> its IPv4 addresses with their prefix ("10.77.0.11/24"), as `ip` lists them; {} without ip."""
    try:
        p = subprocess.run(["ip", "-o", "-4", "addr", "show"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for line in p.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet":
            out.setdefault(fields[1].split("@")[0], []).append(fields[3])
    return out


def _mem_total():
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _connect(target, timeout):
    address, port = target
    result = {"address": address, "port": port, "result": "ok", "error": ""}
    try:
        socket.create_connection((address, port), timeout=timeout).close()
    except ConnectionRefusedError:
        result["result"] = "refused"  # nothing listens yet, but the packets got there and back
    except socket.timeout:
        result["result"] = "timeout"
    except OSError as e:
        unreachable = (errno.EHOSTUNREACH, errno.ENETUNREACH)
        result["result"] = "unreachable" if e.errno in unreachable else "error"
        result["error"] = e.strerror or str(e)
    return result


def _connects(targets, timeout):
    if not targets:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(32, len(targets))) as pool:
        return list(pool.map(lambda t: _connect(t, timeout), [(a, int(p)) for a, p in targets]))


def probe(req):
    release = platform.release()
    try:
        st = os.statvfs("/var")
        var_free = st.f_bavail * st.f_frsize
    except OSError:
        var_free = 0
    facts = {
        "os": _os_release(),
        "arch": platform.machine(),
        "kernel": release,
        "systemd": os.path.isdir("/run/systemd/system"),
        "container": _container(),
        "swaps": _swaps(),
        "listening": _listening(req.get("ports", [])),
        "hostname": socket.gethostname(),
        "machine_id": (_read("/etc/machine-id") or "").strip(),
        "product_uuid": (_read("/sys/class/dmi/id/product_uuid") or "").strip().lower() or None,
        "macs": _macs(),
        "addresses": _addresses(),
        "modules": {m: _module(m, release) for m in req.get("modules", [])},
        "cgroup": _cgroup(),
        "var_free": var_free,
        "mem_total": _mem_total(),
        "cpus": os.cpu_count() or 0,
        "python": sys.version.split()[0],
        "python_version": list(sys.version_info[:3]),
        "commands": {c: shutil.which(c) for c in req.get("commands", [])},
        "connects": _connects(req.get("targets", []), float(req.get("timeout", 0.5))),
    }
    facts["time"] = time.time()  # last: the controller brackets it with its own clock around the call
    return facts


def main():
    req = json.loads(sys.stdin.buffer.read().decode() or "{}")
    sys.stdout.write(json.dumps(probe(req)))


if __name__ == "__main__":
    main()
