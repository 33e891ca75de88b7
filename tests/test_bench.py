"""The benchmarks run and print their figures (their numbers are judged by people, not by tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a bench script as a person would; it must succeed."""
    result = subprocess.run(
        [sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result


def test_reader_hit_bench_prints_percentiles_and_the_ratio(redis_url: str) -> None:
    """A short run prints p50/p99 of both paths and their ratio against the 1.3 target."""
    result = _bench("bench/reader_hit.py", "--iterations", "200", "--url", redis_url)
    number = r"\s+\d+\.\d+"
    assert re.search(rf"raw GET \+ model_validate_json{number}{number}", result.stdout)
    assert re.search(rf"Reader\.quote{number}{number}", result.stdout)
    assert re.search(rf"ratio Reader / raw{number}{number}\s+target p50 <= 1.3", result.stdout)


def test_chain_storage_bench_prints_bytes_per_contract_and_read_times(redis_url: str) -> None:
    """A short run prints bytes per contract against the object-per-contract baseline, and read times."""
    result = _bench("bench/chain_storage.py", "--iterations", "100", "--url", redis_url)
    number = r"\s+\d+\.\d+"
    assert "200 contracts with greeks" in result.stdout
    found = re.search(rf"rows \(stored\) vs one object per contract({number})({number})", result.stdout)
    assert found is not None, result.stdout
    assert float(found.group(1)) < float(found.group(2))
    assert re.search(rf"raw GET{number}{number}", result.stdout)
    assert re.search(rf"Reader\.chain \(200 contracts, parsed\){number}{number}", result.stdout)


def test_calls_per_week_bench_compares_the_schedule_with_round_the_clock_polling() -> None:
    """The week's calls per dataset on the calendar schedule, next to polling, and the total ratio."""
    result = _bench("bench/calls_per_week.py", "--symbols", "100")
    assert "100 symbols" in result.stdout
    quotes = re.search(r"quotes\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)%", result.stdout)
    assert quotes is not None, result.stdout
    assert int(quotes.group(3)) == 7 * 86_400 // 15  # polling: every 15 s all week, one batch of 100
    assert int(quotes.group(2)) < int(quotes.group(3))
    assert re.search(r"total\s+(\d+)\s+(\d+)\s+[\d.]+%", result.stdout)


@pytest.mark.long(seconds=7)
def test_miss_path_bench_prints_percentiles_against_the_latency(redis_url: str) -> None:
    """A short run prints p50/p99 of a miss and of the direct upstream call, and the target; and
    the upstream calls of misses in bulk against one per symbol."""
    result = _bench(
        "bench/miss_path.py", "--misses", "20", "--latency-ms", "50", "--bulk", "1,50", "--url", redis_url
    )
    number = r"\s+\d+\.\d+"
    assert "emulator latency 50 ms" in result.stdout
    assert re.search(rf"direct upstream call \(baseline\){number}{number}", result.stdout)
    found = re.search(rf"Reader\.quote miss \(fetch on demand\)({number})({number})", result.stdout)
    assert found is not None, result.stdout
    assert float(found.group(1)) >= 50  # a miss costs at least the upstream's latency: it was fetched
    assert re.search(rf"target: miss p50 <= latency \+ 30 ms{number}", result.stdout)
    # 50 misses in one quotes() call: 1 upstream call (one per symbol would be 50), 50 quotes back
    assert re.search(rf"\n\s+50\s+1\s+50{number}\s+50\n", result.stdout), result.stdout


@pytest.mark.long(seconds=12)
def test_load_bench_reads_under_refreshes_with_no_error_and_no_torn_read(redis_url: str) -> None:
    """A short run: readers in processes read while the worker refreshes, with 0 errors and 0 torn
    reads, and the figures beside the paused baseline."""
    result = _bench(
        "bench/load.py",
        *("--seconds", "3", "--paused-seconds", "1", "--rounds", "1", "--readers", "2"),
        *("--symbols", "20", "--optionable", "3", "--url", redis_url),
    )
    assert re.search(r"all reads\s+\d+\s+\d+\s+\d+\s+0\s+\d+\s+\d+\s+\d+\s+0", result.stdout), result.stdout
    assert re.search(r"torn reads: 0 of [1-9]\d* bundles", result.stdout), result.stdout
    assert "errors 0, torn reads 0: ok" in result.stdout


@pytest.mark.long(seconds=20)
def test_scale_bench_prints_throughput_freshness_and_allowance_share_per_worker_count(redis_url: str) -> None:
    """A short run of 1 and 2 workers prints a row each: calls/min, share of the allowance, chain
    calls/min against the 1-worker baseline, quote ages and 429s."""
    result = _bench(
        "bench/scale.py", "--workers", "1,2", "--seconds", "2", "--symbols", "10", "--url", redis_url
    )
    number = r"\s+\d+\.\d"
    rows = re.findall(
        rf"^\s+([12]){number}\s+\d+%{number}\s+(\d+\.\d\d|-){number}{number}\s+(\d+)$", result.stdout, re.M
    )
    assert [row[0] for row in rows] == ["1", "2"], result.stdout
    assert rows[0][1] in ("1.00", "-")  # the baseline against itself
