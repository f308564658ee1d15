"""The engine layer's shared pieces. (steps, runner, session, journal and lock move here with the layout of the
workflows issue; poll.py, the one bounded wait, is here already.)"""
