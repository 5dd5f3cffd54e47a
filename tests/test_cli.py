"""The perfkit command line and its demos."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from perfkit import cli
from perfkit.demos import cache as cache_demo


def test_demo_cache_walks_through_miss_l1_hit_l2_hit_and_stats() -> None:
    steps, stats = cache_demo.run()
    assert [step.label for step in steps] == [
        "First call (cache miss)",
        "Second call (L1 hit)",
        "Third call (L2 hit)",
    ]
    assert {step.result for step in steps} == {"42 x 42 = 1764"}
    miss, l1_hit, l2_hit = (step.modeled for step in steps)
    # The miss: an L2 GET, the 2 s LLM call, an L2 SET; the L2 hit: one GET.
    assert miss == cache_demo.LLM_SECONDS + 2 * cache_demo.REDIS_ROUND_TRIP
    assert l1_hit == 0.0
    assert l2_hit == cache_demo.REDIS_ROUND_TRIP
    assert stats == {
        "l1_hits": 1,
        "l2_hits": 1,
        "misses": 1,
        "total_requests": 3,
        "hit_rate": 0.6667,
    }


def test_demo_cache_prints_the_measured_figures() -> None:
    out = io.StringIO()
    assert cli.main(["demo", "cache"], out=out) == cli.EXIT_OK
    text = out.getvalue()
    assert "First call (cache miss)...\nResult: '42 x 42 = 1764', Time: 2.002000s modeled" in text
    assert "Third call (L2 hit)...\nResult: '42 x 42 = 1764', Time: 0.001000s modeled" in text
    assert "2,002x faster (modeled)" in text
    assert '"hit_rate": 0.6667' in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command"),
        (["demo"], "the following arguments are required: name"),
        (["demo", "nope"], "invalid choice: 'nope' (choose from 'cache')"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_mistakes_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("perfkit")
    assert message in err


def test_python_dash_m_perfkit_runs_the_demo() -> None:
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-m", "perfkit", "demo", "cache"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Second call (L1 hit)..." in completed.stdout
    assert "demo wall time" in completed.stdout
