"""The lab as pytest fixtures: a session-scoped layout per engine, testinfra hosts per node.

KB_LAB_LAYOUTS picks what to bring up: comma-separated ENGINE:INVENTORY pairs (an inventory name from
inventories/ or a path), default "lxc:lab-stacked,vagrant:lab-mini": the fast engine on the 7-node
layout, and the Vagrantfile (vagrant-lxc) on the 3-node one. Layouts come up one after the other;
each is torn down at the end of its tests, whatever happened, and any leftover of a crashed earlier
run is removed before it comes up.

SSH: testinfra over paramiko with the lab key and the host keys the lab recorded at `up`
(RejectPolicy: an unknown or changed host key fails the connection).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kbootstrap.lab import lifecycle
from kbootstrap.lab.layout import REPO, Layout, load_layout

HOST_SYSCTLS = ("net/ipv4/ip_forward", "vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
HOST_SYSCTLS_BEFORE = {k: Path("/proc/sys", k).read_text().strip() for k in HOST_SYSCTLS if Path("/proc/sys", k).exists()}
TIMINGS: list[str] = []


def _layout_params():
    spec = os.environ.get("KB_LAB_LAYOUTS", "lxc:lab-stacked,vagrant:lab-mini")
    params = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        engine, _, inv = item.partition(":")
        path = Path(inv) if inv.endswith((".yaml", ".yml")) else REPO / "inventories" / f"{inv}.yaml"
        params.append(pytest.param((engine, path), id=f"{engine}-{path.stem}"))
    return params


def _missing(engine: str) -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (privileged LXC containers, a bridge)"
    tools = ["lxc-start", "debootstrap", "ip"] + (["vagrant"] if engine == "vagrant" else [])
    absent = [t for t in tools if shutil.which(t) is None]
    if absent:
        return f"not installed: {', '.join(absent)} (see docs/lab.md)"
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "lab_engine(*engines): run this lab test only for layouts up with these engines")
    config.addinivalue_line(
        "markers", "lab_disruptive: changes or removes the layout's nodes; runs after every other test of its layout"
    )
    # A CI timeout or ^C sends SIGTERM: turn it into KeyboardInterrupt so pytest still runs the
    # fixture teardown (lab down) instead of leaving containers behind.
    def _interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread (e.g. under xdist)
        pass


def pytest_collection_modifyitems(config, items):
    """Engine-specific tests are deselected (not skipped) for the other engine's layouts."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("lab_engine")
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("lab") if callspec else None
        (drop if marker and param and param[0] not in marker.args else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    # pytest groups the tests by layout (the session-scoped `lab` parameter); within each group, the
    # disruptive ones (reset, halt/up, teardown) go last, so no other test finds its nodes changed.
    rank: dict = {}
    for item in keep:
        callspec = getattr(item, "callspec", None)
        rank.setdefault(callspec.params.get("lab") if callspec else None, len(rank))

    def key(item):
        callspec = getattr(item, "callspec", None)
        return rank[callspec.params.get("lab") if callspec else None], bool(item.get_closest_marker("lab_disruptive"))

    items[:] = sorted(keep, key=key)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("lab timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)


@dataclass
class Lab:
    layout: Layout
    engine: str
    up_seconds: float
    states: dict[str, str]


@pytest.fixture(scope="session", params=_layout_params())
def lab(request):
    engine, path = request.param
    reason = _missing(engine)
    if reason:
        if os.environ.get("KB_LAB_REQUIRED") or os.environ.get("KB_FORBID_SKIPS"):
            pytest.fail(f"lab prerequisites missing where the lab must run: {reason}")
        pytest.skip(reason)
    layout = load_layout(path)
    log = lambda msg: print(msg, flush=True)  # noqa: E731 - shown with -s, kept in the report otherwise
    lifecycle.down(layout, log=log)  # a crashed earlier run's leftovers
    try:
        result = lifecycle.up(layout, engine, log=log)
        TIMINGS.append(f"{engine} {layout.cluster}: {len(layout.nodes)} nodes up in {result.seconds:.1f} s")
        yield Lab(layout, engine, result.seconds, result.states)
    finally:
        t0 = time.monotonic()
        lifecycle.down(layout, log=log)
        TIMINGS.append(f"{engine} {layout.cluster}: down in {time.monotonic() - t0:.1f} s")


def testinfra_host(layout: Layout, node, *, sudo: bool = False):
    """A testinfra Host over paramiko that only trusts the recorded host key (sudo: commands run
    through `sudo`, for root-only files)."""
    import testinfra.host
    from testinfra.backend.paramiko import ParamikoBackend

    from kbootstrap.lab import ssh

    class StrictParamikoBackend(ParamikoBackend):
        @functools.cached_property
        def client(self):
            return ssh.connect(layout, node)

    backend = StrictParamikoBackend(
        f"paramiko://{layout.ssh_user}@{node.address}", ssh_identity_file=str(layout.ssh_key), sudo=sudo
    )
    return testinfra.host.Host(backend)


@pytest.fixture
def timed(lab):
    """timed(label, fn, *args) runs fn and adds "<engine> <cluster>: <label> in N s" to the summary."""

    def run(label, fn, *args, **kwargs):
        t0 = time.monotonic()
        result = fn(*args, **kwargs)
        TIMINGS.append(f"{lab.engine} {lab.layout.cluster}: {label} in {time.monotonic() - t0:.1f} s")
        return result

    return run


@pytest.fixture
def host_for():
    """testinfra_host(layout, node) as a fixture, for tests that need a new connection."""
    return testinfra_host


@pytest.fixture
def host_sysctls_before():
    """The machine's kernel tunables as they were before any lab node came up."""
    return dict(HOST_SYSCTLS_BEFORE)


def _hosts(lab, sudo: bool):
    made = {n.name: testinfra_host(lab.layout, n, sudo=sudo) for n in lab.layout.nodes}
    yield made
    for h in made.values():
        client = h.backend.__dict__.get("client")
        if client is not None:
            client.close()


@pytest.fixture
def hosts(lab):
    """{node name: testinfra Host} as the inventory's SSH user; new connections for every test
    (nodes may have rebooted)."""
    yield from _hosts(lab, sudo=False)


@pytest.fixture
def root_hosts(lab):
    """Like `hosts`, but every command runs through `sudo` (root-only files, services)."""
    yield from _hosts(lab, sudo=True)


@pytest.fixture(scope="session")
def lab_tools():
    """For modules that manage their own layouts: (require(engine), testinfra_host, TIMINGS)."""

    def require(engine: str) -> None:
        reason = _missing(engine)
        if reason:
            if os.environ.get("KB_LAB_REQUIRED") or os.environ.get("KB_FORBID_SKIPS"):
                pytest.fail(f"lab prerequisites missing where the lab must run: {reason}")
            pytest.skip(reason)

    return require, testinfra_host, TIMINGS


MINI = REPO / "inventories" / "lab-mini.yaml"


@pytest.fixture(scope="module")
def mini():
    """lab-mini's three fresh hosts (lxc engine) for one test module, removed after it whatever happened."""
    layout = load_layout(MINI)
    lifecycle.down(layout)
    try:
        lifecycle.up(layout, "lxc")
        yield layout
    finally:
        lifecycle.down(layout)


@pytest.fixture
def kb_mini(tmp_path):
    """kb_mini(ARGS…): `kbootstrap ARGS -i lab-mini.yaml` as a user runs it, with its own KBOOTSTRAP_HOME
    (kb_mini.home)."""
    import subprocess
    import sys

    home = tmp_path / "home"

    def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "kbootstrap", *args, "-i", str(MINI)], capture_output=True,
                           text=True, env={**os.environ, "KBOOTSTRAP_HOME": str(home)}, timeout=timeout)
        print(f"$ kbootstrap {' '.join(args)}: exit {p.returncode}")
        return p

    run.home = home  # type: ignore[attr-defined]
    return run
