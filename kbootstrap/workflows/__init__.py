"""Each command's phases, declared once as a table (table.py): init, join, join --control-plane, join --local,
reset, etcd restore, remove, certs renew. The CLI builds a run from these; --help and the README's phase table come from (or
are checked against) them."""

from kbootstrap.workflows.certs_renew import RENEW
from kbootstrap.workflows.etcd_restore import RESTORE
from kbootstrap.workflows.init import INIT
from kbootstrap.workflows.join import JOIN, JOIN_CONTROL_PLANE, JOIN_LOCAL
from kbootstrap.workflows.remove_nodes import REMOVE
from kbootstrap.workflows.reset import RESET
from kbootstrap.workflows.table import Inputs, PhaseSpec, UnknownPhase, Workflow, phase_list

WORKFLOWS = {w.command: w for w in (INIT, JOIN, JOIN_CONTROL_PLANE, JOIN_LOCAL, RESET, RESTORE, REMOVE, RENEW)}

__all__ = ["INIT", "JOIN", "JOIN_CONTROL_PLANE", "JOIN_LOCAL", "REMOVE", "RENEW", "RESET", "RESTORE", "WORKFLOWS", "Inputs",
           "PhaseSpec", "UnknownPhase", "Workflow", "phase_list"]
