"""The perfkit exception tree.

    PerfkitError
    ├── ClockError                  (virtual time used where it cannot work)
    ├── SimulatorError
    │   └── UnmatchedRequestError   (also an AssertionError: it fails the test)
    ├── RedisServerError            (a real Redis server could not be started)
    └── BaselineError               (a baseline or results file is missing, corrupt or
        │                            does not match: a usage error, not a regression)
        └── ReportWriteError        (a report or baseline file could not be written)

Configuration mistakes raise ``ValueError`` or ``TypeError`` naming the bad value.
"""

from __future__ import annotations


class PerfkitError(Exception):
    """Base class of every error perfkit raises on purpose."""


class ClockError(PerfkitError):
    """Virtual time was asked for where it cannot be provided."""


class SimulatorError(PerfkitError):
    """The simulated API was misused or could not answer."""


class UnmatchedRequestError(SimulatorError, AssertionError):
    """A request reached the simulator that none of its routes serve."""


class RedisServerError(PerfkitError):
    """A real Redis server process could not be found, started or reached."""


class BaselineError(PerfkitError):
    """A baseline or results file could not be used (missing, corrupt or mismatched)."""


class ReportWriteError(BaselineError):
    """A report or baseline file could not be written (its directory is not writable, the
    path is a directory, or the document holds a number JSON cannot: NaN or Infinity)."""
