"""`kbootstrap verify`: a running cluster checked against its inventory, read-only.

    run_verify(spec, cluster_dir, nodes, parallel) -> list[Check]   every check, hosts in parallel
    print_checks(checks)                                           the rich table and a summary line
"""

from kbootstrap.verify.checks import Check, host_probes
from kbootstrap.verify.output import checks_json, exit_code, print_checks
from kbootstrap.verify.run import run_verify

__all__ = ["Check", "checks_json", "exit_code", "host_probes", "print_checks", "run_verify"]
