"""A workflow is data: a command's phases, declared once, in order (kubeadm's phase workflow, as a table).

Each `PhaseSpec` has a name (the phase module's NAME), a one-line summary and a builder from the run's
`Inputs` to the Phase, or None when it has nothing to do for these inputs (its run-if). From the same table
come the phase list in the command's --help, `--skip-phases` and `--only-phases` (a phase run alone), and the
README's phase table is checked against it by a test. The runner (runner.run_phases) runs whatever list a
workflow builds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from kbootstrap.engine.runner import Phase
from kbootstrap.errors import Refused
from kbootstrap.model.spec import Node
from kbootstrap.render import RenderContext


class UnknownPhase(Refused):
    """--skip-phases / --only-phases named a phase the command does not have (bad input: exit 2)."""


@dataclass
class Inputs:
    """What a run's phases are built from. Commands fill what their phases read; the rest stays empty."""

    ctx: RenderContext
    nodes: list[Node]
    bundle: Path | None = None
    manifest: Any = None  # artifacts.manifest.Manifest (the engine does not import the artifacts layer)
    token: str | None = None  # join: the bootstrap token the new nodes' kubeconfig holds
    new: list[Node] = field(default_factory=list)  # join: the nodes that have not joined yet
    workers: list[Node] = field(default_factory=list)  # join --control-plane: joined workers (their new route)
    timeout: float = 300
    purge: dict[str, list[str]] | None = None  # reset --purge: host -> installed binaries to remove
    detach: bool = True  # reset: take reset nodes out of the cluster through a control plane left running
    restore: Any = None  # etcd restore: workflows.etcd_restore.RestorePlan
    remove: Any = None  # remove: workflows.remove_nodes.RemovePlan

    @property
    def bundle_dir(self) -> Path:
        assert self.bundle is not None, "this workflow installs from a bundle"
        return self.bundle

    @cached_property
    def binaries(self) -> dict[str, list]:
        """Each node's binaries from the bundle (the services phases restart what changed among them)."""
        from kbootstrap.phases import bundle_payload

        assert self.bundle is not None and self.manifest is not None
        return {n.name: bundle_payload.binaries(self.ctx.spec, n, self.bundle, self.manifest)
                for n in [*self.nodes, *self.workers]}


Builder = Callable[[Inputs], Phase | list[Phase] | None]  # a list: the same phase host by host, in order


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    summary: str
    build: Builder


@dataclass(frozen=True)
class Workflow:
    command: str
    phases: tuple[PhaseSpec, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.phases]

    def help(self) -> str:
        """The phase list for --help, one line a phase (click keeps it as written after a \\b line)."""
        width = max(len(n) for n in self.names) + 2
        return "\n".join(f"  {p.name:<{width}} {p.summary}" for p in self.phases)

    def check(self, names: Collection[str], option: str) -> None:
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise UnknownPhase(f"{option}: {', '.join(unknown)}: no such phase of `{self.command}` "
                               f"(its phases: {', '.join(self.names)})")

    def build(self, inputs: Inputs, *, skip: Collection[str] = (), only: Collection[str] = ()) -> list[Phase]:
        """The phases to run, in order: all, minus `skip`, or `only` these; a phase with nothing to do for
        these inputs is left out."""
        self.check(skip, "--skip-phases")
        self.check(only, "--only-phases")
        out = []
        for p in self.phases:
            if p.name in skip or (only and p.name not in only):
                continue
            built = p.build(inputs)
            for phase in built if isinstance(built, list) else [built] if built is not None else []:
                assert phase.name == p.name, f"{p.name} built a phase named {phase.name}"
                out.append(phase)
        return out

    def then(self, command: str, *more: PhaseSpec) -> Workflow:
        """This workflow's phases followed by more, as another command's (join --control-plane = init + node)."""
        return Workflow(command, (*self.phases, *more))


def phase_list(value: str | None) -> tuple[str, ...]:
    """--skip-phases a,b → ("a", "b")."""
    return tuple(x.strip() for x in (value or "").split(",") if x.strip())


def names_of(phases: Sequence[Phase]) -> list[str]:
    return [p.name for p in phases]
