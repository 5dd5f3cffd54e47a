"""Request traces: record how a real model answers (TraceRecorder) and read them back
(read_traces) to calibrate the simulator's latency model."""

from __future__ import annotations

from perfkit.traces._fit import FitError, LatencyFit, ModelFit, fit_traces, ks_statistic
from perfkit.traces._format import Trace, TraceFormatError, iter_traces, read_traces
from perfkit.traces._recorder import TraceRecorder

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
