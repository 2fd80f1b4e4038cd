"""Exceptions raised by pyquint. Every user-facing error is a :class:`PyquintError`."""

from __future__ import annotations


class PyquintError(Exception):
    """Base class of pyquint's errors: the message is meant for the user, as is."""


class InputError(PyquintError, ValueError):
    """An input file or array cannot be used (missing, corrupt, wrong shape, dtype, ...)."""


class ModelFileError(PyquintError, ValueError):
    """A model file is corrupt, truncated, of an unknown version, or not a pyquint model."""


class ImageJError(PyquintError, RuntimeError):
    """ImageJ is missing, failed, or reported an error (its message is included)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM arrived: stop at once (finished outputs stay, partial ones are removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
