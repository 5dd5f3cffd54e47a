"""Request traces: record how a real model answers (TraceRecorder) and read them back
(read_traces) to calibrate the simulator's latency model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfkit._lazy import lazy_names
from perfkit.traces._format import Trace, TraceFormatError, iter_traces, read_traces
from perfkit.traces._recorder import TraceRecorder

if TYPE_CHECKING:
    from perfkit.traces._fit import FitError, LatencyFit, ModelFit, fit_traces, ks_statistic

# The fit imports the simulator (it checks the fit by simulating): loaded on first use, so
# that recording in production does not load it.
_HOMES = {
    "perfkit.traces._fit": ("FitError", "LatencyFit", "ModelFit", "fit_traces", "ks_statistic")
}
__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())

__all__ = [
    "FitError",
    "LatencyFit",
    "ModelFit",
    "Trace",
    "TraceFormatError",
    "TraceRecorder",
    "fit_traces",
    "iter_traces",
    "ks_statistic",
    "read_traces",
]
