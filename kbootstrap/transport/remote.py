"""Batch operations on a host through the agent: one command gathers all facts, one writes all files."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kbootstrap.errors import StepError
from kbootstrap.model.artifact import Artifact
from kbootstrap.transport.base import Transport


@cache
def packed_python(script: Path, name: str, call: str) -> tuple[str, ...]:
    """argv that runs a standard-library script on a host with nothing installed: `python3 -c` a loader,
    the script zlib-compressed and base64'd as its argument; `call` runs after, e.g. "main(sys.argv[2])"."""
    packed = base64.b64encode(zlib.compress(script.read_bytes(), 9)).decode()
    loader = ("import base64,zlib,sys;src=zlib.decompress(base64.b64decode(sys.argv[1]));"
              f"g={{'__name__':'{name}','sys':sys}};exec(compile(src,'{name}','exec'),g);exec({call!r},g)")
    return ("python3", "-c", loader, packed)


def _agent_argv() -> tuple[str, ...]:
    return packed_python(Path(__file__).parents[1] / "hostside" / "agent.py", "kbootstrap-agent", "main(sys.argv[2])")


@dataclass(frozen=True)
class FileFact:
    sha256: str | None
    mode: int
    owner: str
    group: str
    size: int


@dataclass
class HostFacts:
    files: dict[str, FileFact | None] = field(default_factory=dict)
    units: dict[str, dict[str, str]] = field(default_factory=dict)
    mtimes: dict[str, float | None] = field(default_factory=dict)  # Wants.stat: modification times only
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    programs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _call(t: Transport, op: str, stdin: bytes, step: str) -> Any:
    r = t.run([*_agent_argv(), op], sudo=True, stdin=stdin)
    if not r.ok:
        raise StepError(t.host, step, f"kbootstrap agent {op}", r.rc, r.stderr_tail())
    return json.loads(r.stdout)


def gather(t: Transport, files: Sequence[str], units: Sequence[str] = (), probes: dict[str, list[str]] | None = None,
           stat: Sequence[str] = (), programs: dict[str, dict[str, Any]] | None = None) -> HostFacts:
    """`programs`: key -> {"source", "call", "arg"}, another standard-library program run in the same round
    trip (hostside/agent.py); its answer is in HostFacts.programs[key]: {"result": ...} or {"error": "..."}."""
    req = {"files": list(files), "stat": list(stat), "units": list(units), "probes": probes or {},
           "programs": programs or {}}
    raw = _call(t, "facts", json.dumps(req).encode(), "gather facts")
    return HostFacts(
        files={p: None if f is None else FileFact(f.get("sha256"), f["mode"], f["owner"], f["group"], f["size"])
               for p, f in raw["files"].items()},
        units=raw["units"],
        probes=raw["probes"],
        mtimes=raw.get("stat", {}),
        programs=raw.get("programs", {}),
    )


def read_files(t: Transport, paths: list[str]) -> dict[str, bytes | None]:
    raw = _call(t, "read", json.dumps({"files": paths}).encode(), "read files for diff")
    return {p: None if b is None else base64.b64decode(b) for p, b in raw.items()}


def write_files(t: Transport, artifacts: list[Artifact]) -> list[str]:
    if not artifacts:
        return []
    contents = [a.data() for a in artifacts]
    header = [{"path": a.path, "mode": a.mode, "owner": a.owner, "group": a.group, "size": len(c)}
              for a, c in zip(artifacts, contents, strict=True)]
    payload = json.dumps(header).encode() + b"\n" + b"".join(contents)
    return _call(t, "write", payload, f"write {len(artifacts)} file(s)")["written"]
