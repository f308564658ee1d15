"""The engine: steps (check from facts, apply in one batch), the runner (facts in one round trip a host, phases in
order, hosts in parallel), the journal and lock, connections to hosts, local files written atomically, and the
one bounded wait (poll.py)."""
