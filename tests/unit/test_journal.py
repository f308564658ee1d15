"""The journal says which hosts kbootstrap really set up, for init's preflight (a port held by a host that init or
join configured is its own service's): only runs that applied count, of the commands that set hosts up, and a reset
that finished on a host forgets what came before it. A dry run, `plan` and `reset` itself never make a host count
as configured (they did: every entry was keyed by host and phase alone, and reset has a `files` phase too)."""

from __future__ import annotations

from kbootstrap.engine.journal import Journal


def _run(root, command: str, applied: bool, *entries: tuple[str, str, bool]) -> None:
    j = Journal(root, command)
    for host, phase, ok in entries:
        j.record(host, phase, ok, changes=1, applied=applied)


def test_dry_runs_plan_and_reset_never_count_as_configured(tmp_path):
    _run(tmp_path, "init", False, ("cp1", "files", True), ("cp2", "files", True))  # init --dry-run
    _run(tmp_path, "plan", False, ("cp1", "files", True))
    _run(tmp_path, "reset", True, ("cp1", "files", True), ("cp2", "services", True))
    assert Journal(tmp_path, "init").configured_hosts() == set()


def test_init_and_join_that_applied_count_until_a_reset_finishes_on_the_host(tmp_path):
    _run(tmp_path, "init", True, ("lb1", "files", True), ("cp1", "files", True), ("cp2", "files", False))
    _run(tmp_path, "join", True, ("w1", "files", True))
    assert Journal(tmp_path, "init").configured_hosts() == {"lb1", "cp1", "w1"}
    _run(tmp_path, "reset", True, ("cp1", "services", True))
    assert Journal(tmp_path, "init").configured_hosts() == {"lb1", "w1"}
    _run(tmp_path, "reset", True, ("lb1", "services", False))  # a reset that failed on lb1 undid nothing for sure
    assert Journal(tmp_path, "init").configured_hosts() == {"lb1", "w1"}
    _run(tmp_path, "init", True, ("cp1", "files", True))
    assert Journal(tmp_path, "init").configured_hosts() == {"lb1", "cp1", "w1"}


def test_an_older_journal_without_the_applied_field_still_knows_its_cluster(tmp_path):
    """Entries written before dry runs were marked count as applied (a cluster made then must not fail preflight
    on its own services' ports); `plan` was never an applying command."""
    (tmp_path / "journal.jsonl").write_text(
        '{"run": "r1", "command": "init", "host": "cp1", "phase": "files", "status": "done", "changes": 3}\n'
        '{"run": "r2", "command": "plan", "host": "cp2", "phase": "files", "status": "done", "changes": 3}\n')
    assert Journal(tmp_path, "init").configured_hosts() == {"cp1"}
