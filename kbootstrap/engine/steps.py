"""The few kinds of Step. Each says what facts it needs, answers `check` from those facts alone (no side
effects, so `plan` is honest), and applies its changes in one batch.

A Step that finds nothing to change yields no Change and does nothing at all: that is idempotence by
construction (compare digests and states; act only on a difference).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Protocol

from kbootstrap.artifacts.debs import INSTALLED_QUERY, debs_to_install, installed_versions
from kbootstrap.artifacts.manifest import ManifestFile
from kbootstrap.engine.poll import Pending, poll
from kbootstrap.errors import StepError
from kbootstrap.model.artifact import Artifact
from kbootstrap.transport import remote
from kbootstrap.transport.base import CommandResult, Transport
from kbootstrap.transport.remote import HostFacts


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
    stat: list[str] = field(default_factory=list)  # modification times only (no digest: binaries are large)

    def merge(self, other: Wants) -> None:
        self.files += other.files
        self.units += other.units
        self.stat += other.stat
        # Probe results are keyed by step name: two steps of one host with the same name would read each
        # other's answer (a step skipped or run by the other's probe). A programming error, refused here.
        clash = [k for k in other.probes if self.probes.get(k, other.probes[k]) != other.probes[k]]
        if clash:
            raise ValueError(f"two steps of one host named {clash}: give each its own name")
        self.probes |= other.probes


def run_until_ok(t: Transport, argv: list[str], *, timeout: float, interval: float) -> CommandResult:
    """argv (through sudo) until it succeeds or `timeout` has passed: the last result either way (engine/poll.py)."""
    last: list[CommandResult] = []

    def attempt() -> bool | Pending:
        last[:] = [r := t.run(argv, sudo=True)]
        return True if r.ok else Pending()

    poll(attempt, timeout=timeout, interval=interval)
    return last[0]


SETTLE = 15.0  # seconds a probe may take to pass after its command did (a reader catching up)


def settled(t: Transport, probe: list[str]) -> CommandResult:
    """The probe after a command, polled for up to SETTLE seconds: what a command changed may reach its reader
    a moment later (an image `ctr` imported shows in the CRI's image list once containerd's event is handled:
    seen on the lab as "no such image" right after a successful import)."""
    return run_until_ok(t, probe, timeout=SETTLE, interval=0.5)


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
                out.append(Change(self.name, "create", path, f"{a.size} bytes, mode {a.mode:04o}", a.secret))
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


UNIT_DIRS = ("/etc/systemd/system/", "/lib/systemd/system/")


class RunChanges(set):
    """The paths a run changed on one host (for restarts), and which unit files systemd has not reloaded."""

    def __init__(self) -> None:
        super().__init__()
        self.unreloaded: set[str] = set()

    def copy(self) -> RunChanges:
        c = RunChanges()
        c |= self
        c.unreloaded = set(self.unreloaded)
        return c


def _unreloaded(changed: set[str]) -> set[str]:
    return changed.unreloaded if isinstance(changed, RunChanges) else changed


def unit(name: str) -> str:
    """A systemd unit's full name: a bare name is a service (`kubelet`); `x.timer` stays as it is."""
    return name if "." in name else f"{name}.service"


def wanted_by_link(name: str) -> str:
    """Where `systemctl enable` links the unit: timers under timers.target, services under multi-user."""
    u = unit(name)
    return f"/etc/systemd/system/{'timers' if u.endswith('.timer') else 'multi-user'}.target.wants/{u}"


