"""python -m kbootstrap.verify -i INVENTORY: the same as `kbootstrap verify`."""

from .cli import _main

_main()
