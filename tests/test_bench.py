"""The benchmarks run and print their figures (their numbers are judged by people, not by tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_reader_hit_bench_prints_percentiles_and_the_ratio(redis_url: str) -> None:
    """A short run prints p50/p99 of both paths and their ratio against the 1.3 target."""
    result = subprocess.run(
        [sys.executable, "bench/reader_hit.py", "--iterations", "200", "--url", redis_url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    number = r"\s+\d+\.\d+"
    assert re.search(rf"raw GET \+ model_validate_json{number}{number}", result.stdout)
    assert re.search(rf"Reader\.quote{number}{number}", result.stdout)
    assert re.search(rf"ratio Reader / raw{number}{number}\s+target p50 <= 1.3", result.stdout)
