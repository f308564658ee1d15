"""The steps `reset` needs beyond those of steps.py: services stopped and disabled, paths removed, and
commands with a short label. Like every step, each checks the host's facts first and does nothing when
there is nothing to undo, so a second reset reports no change.
"""

from __future__ import annotations

import posixpath

from kbootstrap.engine.steps import UNIT_DIRS, Change, Wants, unit
from kbootstrap.errors import StepError
from kbootstrap.transport.base import Transport, quote
from kbootstrap.transport.remote import HostFacts

_RUNNING = ("active", "activating", "reloading", "deactivating")
_ENABLED = ("enabled", "enabled-runtime", "linked", "linked-runtime")


class StopServicesStep:
    """systemd services stopped and disabled, one after the other in the given order. A unit that is not
    installed, or already stopped and disabled, is no change. A unit left failed is reset, so that the
    next run finds nothing to do."""

    def __init__(self, services: list[str], name: str = "stop services"):
        self.services = services
        self.name = name

    def wants(self) -> Wants:
        return Wants(units=[unit(s) for s in self.services])

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        out = []
        for s in self.services:
            state = facts.units.get(unit(s), {})
            if state.get("ActiveState") in _RUNNING:
                out.append(Change(self.name, "stop", s, state.get("SubState", "")))
            elif state.get("ActiveState") == "failed":
                out.append(Change(self.name, "reset-failed", s))
            if state.get("UnitFileState") in _ENABLED:
                out.append(Change(self.name, "disable", s))
        return out

    def apply(self, t: Transport, changes: list[Change]) -> None:
        stop = [c.target for c in changes if c.action == "stop"]
        disable = [c.target for c in changes if c.action == "disable"]
        touched = list(dict.fromkeys(c.target for c in changes))
        script = [f"systemctl stop {unit(s)}" for s in stop]  # in order: kubelet before what it runs
        if disable:
            script.append("systemctl disable " + " ".join(unit(s) for s in disable))
        # A service killed by the stop may be left `failed`; that is no state to leave for the next run.
        script.append("{ systemctl reset-failed " + " ".join(unit(s) for s in touched) + " 2>/dev/null || true; }")
        r = t.run(["sh", "-ec", " && ".join(script)], sudo=True)
        if not r.ok:
            raise StepError(t.host, self.name, " && ".join(script), r.rc, r.stderr_tail())


# Never removed whole, whatever a caller passes: a slip here would take a system down.
PROTECTED = frozenset({
    "/", "/boot", "/etc", "/home", "/opt", "/root", "/run", "/srv", "/usr", "/var", "/var/lib", "/var/log",
    "/usr/local", "/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/usr/sbin", "/opt/cni", "/opt/cni/bin",
    "/etc/systemd", "/etc/systemd/system", "/etc/cni", "/etc/cni/net.d", "/etc/sysctl.d", "/etc/modules-load.d",
})


def check_removable(path: str) -> str:
    if not path.startswith("/") or posixpath.normpath(path) != path or path in PROTECTED:
        raise ValueError(f"refusing to remove {path!r}: not a normalised absolute path below a system directory")
    return path


def collapse(paths: list[str]) -> list[str]:
    """Sorted, without duplicates and without paths inside another listed path (removing the parent
    removes them)."""
    out: list[str] = []
    for p in sorted(set(paths)):
        if not any(p.startswith(kept + "/") for kept in out):
            out.append(p)
    return out


class RemovePathsStep:
    """Files, links and directory trees removed (`rm -rf`), in one command; systemd reloaded when a unit
    file went. A path already absent is no change."""

    def __init__(self, paths: list[str], name: str = "remove files"):
        self.paths = collapse([check_removable(p) for p in paths])
        self.name = name

    def wants(self) -> Wants:
        return Wants(files=list(self.paths))

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        out = []
        for p in self.paths:
            f = facts.files.get(p)
            if f is not None:
                what = f"{f.size} bytes" if f.sha256 is not None else "directory or link"
                out.append(Change(self.name, "remove", p, what))
        return out

    def apply(self, t: Transport, changes: list[Change]) -> None:
        paths = [c.target for c in changes]
        script = "rm -rf -- " + quote(paths)
        if any(p.startswith(UNIT_DIRS) for p in paths):
            script += " && systemctl daemon-reload"
        r = t.run(["sh", "-ec", script], sudo=True)
        if not r.ok:
            raise StepError(t.host, self.name, f"rm -rf ({len(paths)} paths)", r.rc, r.stderr_tail())
