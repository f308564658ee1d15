"""Artifacts: the upstream files kbootstrap installs (catalog + lock), their verified cache, air-gap bundles,
and the lab build of Kubernetes from its Go modules. See docs/artifacts.md."""
