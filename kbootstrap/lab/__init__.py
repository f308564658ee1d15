"""kbootstrap's local lab: real test hosts (LXC system containers) from a lab inventory.

    kbootstrap lab up -i inventories/lab-mini.yaml [--engine lxc|vagrant]
    kbootstrap lab status | reset | down

See docs/lab.md. Python API: load_layout(), up(), reset(), down(), status().
"""

from kbootstrap.lab.errors import LabError
from kbootstrap.lab.layout import LabNode, Layout, load_layout
from kbootstrap.lab.lifecycle import ENGINES, down, reset, status, up

__all__ = ["ENGINES", "LabError", "LabNode", "Layout", "down", "load_layout", "reset", "status", "up"]
