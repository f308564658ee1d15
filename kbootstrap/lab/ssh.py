"""SSH to lab nodes the strict way: the lab key, the recorded host key, nothing else."""

from __future__ import annotations

from kbootstrap.lab.layout import LabNode, Layout


def connect(layout: Layout, node: LabNode, timeout: float = 10):
    """A paramiko client logged in as the inventory's user; RejectPolicy: an unknown or changed host
    key is an error, never accepted."""
    import paramiko

    client = paramiko.SSHClient()
    client.get_host_keys().load(str(layout.known_hosts))  # read only: never written back
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        str(node.address),
        username=layout.ssh_user,
        key_filename=str(layout.ssh_key),
        look_for_keys=False,
        allow_agent=False,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
    )
    return client


def run(layout: Layout, node: LabNode, command: str, timeout: float = 30) -> tuple[int, str, str]:
    client = connect(layout, node, timeout=min(timeout, 10))
    try:
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
        rc = stdout.channel.recv_exit_status()
        return rc, stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
    finally:
        client.close()
