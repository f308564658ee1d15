"""One exit-code mapping for every command (errors.ExitCode, cli_common.fail and exit_for): 0 done or nothing to
do, 1 a host failed, 2 bad input or refused before anything changed, 3 changes pending in a dry run. The lab
tests show the host cases (an unreachable host: 1) on real hosts."""

from __future__ import annotations

import pytest

from kbootstrap.cli.common import exit_for
from kbootstrap.engine.journal import LockHeld
from kbootstrap.engine.runner import HostResult, RunResult
from kbootstrap.engine.steps import Change
from kbootstrap.errors import ExitCode, SpecError, StepError, TransportError
from kbootstrap.lab.errors import LabError, LabRefused
from kbootstrap.local.discovery import DiscoveryError
from kbootstrap.local.join import LocalJoinError, NodeNotReady
from kbootstrap.workflows import UnknownPhase
from kbootstrap.workflows.init_cluster import PreflightFailed
from tests.conftest import REPO, kb


@pytest.mark.parametrize("error,code", [
    (SpecError("inv.yaml", []), 2), (UnknownPhase("x"), 2), (PreflightFailed("x"), 2), (LockHeld("x"), 2),
    (LabRefused("x"), 2), (DiscoveryError("x"), 2), (LocalJoinError("x"), 2),
    (TransportError("cp1", "unreachable"), 1), (StepError("cp1", "files", "cmd", 1, ""), 1), (LabError("x"), 1),
    (NodeNotReady("x", RunResult(applied=True)), 1),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v))
def test_each_error_says_its_exit_code(error, code):
    assert error.exit_code == code


def _exit(result: RunResult, dry_run: bool) -> int:
    with pytest.raises(SystemExit) as e:
        exit_for(result, dry_run)
    return e.value.code


def test_a_runs_result_maps_to_0_1_or_3():
    change = Change("files", "create", "/etc/x")
    assert _exit(RunResult(True, [HostResult("cp1", "files")]), dry_run=False) == ExitCode.DONE
    assert _exit(RunResult(False, [HostResult("cp1", "files", changes=[change])]), dry_run=True) == ExitCode.PENDING
    assert _exit(RunResult(False, [HostResult("cp1", "files")]), dry_run=True) == ExitCode.DONE  # nothing to do
    assert _exit(RunResult(True, [HostResult("cp1", "files", error="boom")]), dry_run=False) == ExitCode.FAILED



@pytest.mark.parametrize("args", [
    ("validate", "-i", "/nonexistent.yaml"),
    ("init", "-i", str(REPO / "inventories/lab-stacked.yaml"), "--only-phases", "nope"),
    ("reset", "-i", str(REPO / "inventories/lab-stacked.yaml")),  # no --yes
    ("verify", "-i", "/nonexistent.yaml"),
    ("lab", "up", "-i", "/nonexistent.yaml"),
], ids=["validate", "init", "reset", "verify", "lab"])
def test_bad_input_or_a_refusal_exits_2_with_one_error_line_on_every_command(args, tmp_path):
    p = kb(*args, home=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and p.stderr.lstrip().startswith("error:"), p.stderr
