"""Cluster PKI: the certificate table (table.py), issuing and keeping keys (issue.py), kubeconfigs."""
