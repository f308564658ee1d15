"""The controller check's logic on real files in a temporary tree: symlinks resolved inside the root (never
through this machine's), commands found on the PATH directories, the budget arithmetic, the report."""

from __future__ import annotations

import os
from pathlib import Path

from kbootstrap.lab import check


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/share/lxc/config").mkdir(parents=True)
    os.symlink("usr/bin", root / "bin")  # usrmerge, as on Debian 12
    tool = root / "usr/bin/lxc-start"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (root / "usr/bin/not-executable").write_text("")
    (root / "usr/share/lxc/config/common.conf").write_text("")
    return root


def test_absolute_symlinks_resolve_inside_the_root_not_on_this_machine(tmp_path):
    root = _tree(tmp_path)
    # /etc/alternatives style: an absolute link that exists on this machine but not in the root
    os.symlink("/usr/bin/env", root / "usr/bin/env")
    assert Path("/usr/bin/env").exists()
    assert check.resolve_in(root, "/usr/bin/env") is None
    os.symlink("/usr/share/lxc/config/common.conf", root / "usr/bin/linked")
    assert check.resolve_in(root, "/usr/bin/linked") == root / "usr/share/lxc/config/common.conf"
    assert check.resolve_in(root, "/bin/lxc-start") == root / "usr/bin/lxc-start"  # through the relative /bin link
    assert check.resolve_in(root, "/usr/bin/../share/lxc/config/common.conf") == root / "usr/share/lxc/config/common.conf"
    assert check.resolve_in(root, "/../../usr/bin/lxc-start") == root / "usr/bin/lxc-start"  # never above the root


def test_a_symlink_loop_is_absent_not_a_hang(tmp_path):
    root = _tree(tmp_path)
    os.symlink("b", root / "usr/bin/a")
    os.symlink("a", root / "usr/bin/b")
    assert check.resolve_in(root, "/usr/bin/a") is None


def test_commands_must_be_executable_files_on_the_path(tmp_path):
    root = _tree(tmp_path)
    assert check.find_command(root, "lxc-start") == Path("/usr/bin/lxc-start")
    assert check.find_command(root, "not-executable") is None
    assert check.find_command(root, "lxc-stop") is None


def test_missing_pieces_name_their_package_and_the_report_gives_one_install_line(tmp_path):
    root = _tree(tmp_path)
    findings = check.check_files(root, {"lxc-start": ("lxc", "x"), "lxc-attach": ("lxc", "x"),
                                        "debootstrap": ("debootstrap", "y")},
                                 {"/usr/share/lxc/config/common.conf": ("liblxc-common", "z"),
                                  "/usr/share/lxc/config/debian.common.conf": ("lxc-templates", "every node")})
    bad = check.problems(findings)
    assert [(f.kind, f.name, f.package) for f in bad] == [
        ("command", "lxc-attach", "lxc"), ("command", "debootstrap", "debootstrap"),
        ("file", "/usr/share/lxc/config/debian.common.conf", "lxc-templates")]
    text = check.report(findings)
    assert "MISSING  file      /usr/share/lxc/config/debian.common.conf" in text
    assert text.splitlines()[-1] == ("3 problem(s); install: apt-get install --no-install-recommends "
                                     "lxc debootstrap lxc-templates")


def test_a_glob_finds_a_versioned_file_under_the_root(tmp_path):
    root = _tree(tmp_path)
    spec = root / "usr/share/rubygems-integration/all/specifications"
    spec.mkdir(parents=True)
    (spec / "vagrant-lxc-1.4.3.gemspec").write_text("")
    pattern = "/usr/share/rubygems-integration/all/specifications/vagrant-lxc-*.gemspec"
    assert check.find_file(root, pattern) == "/usr/share/rubygems-integration/all/specifications/vagrant-lxc-1.4.3.gemspec"
    assert check.find_file(tmp_path / "root/usr", pattern) is None


def test_layouts_starting_together_are_counted_together():
    budget = check.Budget(limit=128, used=40)  # 128 - 40 - reserve 8 = 80 free: 20 idle nodes
    assert budget.free == 80 and budget.hosts(check.INOTIFY_PER_NODE_IDLE) == 20
    fit = check.check_fit({"a": 12, "b": 8, "c": 1}, budget)
    assert [f.ok for f in fit] == [True, True, False]
    assert "at most 0 more hosts fit" in fit[2].detail
    big = check.check_fit({"lab-scale": 42}, check.Budget(limit=128, used=0))[0]
    assert not big.ok and "42 node(s) to start need 168" in big.detail and "at most 30 more hosts fit" in big.detail


def test_the_budget_counts_this_machines_inotify_instances():
    """The count is real: an inotify instance this process opens is one more."""
    import ctypes

    before = check.inotify_budget(os.geteuid())
    fd = ctypes.CDLL(None, use_errno=True).inotify_init()
    assert fd >= 0
    try:
        after = check.inotify_budget(os.geteuid())
    finally:
        os.close(fd)
    assert after.limit == before.limit == int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    assert after.used >= before.used + 1


def test_a_cluster_node_costs_by_its_roles():
    assert check.in_cluster(("loadbalancer",)) == check.INOTIFY_PER_NODE_IDLE
    assert check.in_cluster(("etcd",)) == check.INOTIFY_PER_NODE_IDLE
    assert check.in_cluster(("worker",)) == 13
    assert check.in_cluster(("control-plane", "etcd")) == 27
