"""Where perfkit keeps its state on a pytest ``Config`` (``config.stash``)."""

from __future__ import annotations

from typing import Any

import pytest

from perfkit._settings import Settings
from perfkit.pytest_plugin._session import PerfkitSession

SETTINGS_KEY = pytest.StashKey[Settings]()
"""The run's resolved perfkit settings (:class:`perfkit._settings.Settings`)."""
SESSION_KEY = pytest.StashKey[PerfkitSession]()
"""The run's :class:`PerfkitSession`: what it collected and measured."""
COMPARISONS_KEY = pytest.StashKey[list[dict[str, Any]]]()
"""Real-time comparisons a suite records for the report (``benchmark``,
``seconds_per_call``, ``ratios``); pytest-xdist workers hand them to the controller."""
