"""The programs kbootstrap sends to hosts, as source, and runs there with the host's python3 (3.6 or newer):
agent.py (facts and file writes in one command: transport/remote.py), probe.py (preflight: preflight/facts.py)
and csr_approver.py (kbootstrap-csr-approver.service on control planes: render/csr_approver.py). Each is one
self-contained file of the standard library only (a test holds this); nothing here imports the rest of
kbootstrap, and this package imports nothing."""
