"""The helper kbootstrap runs on a host (`python3 -c`, through sudo) so that one command does a batch.

    facts  stdin {"files": [...], "stat": [...], "units": [...], "probes": {"key": argv}}  -> stdout JSON facts
           (files: digest, mode, owner; stat: modification time only; units: systemd properties, and StartedAt,
           the last start or reload in whole seconds since the epoch)
    read   stdin {"files": [...]}                                           -> stdout {"path": base64|null}
    write  stdin one JSON header line [{path, mode, owner, group, size}] then the contents back to back
           -> every file written atomically (temp file in the same directory, fsync, chown/chmod, rename)

This file is sent as source text: standard library only, Python 3.6+ (what any supported host has).
It must not import anything from kbootstrap.
"""

import base64
import grp
import hashlib
import json
import os
import pwd
import re
import subprocess
import sys
import tempfile


def _file_fact(path):
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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    fact["sha256"] = h.hexdigest()
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


def _probes(probes):
    out = {}
    for key, argv in probes.items():
        try:
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            out[key] = {"rc": p.returncode, "stdout": p.stdout.decode("utf-8", "replace")[-4000:]}
        except (OSError, subprocess.TimeoutExpired) as e:
            out[key] = {"rc": 127, "stdout": str(e)}
    return out


def facts(req):
    return {
        "files": {p: _file_fact(p) for p in req.get("files", [])},
        "stat": {p: _mtime(p) for p in req.get("stat", [])},
        "units": _unit_facts(req.get("units", [])),
        "probes": _probes(req.get("probes", {})),
    }


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
