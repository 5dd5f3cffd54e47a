"""Calibration proved on loopback (benchmarks/calibration_loopback.py): a real uvicorn
model with known latency, recorded through the real SDK on the real clock, fitted, and
replayed on the simulator in virtual time; the prediction's p50 and p95 of the time to
first token and to the complete reply must be within 10% of the measurement."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from perfkit.traces import read_traces
from tests.test_benchmark_scripts import script

ROW = re.compile(r"^(ttft|complete) (p50|p95) +([\d.]+)ms +([\d.]+)ms +([+-][\d.]+)%$", re.M)


@pytest.mark.slow
def test_the_prediction_is_within_10_percent_of_the_loopback_measurement(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    traces = tmp_path / "traces.jsonl"
    status = script("calibration_loopback").main(
        ["--traces", str(traces), "--overhead-tokens", "0"]
    )
    out = capsys.readouterr().out
    rows = ROW.findall(out)
    assert [(name, q) for name, q, *_ in rows] == [
        ("ttft", "p50"),
        ("ttft", "p95"),
        ("complete", "p50"),
        ("complete", "p95"),
    ], out
    for _, _, measured, predicted, _ in rows:
        assert abs(float(predicted) - float(measured)) <= 0.10 * float(measured), out
    assert status == 0, out
    recorded = read_traces(traces)
    assert len(recorded) == 153
    assert all(trace.ok and trace.stream and trace.ttft_s for trace in recorded)
    assert sum(trace.cache_read_input_tokens > 0 for trace in recorded) > 20
    assert sum(trace.cache_creation_input_tokens > 0 for trace in recorded) == 3


@pytest.mark.slow
def test_the_script_exits_1_when_a_prediction_is_outside_the_bound(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = script("calibration_loopback").main(
        ["--requests", "20", "--bound", "0.0001", "--overhead-tokens", "20"]
    )
    out = capsys.readouterr().out
    assert len(ROW.findall(out)) == 4, out
    assert "OUTSIDE 0%" in out
    assert status == 1


def test_the_script_refuses_a_workload_too_small_to_fit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        script("calibration_loopback").main(["--requests", "5"])
    assert exit_info.value.code == 2
    assert "--requests must be >= 20" in capsys.readouterr().err
