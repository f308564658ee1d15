"""A worker joining itself (`kbootstrap join --local`, `reset --local`), run on the node: discovery.py trusts the
cluster by token and CA pin, node_profile.py reads the node's settings from the cluster, join.py runs the
join's phases on this machine."""
