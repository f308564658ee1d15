"""`python -m kbootstrap.artifacts …` runs the `artifacts` command group on its own."""

from .cli import artifacts

artifacts(prog_name="kbootstrap artifacts")
