"""The command line: argument parsing and printing only. main.py is the `kbootstrap` group and its commands,
common.py what every command line shares (consoles, inventory loading, host and phase options, the one
error -> exit code mapping), reset.py the reset command, session.py the locked, journaled run a command
prints from."""
