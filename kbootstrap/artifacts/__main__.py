"""`python -m kbootstrap.artifacts …` runs the `artifacts` command group on its own."""

from kbootstrap.artifacts.cli import artifacts

artifacts(prog_name="kbootstrap artifacts")
