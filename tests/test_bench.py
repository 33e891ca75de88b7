"""The benchmarks run and print their figures (their numbers are judged by people, not by tests)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import __main__ as runner
from bench._figures import Figure, Target, read, table, write

REPO = Path(__file__).resolve().parent.parent


def _bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a bench script as a person would; it must succeed."""
    result = subprocess.run(
        [sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result


def _figures_of(path: Path) -> dict[tuple[str, str], dict[str, object]]:
    """The figures a script wrote with --figures-json, by (name, baseline name)."""
    return {(f["name"], f["baseline_name"]): f for f in json.loads(path.read_text())}


def test_reader_hit_bench_prints_percentiles_and_the_ratios(redis_url: str, tmp_path: Path) -> None:
    """A short run prints p50/p99 of a hit, of the raw GET and of a requests-cache hit, and of a
    100-quote batch and the raw MGET, with the ratios against the 1.3 and 1.2 targets; and writes
    the three figures."""
    result = _bench(
        "bench/reader_hit.py",
        *("--iterations", "200", "--requests-cache-iterations", "20", "--batch-iterations", "10"),
        *("--url", redis_url, "--figures-json", str(tmp_path / "f.json")),
    )
    number = r"\s+\d+\.\d+"
    assert re.search(rf"raw GET \+ model_validate_json{number}{number}", result.stdout)
    assert re.search(rf"Reader\.quote{number}{number}", result.stdout)
    assert re.search(rf"requests-cache SQLite hit \+ validate{number}{number}", result.stdout)
    assert re.search(rf"ratio Reader / raw{number}{number}\s+target p50 <= 1.3", result.stdout)
    assert re.search(rf"raw MGET \+ model_validate_json of 100{number}{number}", result.stdout)
    assert re.search(rf"ratio Reader\.quotes / raw{number}{number}\s+target p50 <= 1.2", result.stdout)
    figures = _figures_of(tmp_path / "f.json")
    assert set(figures) == {
        ("reader hit p50: Reader.quote", "raw GET + validation"),
        ("reader hit p50: Reader.quote", "requests-cache SQLite hit + validation"),
        ("batch read p50: quotes() of 100 cached", "raw MGET + validation of 100"),
    }
    batch = figures["batch read p50: quotes() of 100 cached", "raw MGET + validation of 100"]
    assert batch["unit"] == "us"
    assert batch["target"] == {"limit": 1.2, "of": "ratio", "op": "<="}


def test_chain_storage_bench_prints_bytes_per_contract_and_read_times(redis_url: str, tmp_path: Path) -> None:
    """A short run prints bytes per contract against the object-per-contract baseline, bytes per
    quote against the upstream's answer, and read times; and writes them as figures."""
    result = _bench(
        "bench/chain_storage.py",
        "--iterations",
        "100",
        "--url",
        redis_url,
        "--figures-json",
        str(tmp_path / "f"),
    )
    number = r"\s+\d+\.\d+"
    assert "200 contracts with greeks" in result.stdout
    found = re.search(rf"rows \(stored\) vs one object per contract({number})({number})", result.stdout)
    assert found is not None, result.stdout
    assert float(found.group(1)) < float(found.group(2))
    quote = re.search(r"bytes per quote: stored vs the upstream answer\s+(\d+)\s+(\d+)", result.stdout)
    assert quote is not None, result.stdout
    figures = _figures_of(tmp_path / "f")
    per_contract = figures["bytes per contract (200-contract chain)", "one JSON object per contract"]
    assert per_contract["value"] == pytest.approx(float(found.group(1)), abs=0.05)
    assert figures["bytes per quote", "the upstream's answer"]["value"] == int(quote.group(1))
    assert re.search(rf"raw GET{number}{number}", result.stdout)
    assert re.search(rf"Reader\.chain \(200 contracts, parsed\){number}{number}", result.stdout)


def test_calls_per_week_bench_compares_the_schedule_with_round_the_clock_polling(tmp_path: Path) -> None:
    """The week's calls per dataset on the calendar schedule, next to polling, and the total ratio;
    the totals written as one figure."""
    result = _bench("bench/calls_per_week.py", "--symbols", "100", "--figures-json", str(tmp_path / "f"))
    assert "100 symbols" in result.stdout
    quotes = re.search(r"quotes\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)%", result.stdout)
    assert quotes is not None, result.stdout
    assert int(quotes.group(3)) == 7 * 86_400 // 15  # polling: every 15 s all week, one batch of 100
    assert int(quotes.group(2)) < int(quotes.group(3))
    total = re.search(r"total\s+(\d+)\s+(\d+)\s+[\d.]+%", result.stdout)
    assert total is not None, result.stdout
    week = _figures_of(tmp_path / "f")["upstream calls per week, 100 symbols", "round-the-clock polling"]
    assert (week["value"], week["baseline"]) == (int(total.group(1)), int(total.group(2)))


@pytest.mark.long(seconds=7)
def test_miss_path_bench_prints_percentiles_against_the_latency(redis_url: str, tmp_path: Path) -> None:
    """A short run prints p50/p99 of a miss and of the direct upstream call, and the target; and
    the upstream calls of misses in bulk against one per symbol; the largest bulk is a figure."""
    result = _bench(
        *("bench/miss_path.py", "--misses", "20", "--latency-ms", "50", "--bulk", "1,50", "--url", redis_url),
        *("--figures-json", str(tmp_path / "f")),
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
    bulk = _figures_of(tmp_path / "f")["upstream calls of one quotes() miss of 50", "one call per symbol"]
    assert (bulk["value"], bulk["baseline"]) == (1, 50)


@pytest.mark.long(seconds=12)
def test_load_bench_reads_under_refreshes_with_no_error_and_no_torn_read(
    redis_url: str, tmp_path: Path
) -> None:
    """A short run: readers in processes read while the worker refreshes, with 0 errors and 0 torn
    reads, and the figures beside the paused baseline."""
    result = _bench(
        "bench/load.py",
        *("--seconds", "3", "--paused-seconds", "1", "--rounds", "1", "--readers", "2"),
        *("--symbols", "20", "--optionable", "3", "--url", redis_url, "--figures-json", str(tmp_path / "f")),
    )
    assert re.search(r"all reads\s+\d+\s+\d+\s+\d+\s+0\s+\d+\s+\d+\s+\d+\s+0", result.stdout), result.stdout
    assert re.search(r"torn reads: 0 of [1-9]\d* bundles", result.stdout), result.stdout
    assert "errors 0, torn reads 0: ok" in result.stdout
    assert _figures_of(tmp_path / "f")["errors and torn reads under refreshes", ""]["value"] == 0


@pytest.mark.long(seconds=20)
def test_scale_bench_prints_throughput_freshness_and_allowance_share_per_worker_count(
    redis_url: str, tmp_path: Path
) -> None:
    """A short run of 1 and 2 workers prints a row each: calls/min, share of the allowance, chain
    calls/min against the 1-worker baseline, quote ages and 429s."""
    result = _bench(
        *("bench/scale.py", "--workers", "1,2", "--seconds", "2", "--symbols", "10", "--url", redis_url),
        *("--figures-json", str(tmp_path / "f")),
    )
    number = r"\s+\d+\.\d"
    rows = re.findall(
        rf"^\s+([12]){number}\s+\d+%{number}\s+(\d+\.\d\d|-){number}{number}\s+(\d+)$", result.stdout, re.M
    )
    assert [row[0] for row in rows] == ["1", "2"], result.stdout
    assert rows[0][1] in ("1.00", "-")  # the baseline against itself
    figures = _figures_of(tmp_path / "f")
    assert set(figures) == {
        ("chain calls/min, 2 workers", "1 worker"),
        ("upstream calls/min, 2 workers", "the allowance"),
        ("answers 429, runs of 1,2 workers", ""),
    }
    assert figures["answers 429, runs of 1,2 workers", ""]["value"] == int(rows[0][2]) + int(rows[1][2])


@pytest.mark.long(seconds=8)
def test_worker_rss_bench_reads_the_workers_memory_after_each_count_of_refresh_cycles(
    redis_url: str, tmp_path: Path
) -> None:
    """A short run of a real worker process: its RSS after 10 and 30 refresh cycles side by side,
    one upstream call per refresh of 5 symbols, and both as figures (RSS against the 10 % target)."""
    result = _bench(
        *("bench/worker_rss.py", "--cycles", "10,30", "--symbols", "5", "--url", redis_url),
        *("--figures-json", str(tmp_path / "f")),
    )
    rss = dict(re.findall(r"^\s+(\d+)\s+(\d+\.\d)$", result.stdout, re.M))
    assert set(rss) == {"10", "30"}, result.stdout
    assert float(rss["10"]) > 20  # MiB: a Python process with the worker's imports
    assert re.search(r"growth from 10 to 30 cycles: [+-]\d+\.\d%.*: ok", result.stdout), result.stdout
    assert "upstream calls per refresh: 1.00 for 5 symbols" in result.stdout
    assert "failed refreshes: 0" in result.stdout
    figures = _figures_of(tmp_path / "f")
    memory = figures["worker RSS after 30 refresh cycles", "after 10 cycles"]
    assert (memory["value"], memory["baseline"]) == (float(rss["30"]), float(rss["10"]))
    assert memory["target"] == {"limit": 1.1, "of": "ratio", "op": "<="}
    calls = figures["upstream calls per quotes refresh (5 symbols)", "one call per symbol"]
    assert (calls["value"], calls["baseline"]) == (1.0, 5)


def test_table_sets_each_figure_beside_its_baseline_with_the_ratio_target_and_verdict() -> None:
    """One row per figure: value, baseline, ratio, target and a verdict (ok, MISSED, or - without a
    target); a failed script is named under the table."""
    figures = [
        Figure("batch read p50", 2400.0, "us", 2000.0, "raw MGET + validation", Target(1.2)),
        Figure("miss p50", 190.0, "ms", 160.0, "direct upstream call", Target(180, of="value")),
        Figure("bytes per quote", 712, "B", 700, "the upstream's answer"),
        Figure("errors", 0, "", target=Target(0, of="value")),
    ]
    lines = table(figures, ["bench/scale.py"]).splitlines()
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines]
    assert cells[0] == ["figure", "value", "baseline (same run)", "ratio", "target", "verdict"]
    assert cells[2] == [
        "batch read p50",
        "2,400 us",
        "raw MGET + validation",
        "2,000 us",
        "1.20",
        "ratio <= 1.2",
        "ok",
    ]
    assert cells[3] == ["miss p50", "190 ms", "direct upstream call", "160 ms", "1.19", "<= 180 ms", "MISSED"]
    assert cells[4] == ["bytes per quote", "712 B", "the upstream's answer", "700 B", "1.02", "-", "-"]
    assert cells[5] == ["errors", "0", "-", "-", "<= 0", "ok"]
    assert lines[6] == "bench/scale.py FAILED (see its output above): its figures are missing or incomplete"


FAKE_SCRIPT = """
import argparse, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from bench._figures import Figure, Target, write
parser = argparse.ArgumentParser()
parser.add_argument("--figures-json", type=Path)
parser.add_argument("--factor", type=float, default=1.0)
args = parser.parse_args()
print("fake bench: its own lines")
write(args.figures_json, [Figure("{name}", 10 * args.factor, "us", 10.0, "the floor", Target(1.2))])
sys.exit({status})
"""


def _fake_script(directory: Path, name: str, status: int = 0) -> runner.Script:
    (directory / f"{name}.py").write_text(FAKE_SCRIPT.format(repo=str(REPO), name=name, status=status))
    return runner.Script(name, short=("--factor", "1.15"), full=("--factor", "1.5"), directory=directory)


def test_runner_runs_each_script_and_ends_with_one_table_of_their_figures(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`python -m bench` runs each script with its short arguments (its own lines pass through),
    then prints one table of every figure; exit 0 when every target is met."""
    scripts = [_fake_script(tmp_path, "first"), _fake_script(tmp_path, "second")]
    assert runner.main([], scripts) == 0
    out = capfd.readouterr().out
    assert out.count("fake bench: its own lines") == 2
    assert re.search(r"^first\s+11\.5 us\s+the floor\s+10 us\s+1\.15\s+ratio <= 1\.2\s+ok$", out, re.M), out
    assert re.search(r"^second\s+11\.5 us .* ok$", out, re.M), out
    assert out.index("fake bench") < out.index("marketcache benchmarks: 2 scripts")


def test_runner_exits_1_on_a_failed_script_or_with_check_on_a_missed_target(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """--full runs the scripts' full arguments (here a ratio of 1.5, over its 1.2 target): MISSED,
    exit 1 with --check only; a script that exits 1 fails the run; --only runs the scripts named."""
    scripts = [_fake_script(tmp_path, "slow"), _fake_script(tmp_path, "broken", status=1)]
    assert runner.main(["--full", "--only", "slow"], scripts) == 0
    out = capfd.readouterr().out
    assert re.search(r"^slow\s+15 us .* 1\.50\s+ratio <= 1\.2\s+MISSED$", out, re.M), out
    assert out.splitlines()[-1] == "NOTE: slow missed its target"
    assert "broken" not in out
    assert runner.main(["--full", "--check", "--only", "slow"], scripts) == 1
    assert capfd.readouterr().out.splitlines()[-1] == "FAILED: slow missed its target"
    assert runner.main(["--only", "broken"], scripts) == 1
    assert re.match(r"FAILED: \S+/broken\.py failed$", capfd.readouterr().out.splitlines()[-1])


def test_figures_read_back_as_written_with_the_script_that_measured_them(tmp_path: Path) -> None:
    """The JSON a script writes reads back to the same figures, marked with the script's name."""
    written = [Figure("a", 1.5, "ms", 2.0, "b", Target(400, of="value", op="<")), Figure("c", 3, "")]
    write(tmp_path / "f.json", written)
    back = read(tmp_path / "f.json", "reader_hit")
    assert [f.script for f in back] == ["reader_hit", "reader_hit"]
    assert [(f.name, f.value, f.baseline, f.target, f.met) for f in back] == [
        ("a", 1.5, 2.0, Target(400, of="value", op="<"), True),
        ("c", 3, None, None, None),
    ]


def test_runner_knows_every_bench_script() -> None:
    """`make bench` runs every script of bench/: a new one must be added to the runner's list."""
    scripts = {p.stem for p in (REPO / "bench").glob("*.py") if not p.name.startswith("_")}
    assert {s.name for s in runner.SCRIPTS} == scripts
