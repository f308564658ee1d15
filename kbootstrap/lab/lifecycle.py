"""Lab lifecycle: up, status, reset, down — for tests and people.

Two engines bring up the same inventory as the same LXC containers ("<cluster>-<node>"):
  lxc      plain LXC from Python: overlay roots on the cached image; up in seconds, reset = empty the
           per-node upper layer (fresh node state in ~2 s)
  vagrant  `vagrant up --provider=lxc` with vagrant/Vagrantfile (the user path): a full copy of the box
           per node; reset = destroy + up
Either way `up` first runs the controller check (check.py) and refuses, before any container is made, when
something the lab needs is missing or the layout does not fit in this machine's inotify budget; it returns
only when every node booted, its host keys are recorded in the inventory's known_hosts file and an SSH login
with strict host key checking worked; an `up` that fails after that point removes the layout again (`down`),
so no container is left behind. `down` removes everything the lab made (containers, veths, cgroups, the
bridge once unused), including a crashed earlier run's.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kbootstrap.engine.poll import Pending, poll
from kbootstrap.lab import check, host, known_hosts, lxc, ssh
from kbootstrap.lab.errors import LabError, LabRefused
from kbootstrap.lab.host import Log, stderr_log
from kbootstrap.lab.layout import LabNode, Layout

ENGINES = ("lxc", "vagrant")


@dataclass(frozen=True)
class NodeStatus:
    node: LabNode
    container: str
    state: str
    engine: str
    host_key_recorded: bool


@dataclass
class UpResult:
    layout: Layout
    engine: str
    seconds: float
    states: dict[str, str] = field(default_factory=dict)  # node -> running/degraded


def status(layout: Layout) -> list[NodeStatus]:
    out = []
    for n in layout.nodes:
        i = lxc.info(layout.container(n))
        out.append(NodeStatus(n, i.name, i.state, i.engine, bool(known_hosts.entries(layout.known_hosts, str(n.address)))))
    return out


def engine_of(layout: Layout) -> str | None:
    engines = {s.engine for s in status(layout) if s.engine in ENGINES}
    if len(engines) > 1:
        raise LabError(f"{layout.cluster}: nodes from both engines exist; run `kbootstrap lab down` first")
    return engines.pop() if engines else None


def _warn_cluster_budget(layout: Layout, running: set[str], budget: check.Budget, log: Log) -> None:
    """Booting fits; say so when the cluster this layout runs would not (its nodes would start failing later)."""
    grow = sum(check.in_cluster(n.roles) - (check.INOTIFY_PER_NODE_IDLE if layout.container(n) in running else 0)
               for n in layout.nodes)
    if grow > budget.free:
        log(f"lab: warning: {layout.cluster} boots, but its cluster would need ~{grow} more of root's inotify "
            f"instances and {budget.free} are free (fs.inotify.max_user_instances={budget.limit}): bring other "
            "layouts down before `kbootstrap init`")


def preflight(layout: Layout, engine: str, log: Log = stderr_log) -> None:
    """The controller check for this layout: refuse (LabRefused, the whole report) before anything is made."""
    # This layout's nodes that would start (none are running without LXC: the check then says LXC is missing),
    # and whether they fit: the machine-wide "how many more hosts" figure is not this layout's question.
    running = set(lxc.running_names()) if shutil.which("lxc-ls") else set()
    starting = sum(layout.container(n) not in running for n in layout.nodes)
    budget = check.inotify_budget()
    findings = check.controller(engine, starting={layout.cluster: starting}, budget=budget)
    bad = check.problems(findings)
    if not bad:
        _warn_cluster_budget(layout, running, budget, log)
    if bad:
        raise LabRefused(f"{layout.cluster}: not starting anything; this machine lacks what the lab needs "
                         f"(`kbootstrap lab check` for the whole report):\n" + check.report(bad))


def up(layout: Layout, engine: str = "lxc", *, fresh: bool = False, boot_timeout: float = 180,
       log: Log = stderr_log) -> UpResult:
    """Bring every node of the layout up (idempotent); fresh=True also resets nodes that exist. Refused
    before anything is made when the controller check fails; on a failure later, the layout is removed."""
    if engine not in ENGINES:
        raise LabRefused(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    preflight(layout, engine, log)
    t0 = time.monotonic()
    infos = {n.name: lxc.info(layout.container(n)) for n in layout.nodes}
    for i in infos.values():
        if i.engine == "foreign":
            raise LabRefused(f"container {i.name} exists and was not made by the lab: not touching it")
        if i.engine in ENGINES and i.engine != engine:
            raise LabRefused(f"{layout.cluster} is up with the {i.engine} engine: `kbootstrap lab down` it first")
    _check_address_clash(layout)
    try:
        host.bridge_up(layout)
        if engine == "lxc":
            _up_lxc(layout, infos, fresh, log)
        else:
            _up_vagrant(layout, infos, fresh, log)
        log(f"lab: {layout.cluster}: {len(layout.nodes)} node(s) started; waiting for boot, host keys and SSH")
        states = _finish(layout, boot_timeout, log)
    except BaseException as e:  # a failure or ^C half-way: no container stays behind
        log(f"lab: {layout.cluster}: up failed ({type(e).__name__}); removing its nodes")
        try:
            down(layout, log=log)
        except Exception as cleanup:  # noqa: BLE001 - report it, but the first failure is the one to raise
            log(f"lab: {layout.cluster}: removing it failed too: {cleanup}")
        raise
    return UpResult(layout, engine, time.monotonic() - t0, states)


def reset(layout: Layout, *, log: Log = stderr_log) -> UpResult:
    """Fresh node state, fast: the `lxc` engine empties each node's upper layer and boots it again."""
    engine = engine_of(layout) or "lxc"
    return up(layout, engine, fresh=True, log=log)