class ServicesStep:
    """systemd services: daemon-reload only when a unit file changed; enable and start what is not;
    restart a running service only when one of its input files changed in this run, or was changed after the
    service last started or reloaded (a run that wrote it and stopped before this step, or ran only the
    files phase: the service would keep the old configuration). A `reloadable` service whose change is
    configuration only (not its unit or binary) is reloaded instead: haproxy keeps its connections and
    keepalived its VIP."""

    name = "services"

    def __init__(self, services: list[str], inputs: dict[str, set[str]], start: bool = True,
                 reloadable: tuple[str, ...] = ()):
        self.services = services
        self.inputs = inputs  # service -> paths whose change restarts it
        self.start = start
        self.reloadable = reloadable

    def wants(self) -> Wants:
        return Wants(units=[unit(s) for s in self.services],
                     stat=sorted({p for s in self.services for p in self.inputs.get(s, ())}))

    def _stale(self, s: str, facts: HostFacts, state: dict[str, str]) -> set[str]:
        """Inputs modified in a later second than the service's last start or reload (StartedAt, whole seconds)."""
        if not state.get("StartedAt", "").isdigit():
            return set()
        started = int(state["StartedAt"])
        return {p for p in self.inputs.get(s, ()) if (m := facts.mtimes.get(p)) is not None and int(m) > started}

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        out = []
        if any(p.startswith(UNIT_DIRS) for p in _unreloaded(changed)) or any(
            facts.units.get(unit(s), {}).get("NeedDaemonReload") == "yes" for s in self.services
        ):
            out.append(Change(self.name, "daemon-reload", "systemd"))
        for s in self.services:
            state = facts.units.get(unit(s), {})
            if state.get("UnitFileState") not in ("enabled", "enabled-runtime", "static"):
                out.append(Change(self.name, "enable", s))
            if not self.start:
                continue
            if state.get("ActiveState") != "active":
                out.append(Change(self.name, "start", s))
            elif paths := (self.inputs.get(s, set()) & changed) or self._stale(s, facts, state):
                config_only = s in self.reloadable and not any(p.startswith((*UNIT_DIRS, "/usr/")) for p in paths)
                why = "changed" if paths & changed else "changed since it started"
                out.append(Change(self.name, "reload" if config_only else "restart", s,
                                  f"{why}: {', '.join(sorted(paths))}"))
        return out

    def apply(self, t: Transport, changes: list[Change]) -> None:
        by_action: dict[str, list[str]] = {}
        for c in changes:
            by_action.setdefault(c.action, []).append(c.target)
        script = []
        if "daemon-reload" in by_action:
            script.append("systemctl daemon-reload")
        for action in ("enable", "start", "restart", "reload"):
            if by_action.get(action):
                units = " ".join(unit(u) for u in by_action[action])
                if action in ("start", "restart"):  # a unit that hit its start limit refuses to start until reset
                    script.append(f"{{ systemctl reset-failed {units} 2>/dev/null || true; }}")
                script.append(f"systemctl {action} {units}")
        if not script:
            return
        r = t.run(["sh", "-ec", " && ".join(script)], sudo=True)
        if not r.ok:
            raise StepError(t.host, self.name, " && ".join(script), r.rc, r.stderr_tail() + self._why(t))

    def _why(self, t: Transport) -> str:
        """The last journal lines of the services that are not running: the reason, not 'see journalctl'."""
        units = [unit(s) for s in self.services]
        argv = ["sh", "-c", 'for u in "$@"; do systemctl is-active -q "$u" || journalctl -u "$u" -n 12 -o cat '
                '--no-pager | sed "s/^/$u: /"; done', "sh", *units]
        tail = t.run(argv, sudo=True).stdout.decode(errors="replace").strip()
        return f"\n{tail}" if tail else ""


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
        self._probe_passes(t)

    def _probe_passes(self, t: Transport) -> None:
        p = settled(t, self.probe)
        if not p.ok:
            raise StepError(t.host, self.name, "probe after apply: " + " ".join(self.probe), p.rc, p.stderr_tail())


class ShellStep(CommandStep):
    """A CommandStep over a shell snippet, shown by a short label instead of the whole script."""

    def __init__(self, name: str, probe: str, command: str, label: str, detail: str = "", args: tuple[str, ...] = ()):
        """`args`: the snippets' positional parameters ($1, $2...): values passed as they are, never parsed."""
        super().__init__(name, probe=["sh", "-c", probe, "sh", *args], command=["sh", "-c", command, "sh", *args],
                         detail=detail)
        self.label = label

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        return [Change(c.step, c.action, self.label, c.detail) for c in super().check(facts, changed)]


class RetryStep(CommandStep):
    """A command that fails until the host catches up (an etcd learner is promoted only once in sync with the
    leader): retried every `interval` seconds for up to `timeout`; the last failure is the error."""

    def __init__(self, name: str, probe: list[str], command: list[str], timeout: float = 180, interval: float = 2,
                 detail: str = ""):
        super().__init__(name, probe, command, detail)
        self.timeout, self.interval = timeout, interval

    def apply(self, t: Transport, changes: list[Change]) -> None:
        r = run_until_ok(t, self.command, timeout=self.timeout, interval=self.interval)
        if not r.ok:
            raise StepError(t.host, self.name, f"still failing after {self.timeout:.0f}s: " + " ".join(self.command),
                            r.rc, r.stderr_tail())
        self._probe_passes(t)


class ImagesStep:
    """Image archives imported into containerd's k8s.io namespace unless the CRI lists the image already. One
    `crictl inspecti` of them all answers a host that has every one (the usual case); only when one is missing
    is each looked up, so that only the missing ones are imported."""

    name = "images"

    def __init__(self, crictl: list[str], ctr: str, images: dict[str, str]):
        self.crictl, self.ctr = crictl, ctr
        self.images = images  # image reference -> its archive's path on the host

    def _probe(self) -> list[str]:
        inspect = " ".join(shlex.quote(a) for a in [*self.crictl, "inspecti", "-q"])
        return ["sh", "-c", f'{inspect} "$@" >/dev/null 2>&1 && exit 0; '
                f'for i in "$@"; do {inspect} "$i" >/dev/null 2>&1 || echo "$i"; done; exit 1',
                "sh", *self.images]

    def wants(self) -> Wants:
        return Wants(probes={self.name: self._probe()})

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        answer = facts.probes.get(self.name, {})
        if answer.get("rc") == 0:
            return []
        listed = set(answer.get("stdout", "").split())
        missing = [i for i in self.images if i in listed] or list(self.images)  # no answer: all of them
        return [Change(self.name, "import", i, f"from {self.images[i]}") for i in missing]

    def apply(self, t: Transport, changes: list[Change]) -> None:
        for c in changes:
            argv = [self.ctr, "-n", "k8s.io", "images", "import", self.images[c.target]]
            r = t.run(argv, sudo=True)
            if not r.ok:
                raise StepError(t.host, self.name, " ".join(argv), r.rc, r.stderr_tail())
        p = settled(t, self._probe())
        if not p.ok:
            raise StepError(t.host, self.name, "images still missing after import", p.rc,
                            p.stdout.decode(errors="replace").strip())


