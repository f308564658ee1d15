"""python -m kbootstrap.verify -i INVENTORY: the same as `kbootstrap verify`."""

from kbootstrap.verify.cli import _main

_main()