def down(layout: Layout, *, log: Log = stderr_log) -> float:
    """Remove every node of the layout and whatever a crashed run left; the bridge once unused."""
    host.require_root()
    t0 = time.monotonic()
    infos = [lxc.info(layout.container(n)) for n in layout.nodes]
    for i in infos:
        if i.engine == "foreign":
            log(f"lab: {i.name} was not made by the lab; leaving it")
    if any(i.engine == "vagrant" for i in infos) and shutil.which("vagrant"):
        r = vagrant(layout, "destroy", "-f", check=False, timeout=600)
        if r.returncode != 0:
            log(f"lab: vagrant destroy failed, removing the containers directly: {r.stderr.strip()[-500:]}")
    for i in infos:
        if i.engine == "foreign":
            continue
        if lxc.info(i.name).exists:
            lxc.stop(i.name, kill=True)
            lxc.destroy(i.name)
        else:
            host.remove_cgroups([f"lxc.payload.{i.name}", f"lxc.monitor.{i.name}"])
    known_hosts.forget(layout.known_hosts, [str(n.address) for n in layout.nodes])
    sweep(layout.bridge, log=log)
    return time.monotonic() - t0


def sweep(bridge: str, *, log: Log = stderr_log) -> None:
    """Host-wide leftovers: stray veths on the lab bridge, the bridge once unused, LXC's pivot cgroups."""
    links = lxc.running_links()
    if host.bridge_exists(bridge):
        host.delete_stray_veths(bridge, set(links), log=log)
        if not host.bridge_down(bridge):
            log(f"lab: bridge {bridge} kept: {', '.join(host.bridge_ports(bridge))} still attached")
    if not lxc.running_names():  # LXC's own helper cgroup; only when no container could be using it
        host.remove_cgroups(["lxc.pivot"])


# ----------------------------------------------------------------------------------------------------


def _check_address_clash(layout: Layout) -> None:
    mine = {str(n.address): layout.container(n) for n in layout.nodes}
    for addr, container in lxc.running_addresses().items():
        if addr in mine and container != mine[addr]:
            raise LabRefused(f"{addr} is already used by the running container {container}")


