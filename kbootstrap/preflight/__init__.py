"""Preflight for `kbootstrap init`: find every reason a host would fail before anything is changed.

probe.py runs on each host (one command) and reports facts; facts.py sends it and types the answer;
checks.py turns {host: facts} plus the ClusterSpec into findings (pure); run.py does all three for a cluster.
"""

from kbootstrap.preflight.checks import (
           Finding,
           Severity,
           Target,
           check,
           errors,
           format_problems,
           reach_targets,
           required_ports,
)
from kbootstrap.preflight.facts import PreflightFacts, gather_preflight
from kbootstrap.preflight.run import run_preflight

__all__ = ["Finding", "PreflightFacts", "Severity", "Target", "check", "errors", "format_problems",
           "gather_preflight", "reach_targets", "required_ports", "run_preflight"]
