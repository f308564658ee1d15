"""The model layer: what an inventory may say (spec.py: typed, frozen, every problem at once), which releases
are supported (versions.py), the etcd members record (etcd_members.py), a rendered file (artifact.py), and
component_config checked against the upstream types (component_config.py, schemas/). Nothing here touches a
host."""