def _up_lxc(layout: Layout, infos: dict[str, lxc.ContainerInfo], fresh: bool, log: Log) -> None:
    image = host.ensure_image(layout, vagrant=False, log=log)
    for n in layout.nodes:
        name, i = layout.container(n), infos[n.name]
        if i.engine == "leftover":
            lxc.destroy(name)
            i = lxc.info(name)
        stale = i.exists and lxc.image_of(name) != image.name
        if i.exists and (fresh or stale):
            if stale:
                log(f"lab: {name}: the image changed; starting it fresh")
            lxc.stop(name, kill=True)
            lxc.wipe_state(name)
            i = lxc.info(name)
        lxc.write_config(layout, n, image)  # always: sizes or addresses may have changed
        if i.state != "RUNNING":
            lxc.start(name)


def _up_vagrant(layout: Layout, infos: dict[str, lxc.ContainerInfo], fresh: bool, log: Log) -> None:
    if shutil.which("vagrant") is None:
        raise LabError("vagrant is not installed: apt-get install --no-install-recommends vagrant vagrant-lxc")
    host.ensure_image(layout, vagrant=True, log=log)
    for i in infos.values():
        if i.engine == "leftover":
            lxc.destroy(i.name)
    if fresh and any(i.engine == "vagrant" for i in infos.values()):
        vagrant(layout, "destroy", "-f", timeout=600)
    vagrant(layout, "up", "--provider=lxc", timeout=900)


def vagrant(layout: Layout, *args: str, check: bool = True, timeout: float = 900):
    """Run vagrant on vagrant/Vagrantfile for this layout (KB_INVENTORY)."""
    return host.run(
        ["vagrant", *args, "--no-color"],
        cwd=host.vagrant_dir(),
        env={"KB_INVENTORY": str(layout.path)},
        timeout=timeout,
        check=check,
    )


def _finish(layout: Layout, boot_timeout: float, log: Log) -> dict[str, str]:
    """Wait for every node to boot, record its host keys, prove a strict SSH login."""
    with ThreadPoolExecutor(max_workers=len(layout.nodes)) as pool:
        booted = list(pool.map(lambda n: _boot_and_keys(layout, n, boot_timeout), layout.nodes))
    states = {n.name: state for n, state, _ in booted}
    for name, state in states.items():
        if state != "running":
            units = lxc.failed_units(layout.container(layout.node(name)))
            log(f"lab: {name}: systemd is {state}; failed units: {', '.join(units) or 'none'}")
    known_hosts.update(layout.known_hosts, {str(n.address): keys for n, _, keys in booted})
    with ThreadPoolExecutor(max_workers=len(layout.nodes)) as pool:
        list(pool.map(lambda n: _ssh_ready(layout, n), layout.nodes))
    return states


def _boot_and_keys(layout: Layout, node: LabNode, boot_timeout: float):
    name = layout.container(node)
    state = lxc.wait_booted(name, boot_timeout)
    return node, state, lxc.host_keys(name)


def _ssh_ready(layout: Layout, node: LabNode, timeout: float = 60) -> None:
    import paramiko

    def login() -> bool | Pending:
        try:
            rc, _, err = ssh.run(layout, node, "true", timeout=15)
        except paramiko.BadHostKeyException as e:
            raise LabError(f"{node.name} ({node.address}): host key differs from the recorded one: {e}") from None
        except Exception as e:  # noqa: BLE001 - refused while sshd starts; report the last one
            return Pending(f"{type(e).__name__}: {e}")
        return True if rc == 0 else Pending(f"`true` exited {rc}: {err.strip()}")

    result = poll(login, timeout=timeout, interval=0.3)
    if isinstance(result, Pending):
        raise LabError(f"{node.name} ({node.address}): no SSH login with the recorded host key: {result.why}")
