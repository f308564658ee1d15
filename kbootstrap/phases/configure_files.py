"""Phase `files`: every rendered file on every host, then a daemon-reload if a unit file changed.

Services are not started here: the install phases of `init` do that once binaries are in place.
"""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import FilesStep, ServicesStep, Step
from kbootstrap.model.spec import Node
from kbootstrap.render import RenderContext, render_host

NAME = "files"  # the phase's name in workflow tables, --help, --skip-phases and the journal


def configure_files(ctx: RenderContext, nodes: list[Node]) -> Phase:
    steps: dict[str, list[Step]] = {}
    for node in nodes:
        artifacts = render_host(ctx, node)
        steps[node.name] = [FilesStep(artifacts), ServicesStep([], {}, start=False)]
    return Phase(NAME, steps)
