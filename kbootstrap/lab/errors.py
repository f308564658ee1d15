"""The lab's one error type (a KbootstrapError, so the CLI prints it as a clean message)."""

from __future__ import annotations

from kbootstrap.errors import ExitCode, KbootstrapError


class LabError(KbootstrapError):
    """Something in the local lab could not be done; the message says what and how to fix it."""


class LabRefused(LabError):
    """Refused before anything was made (a missing prerequisite, a layout that does not fit): exit 2."""

    exit_code = ExitCode.REFUSED
