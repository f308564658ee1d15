"""The few kinds of Step. Each says what facts it needs, answers `check` from those facts alone (no side
effects, so `plan` is honest), and applies its changes in one batch.

A Step that finds nothing to change yields no Change and does nothing at all: that is idempotence by
construction (compare digests and states; act only on a difference).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .artifact import Artifact
from .errors import StepError
from .transport import remote
from .transport.base import Transport
from .transport.remote import HostFacts


@dataclass(frozen=True)
class Change:
    step: str
    action: str  # create | update | chmod | enable | start | restart | daemon-reload | run
    target: str
    detail: str = ""
    secret: bool = False


@dataclass
class Wants:
    files: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    probes: dict[str, list[str]] = field(default_factory=dict)

    def merge(self, other: "Wants") -> None:
        self.files += other.files
        self.units += other.units
        self.probes |= other.probes


class FilesStep:
    """Files exactly as rendered: content by sha256, mode, owner and group."""

    name = "files"

    def __init__(self, artifacts: list[Artifact]):
        self.artifacts = {a.path: a for a in artifacts}

    def wants(self) -> Wants:
        return Wants(files=list(self.artifacts))

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        out = []
        for path, a in self.artifacts.items():
            have = facts.files.get(path)
            if have is None:
                out.append(Change(self.name, "create", path, f"{len(a.content)} bytes, mode {a.mode:04o}", a.secret))
            elif have.sha256 != a.sha256:
                out.append(Change(self.name, "update", path, f"sha256 {(have.sha256 or '-')[:12]} -> {a.sha256[:12]}",
                                  a.secret))
            elif (have.mode, have.owner, have.group) != (a.mode, a.owner, a.group):
                out.append(Change(self.name, "chmod", path,
                                  f"{have.mode:04o} {have.owner}:{have.group} -> {a.mode:04o} {a.owner}:{a.group}",
                                  a.secret))
        return out

    def apply(self, t: Transport, changes: list[Change]) -> None:
        remote.write_files(t, [self.artifacts[c.target] for c in changes])


class ServicesStep:
    """systemd services: daemon-reload only when a unit file changed; enable and start what is not;
    restart a running service only when one of its input files changed in this run."""

    name = "services"

    def __init__(self, services: list[str], inputs: dict[str, set[str]], start: bool = True):
        self.services = services
        self.inputs = inputs  # service -> paths whose change restarts it
        self.start = start

    def wants(self) -> Wants:
        return Wants(units=[f"{s}.service" for s in self.services])

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        out = []
        if any(p.startswith(("/etc/systemd/system/", "/lib/systemd/system/")) for p in changed) or any(
            facts.units.get(f"{s}.service", {}).get("NeedDaemonReload") == "yes" for s in self.services
        ):
            out.append(Change(self.name, "daemon-reload", "systemd"))
        for s in self.services:
            unit = facts.units.get(f"{s}.service", {})
            if unit.get("UnitFileState") not in ("enabled", "enabled-runtime", "static"):
                out.append(Change(self.name, "enable", s))
            if not self.start:
                continue
            if unit.get("ActiveState") != "active":
                out.append(Change(self.name, "start", s))
            elif self.inputs.get(s, set()) & changed:
                why = ", ".join(sorted(self.inputs[s] & changed))
                out.append(Change(self.name, "restart", s, f"changed: {why}"))
        return out

    def apply(self, t: Transport, changes: list[Change]) -> None:
        by_action: dict[str, list[str]] = {}
        for c in changes:
            by_action.setdefault(c.action, []).append(c.target)
        script = []
        if "daemon-reload" in by_action:
            script.append("systemctl daemon-reload")
        for action in ("enable", "start", "restart"):
            if by_action.get(action):
                units = " ".join(f"{u}.service" for u in by_action[action])
                script.append(f"systemctl {action} {units}")
        if not script:
            return
        r = t.run(["sh", "-ec", " && ".join(script)], sudo=True)
        if not r.ok:
            raise StepError(t.host, self.name, " && ".join(script), r.rc, r.stderr_tail())


class CommandStep:
    """A command guarded by a probe: run only when the probe fails; the probe must pass afterwards."""

    def __init__(self, name: str, probe: list[str], command: list[str], detail: str = ""):
        self.name = name
        self.probe = probe
        self.command = command
        self.detail = detail

    def wants(self) -> Wants:
        return Wants(probes={self.name: self.probe})

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        if facts.probes.get(self.name, {}).get("rc") == 0:
            return []
        return [Change(self.name, "run", " ".join(self.command), self.detail)]

    def apply(self, t: Transport, changes: list[Change]) -> None:
        r = t.run(self.command, sudo=True)
        if not r.ok:
            raise StepError(t.host, self.name, " ".join(self.command), r.rc, r.stderr_tail())
        p = t.run(self.probe, sudo=True)
        if not p.ok:
            raise StepError(t.host, self.name, "probe after apply: " + " ".join(self.probe), p.rc, p.stderr_tail())


Step = FilesStep | ServicesStep | CommandStep