class SysctlStep:
    """Kernel settings applied now (the sysctl.d file written by a FilesStep keeps them across reboots)."""

    name = "sysctl"

    def __init__(self, settings: dict[str, str]):
        self.settings = settings

    def wants(self) -> Wants:
        # One probe for all keys; `-e` so a key this kernel lacks reads as missing, not as a failed probe.
        return Wants(probes={self.name: ["sysctl", "-e", *self.settings]})

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        have = {}
        for line in facts.probes.get(self.name, {}).get("stdout", "").splitlines():
            key, sep, value = line.partition(" = ")
            if sep:
                have[key.strip()] = " ".join(value.split())
        return [Change(self.name, "set", k, f"{have.get(k, 'missing')} -> {v}")
                for k, v in self.settings.items() if have.get(k) != v]

    def apply(self, t: Transport, changes: list[Change]) -> None:
        argv = ["sysctl", "-w", *(f"{c.target}={self.settings[c.target]}" for c in changes)]
        r = t.run(argv, sudo=True)
        if not r.ok:
            raise StepError(t.host, self.name, " ".join(argv), r.rc, r.stderr_tail())


class WaitStep:
    """Wait, bounded, until a probe passes (a member healthy, an API ready). Already passing: no change.

    On timeout the error says what was awaited and the probe's last output, instead of a hang."""

    def __init__(self, name: str, probe: list[str], timeout: float = 180, interval: float = 2, what: str = ""):
        self.name, self.probe, self.timeout, self.interval = name, probe, timeout, interval
        self.what = what or name

    def wants(self) -> Wants:
        return Wants(probes={self.name: self.probe})

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        if facts.probes.get(self.name, {}).get("rc") == 0:
            return []
        return [Change(self.name, "wait", self.what, f"up to {self.timeout:.0f}s")]

    def apply(self, t: Transport, changes: list[Change]) -> None:
        r = run_until_ok(t, self.probe, timeout=self.timeout, interval=self.interval)
        if not r.ok:
            raise StepError(t.host, self.name, f"not ready after {self.timeout:.0f}s: " + " ".join(self.probe),
                            r.rc, r.stderr_tail() or r.stdout.decode(errors="replace").strip()[-500:])


class WaitAfterChange(WaitStep):
    """A wait that also runs when one of `watch` changed on the host in this run, whatever the facts said: the
    facts were read before the change, when the old instance of a component (a static pod the kubelet has not
    replaced yet, a service before its restart) still answered."""

    def __init__(self, name: str, probe: list[str], watch: set[str], timeout: float = 180, interval: float = 2,
                 what: str = ""):
        super().__init__(name, probe, timeout, interval, what)
        self.watch = watch

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        if self.watch & changed:
            return [Change(self.name, "wait", self.what, f"after the change, up to {self.timeout:.0f}s")]
        return super().check(facts, changed)


class PackagesStep:
    """OS packages from the bundle's .debs: every one not installed at (at least) its version, pushed and
    installed with a single `dpkg -i`, which orders them itself. Installed ones are never touched."""

    name = "packages"

    def __init__(self, debs: list[tuple[ManifestFile, Artifact]]):
        self.debs = {f.package: (f, a) for f, a in debs if f.package}  # a .deb always names its package

    def wants(self) -> Wants:
        # Only these packages: the agent keeps a probe's last 4000 bytes, and a full listing is longer.
        # dpkg-query exits 1 for a package it has never seen but still reports the others.
        return Wants(probes={self.name: [*INSTALLED_QUERY, *sorted(self.debs)]})

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]:
        installed = installed_versions(facts.probes.get(self.name, {}).get("stdout", ""))
        todo = debs_to_install([f for f, _ in self.debs.values()], installed)
        return [Change(self.name, "install", str(f.package), f"{installed.get(str(f.package), 'absent')} -> {f.version}")
                for f in todo]

    def apply(self, t: Transport, changes: list[Change]) -> None:
        files = [self.debs[c.target][1] for c in changes]
        remote.write_files(t, files)
        argv = ["env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--force-confold", "-i", *(a.path for a in files)]
        r = t.run(argv, sudo=True, timeout=600)
        if not r.ok:
            raise StepError(t.host, self.name, " ".join(argv[:5]) + f" ({len(files)} .debs)", r.rc, r.stderr_tail())


class Step(Protocol):
    """What the runner needs of a step: the facts it wants, the changes those facts call for, and applying them
    in one batch. (A union of the step classes missed reset's two steps; a protocol cannot.)"""

    name: str

    def wants(self) -> Wants: ...

    def check(self, facts: HostFacts, changed: set[str]) -> list[Change]: ...

    def apply(self, t: Transport, changes: list[Change]) -> None: ...
