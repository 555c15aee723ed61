"""One base for every problem a user can act on: the CLI prints these as one line, and anything
else as a traceback with where to report it (a bug is never disguised as a user mistake)."""

from __future__ import annotations


class SmoError(Exception):
    """A problem the user or their environment can fix; the message says what and how."""


class ConfigError(SmoError, ValueError):
    """A spec, taxonomy, setting or flag that cannot be used as given."""


class InputError(SmoError, ValueError):
    """A data file, table or answer that cannot be read as the command expects."""


class ServiceError(SmoError, RuntimeError):
    """A service (Label Studio, Prefect, PostgreSQL, the ML backend) refused or did not answer."""
