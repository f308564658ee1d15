"""The helper kbootstrap runs on a host (`python3 -c`, through sudo) so that one command does a batch.

    facts  stdin {"files": [...], "stat": [...], "units": [...], "probes": {"key": argv},
                  "programs": {"key": {"source": text, "call": name, "arg": json}}}  -> stdout JSON facts
           (files: digest, mode, owner; stat: modification time only; units: systemd properties, and StartedAt,
           the last start or reload in whole seconds since the epoch; probes run side by side: read-only;
           programs: another of kbootstrap's standard-library programs, e.g. the preflight probe, whose
           function `call` answers in this same round trip: {"result": ...} or {"error": "..."})
    read   stdin {"files": [...]}                                           -> stdout {"path": base64|null}
    write  stdin one JSON header line [{path, mode, owner, group, size}] then the contents back to back
           -> every file written atomically (temp file in the same directory, fsync, chown/chmod, rename)

This file is sent as source text: standard library only, Python 3.6+ (what any supported host has).
It must not import anything from kbootstrap.
"""

import base64
import concurrent.futures
import grp
import hashlib
import json
import os
import pwd
import re
import subprocess
import sys
import tempfile
import time

# Digests of large files (binaries, images, .debs), kept between runs as git's index keeps them: trusted
# while the file's device, inode, size, modification and change times are the same (kbootstrap replaces a
# file by renaming a new one over it, and any write changes the change time, which no user can set). As git
# does for its index, a file changed in the last seconds is not cached: a second write within the clock's
# tick could keep every one of those the same.
DIGESTS = "/var/lib/kbootstrap/digests.json"
CACHED_FROM = 1 << 20
SETTLED = 2.0


class _Digests:
    def __init__(self, path=DIGESTS, settled=SETTLED):
        self.path, self.settled, self.dirty = path, settled, False
        try:
            with open(path) as f:
                self.known = json.load(f)
        except (OSError, ValueError):
            self.known = {}

    def sha256(self, path, st):
        key = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        entry = self.known.get(path)
        if entry and entry[:5] == key:
            return entry[5]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if st.st_size >= CACHED_FROM and time.time() - max(st.st_mtime, st.st_ctime) >= self.settled:
            self.known[path], self.dirty = key + [h.hexdigest()], True
        return h.hexdigest()

    def save(self):
        """Best effort: without the cache the next run hashes again."""
        if not self.dirty:
            return
        try:
            _makedirs(os.path.dirname(self.path))
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), prefix=".digests.")
            with os.fdopen(fd, "w") as f:
                json.dump({p: e for p, e in self.known.items() if os.path.exists(p)}, f)
            os.rename(tmp, self.path)
        except OSError:
            pass


def _file_fact(path, digests):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    fact = {"mode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size, "type": "file"}
    try:
        fact["owner"] = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        fact["owner"] = str(st.st_uid)
    try:
        fact["group"] = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        fact["group"] = str(st.st_gid)
    if not os.path.isfile(path) or os.path.islink(path):
        fact["type"] = "other"
        return fact
    fact["sha256"] = digests.sha256(path, st)
    return fact


_UNIT_PROPS = ["Id", "LoadState", "ActiveState", "SubState", "UnitFileState", "ExecMainStartTimestampMonotonic",
               "NeedDaemonReload"]


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _started_at(block):
    """The last time the unit's main process started or it was reloaded (a reload rereads the configuration
    but keeps ExecMainStartTimestamp), in whole seconds; None when systemd cannot say (older than 248)."""
    times = [int(t) for t in re.findall(r"^ExecMainStartTimestamp=@(\d+)$", block, re.M)]
    times += [int(t) for t in re.findall(r"start_time=\[@(\d+)\]", block)]
    return max(times) if times else None


def _unit_facts(units):
    if not units:
        return {}
    props = ",".join(_UNIT_PROPS + ["ExecMainStartTimestamp", "ExecReload"])
    try:
        p = subprocess.run(["systemctl", "show", "--timestamp=unix", "--property=" + props, "--"] + list(units),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        if p.returncode != 0 and "timestamp" in p.stderr:  # systemd < 248: no --timestamp=unix, no StartedAt
            p = subprocess.run(["systemctl", "show", "--property=" + ",".join(_UNIT_PROPS), "--"] + list(units),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    except FileNotFoundError:
        return {u: {"LoadState": "no-systemd"} for u in units}
    facts = {}
    blocks = [b for b in p.stdout.split("\n\n") if b.strip()]
    for unit, block in zip(units, blocks):
        current = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        current.pop("ExecReload", None)
        started = _started_at(block)
        if started is not None:
            current["StartedAt"] = str(started)
        facts[unit] = current
    return facts


def _probe(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        return {"rc": p.returncode, "stdout": p.stdout.decode("utf-8", "replace")[-4000:]}
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"rc": 127, "stdout": str(e)}


def _program(spec):
    g = {"__name__": "kbootstrap-" + spec["call"]}
    try:
        exec(compile(spec["source"], spec["call"], "exec"), g)
        return {"result": g[spec["call"]](spec.get("arg"))}
    except Exception as e:  # reported, not raised: the other facts still answer
        return {"error": "%s: %s" % (type(e).__name__, e)}


def facts(req):
    """Probes only read, so they run side by side, while the files are hashed: a run's facts take as long as
    the slowest probe (a kubectl through an absent VIP), not the sum of them."""
    probes = req.get("probes", {})
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        running = {key: pool.submit(_probe, argv) for key, argv in probes.items()}
        programs = {key: pool.submit(_program, spec) for key, spec in req.get("programs", {}).items()}
        digests = _Digests()
        files = {p: _file_fact(p, digests) for p in req.get("files", [])}
        digests.save()
        out = {"files": files, "stat": {p: _mtime(p) for p in req.get("stat", [])},
               "units": _unit_facts(req.get("units", []))}
        out["probes"] = {key: f.result() for key, f in running.items()}
        out["programs"] = {key: f.result() for key, f in programs.items()}
    return out


def read(req):
    out = {}
    for p in req.get("files", []):
        try:
            with open(p, "rb") as f:
                out[p] = base64.b64encode(f.read()).decode()
        except OSError:
            out[p] = None
    return out


def _ids(owner, group):
    try:
        uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError as e:
        raise SystemExit("unknown user or group %s" % e) from None
    return uid, gid


def _makedirs(d):
    if not os.path.isdir(d):
        _makedirs(os.path.dirname(d))
        os.mkdir(d, 0o755)


def write(stream):
    header = json.loads(stream.readline().decode())
    written = []
    for item in header:
        data = stream.read(item["size"])
        if len(data) != item["size"]:
            raise SystemExit("short input for %s: %d of %d bytes" % (item["path"], len(data), item["size"]))
        path = item["path"]
        d = os.path.dirname(path)
        _makedirs(d)
        uid, gid = _ids(item["owner"], item["group"])
        prefix = "." + os.path.basename(path) + ".kbtmp-"
        for leftover in os.listdir(d):  # temp files of an earlier run that was cut off mid-write
            if leftover.startswith(prefix):
                os.unlink(os.path.join(d, leftover))
        fd, tmp = tempfile.mkstemp(dir=d, prefix=prefix)
        try:
            os.fchmod(fd, item["mode"])
            os.fchown(fd, uid, gid)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        written.append(path)
    return {"written": written}


def main(op):
    if op == "write":
        result = write(sys.stdin.buffer)
    else:
        req = json.loads(sys.stdin.buffer.read().decode() or "{}")
        result = {"facts": facts, "read": read}[op](req)
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
