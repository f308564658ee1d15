"""How kbootstrap reaches hosts: SSH (ssh.py) or this machine (local.py), behind one small interface."""

from kbootstrap.transport.base import CommandResult, Transport

__all__ = ["CommandResult", "Transport"]
