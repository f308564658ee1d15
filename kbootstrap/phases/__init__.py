"""One module a phase: each picks its hosts and yields their steps."""
