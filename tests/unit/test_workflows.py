"""Each command's phases are one declared table (kbootstrap/workflows): --help lists them from it, --skip-phases
and --only-phases select from it (an unknown name is refused, exit 2, before any host), and the README's init
table is the same list. No phase list is typed anywhere else."""

from __future__ import annotations

import re

import pytest

from kbootstrap.workflows import INIT, JOIN, JOIN_CONTROL_PLANE, RESET, WORKFLOWS, Inputs, UnknownPhase
from tests.conftest import REPO, kb, render_context


def test_phase_names_are_unique_within_a_workflow():
    for w in WORKFLOWS.values():
        assert len(set(w.names)) == len(w.names), w.command


@pytest.mark.parametrize("command,workflows", [("init", [INIT]), ("join", [JOIN, JOIN_CONTROL_PLANE]),
                                               ("reset", [RESET])])
def test_help_lists_the_phases_from_the_table(command, workflows, tmp_path):
    text = kb(command, "--help", home=tmp_path).stdout
    listed = re.findall(r"^    ([a-z-]+) {2,}\S", text, re.M)
    assert listed == [n for w in workflows for n in w.names]
    assert "{phases" not in text


def test_the_readme_init_table_is_the_workflow():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| phase | what |"):]
    rows = re.findall(r"^\| `([a-z-]+)` \|", table.split("\n\n")[0], re.M)
    assert rows == INIT.names


def test_no_command_types_a_phase_list_by_hand():
    """The commands' help texts hold a {phases} placeholder, not phase names in a column."""
    for path in ("kbootstrap/cli/main.py", "kbootstrap/cli/reset.py"):
        source = (REPO / path).read_text()
        assert not re.search(r"^\s+(os|stop)\s{3,}\S", source, re.M), path


def test_skip_and_only_select_in_table_order(stacked):
    nodes = stacked.spec.nodes
    everything = [p.name for p in RESET.build(Inputs(stacked, nodes))]
    assert everything == ["stop", "containers", "files", "network"]  # no --purge, nothing to detach
    assert [p.name for p in RESET.build(Inputs(stacked, nodes), skip=("containers",))] == ["stop", "files", "network"]
    assert [p.name for p in RESET.build(Inputs(stacked, nodes), only=("network", "stop"))] == ["stop", "network"]
    with pytest.raises(UnknownPhase, match="--skip-phases: loadbalancer: no such phase of `reset`"):
        RESET.build(Inputs(stacked, nodes), skip=("loadbalancer",))


def test_an_unknown_phase_is_refused_before_any_host(tmp_path):
    p = kb("init", "-i", str(REPO / "inventories/lab-stacked.yaml"), "--skip-phases", "loadbalancer", home=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    line = next(x for x in p.stderr.splitlines() if "loadbalancer" in x)
    assert "no such phase of `init`" in line and "loadbalancers" in line
    assert not (tmp_path / "clusters").exists()  # not even the cluster directory


@pytest.fixture
def stacked(tmp_path):
    from kbootstrap.model.spec import load_inventory

    return render_context(load_inventory(REPO / "inventories/lab-stacked.yaml"), tmp_path)
