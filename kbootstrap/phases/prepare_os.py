"""Phase `os`: kernel modules, sysctls and swap, so the runtime and the kubelet find the kernel ready; the
nodes' names in /etc/hosts.

The sysctl.d and modules-load.d files make the settings survive a reboot; the steps here apply them now.
Built-in modules count as present: the probe looks at what the kernel offers, not at `lsmod`.
"""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import CommandStep, FilesStep, Step, SysctlStep
from kbootstrap.model.spec import Node
from kbootstrap.render import RenderContext
from kbootstrap.render.etc_hosts import hosts_step
from kbootstrap.render.node import KERNEL_MODULES, kernel_files, kernel_settings

NAME = "os"  # the phase's name in workflow tables, --help, --skip-phases and the journal

# overlay shows in /proc/filesystems and br_netfilter creates /proc/sys/net/bridge, loaded or built in.
_MODULES_PRESENT = "grep -qw overlay /proc/filesystems && test -d /proc/sys/net/bridge"
_NO_SWAP = "test $(wc -l </proc/swaps) -le 1"


def prepare_os(ctx: RenderContext, nodes: list[Node]) -> Phase:
    steps: dict[str, list[Step]] = {}
    for node in nodes:
        node_steps: list[Step] = [hosts_step(ctx.spec)] if ctx.spec.network.hosts_file else []
        settings, _ = kernel_settings(ctx, node)
        if settings:
            node_steps.append(FilesStep(kernel_files(ctx, node)))
        if node in ctx.spec.kubelet_nodes:
            node_steps += [
                CommandStep("kernel modules", probe=["sh", "-c", _MODULES_PRESENT],
                            command=["modprobe", "-a", *KERNEL_MODULES]),
                # The kubelet refuses to start with swap on (failSwapOn). Entries in /etc/fstab are left to
                # the operator: kbootstrap does not rewrite files it did not create.
                CommandStep("swap off", probe=["sh", "-c", _NO_SWAP], command=["swapoff", "-a"]),
            ]
        if settings:
            node_steps.append(SysctlStep(settings))
        if node_steps:
            steps[node.name] = node_steps
    return Phase(NAME, steps)
