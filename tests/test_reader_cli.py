"""`python -m reader quote ...`: JSON on a hit, exit 1 and a clear message on a miss."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import redis

from devtools.redis_server import free_port
from reader import OptionChain, OptionContract, Quote, keys
from reader.__main__ import _parser as reader_parser
from reader.__main__ import main as reader_cli
from reader.models import ChainIndex
from tests.support import child_env

REPO = Path(__file__).resolve().parent.parent


def _reader(*args: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = child_env(REDIS_URL=redis_url)
    return subprocess.run(
        [sys.executable, "-m", "reader", "--wait", "0", *args],  # no worker runs: misses answer at once
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def _store(redis_url: str, *symbols: str) -> None:
    now = datetime.now(UTC)
    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    for symbol in symbols:
        quote = Quote(
            symbol=symbol, source="tradier", fetched_at=now, fresh_until=now + timedelta(minutes=1), last=10.5
        )
        pipe.set(keys.quote(symbol), quote.model_dump_json(exclude_none=True))
    pipe.execute()
    client.close()


def test_prints_cached_quotes_as_json(redis_url: str) -> None:
    """Each symbol's quote, with age_s and stale, keyed by symbol."""
    _store(redis_url, "AAPL", "MSFT")
    result = _reader("quote", "aapl", "MSFT", redis_url=redis_url)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert sorted(data) == ["AAPL", "MSFT"]
    assert data["AAPL"]["last"] == 10.5
    assert data["AAPL"]["stale"] is False
    assert 0 <= data["AAPL"]["age_s"] < 60


def test_a_miss_exits_1_with_a_message_and_still_prints_the_hits(redis_url: str) -> None:
    """A symbol not cached: exit 1, the reason on stderr, the others on stdout."""
    _store(redis_url, "AAPL")
    result = _reader("quote", "AAPL", "TSLA", redis_url=redis_url)
    assert result.returncode == 1
    assert "no quote cached for 'TSLA'" in result.stderr
    assert list(json.loads(result.stdout)) == ["AAPL"]


def test_a_malformed_symbol_exits_2(redis_url: str) -> None:
    """A malformed symbol is a usage error naming the value and the accepted form."""
    result = _reader("quote", "AAPL*", redis_url=redis_url)
    assert result.returncode == 2
    assert "'AAPL*' is not a ticker symbol" in result.stderr


def test_unreachable_redis_says_where_it_looked() -> None:
    """No Redis at the URL: exit 1, the URL and what to set, no traceback."""
    result = _reader("quote", "AAPL", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 1
    assert "cannot read from Redis" in result.stderr
    assert "REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def _store_chain(redis_url: str, symbol: str, expiration: date) -> None:
    now = datetime.now(UTC)
    envelope = {"source": "tradier", "fetched_at": now, "fresh_until": now + timedelta(minutes=1)}
    contracts = [
        OptionContract(
            symbol=f"{symbol}{expiration:%y%m%d}C00100000", option_type="call", strike=100.0, bid=2.5
        ),
        OptionContract(
            symbol=f"{symbol}{expiration:%y%m%d}P00100000", option_type="put", strike=100.0, delta=-0.4
        ),
    ]
    chain = OptionChain(**envelope, symbol=symbol, expiration=expiration, contracts=contracts)
    index = ChainIndex(**envelope, symbol=symbol, expirations=(expiration,))
    client = redis.Redis.from_url(redis_url)
    client.set(keys.chain(symbol, expiration), chain.model_dump_json(exclude_none=True))
    client.set(keys.chain_index(symbol), index.model_dump_json())
    client.close()


def test_chain_prints_named_contract_fields_and_filters_a_side(redis_url: str) -> None:
    """`chain SYMBOL --side puts` prints the nearest chain's puts as objects with field names."""
    expiration = datetime.now(UTC).date() + timedelta(days=10)
    _store_chain(redis_url, "SPY", expiration)
    result = _reader("chain", "spy", "--side", "puts", redis_url=redis_url)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["expiration"] == expiration.isoformat()
    assert data["contracts"] == [
        {"symbol": f"SPY{expiration:%y%m%d}P00100000", "option_type": "put", "strike": 100.0, "delta": -0.4}
    ]
    assert data["stale"] is False


def test_dataset_commands_exit_1_on_a_miss_and_2_on_a_bad_argument(redis_url: str) -> None:
    """Missing history or indicators exit 1 naming the dataset; a bad interval or date exits 2."""
    missing = _reader("history", "AAPL", redis_url=redis_url)
    assert missing.returncode == 1
    assert "no 1d history cached for 'AAPL'" in missing.stderr
    assert _reader("indicators", "AAPL", redis_url=redis_url).returncode == 1
    bad = _reader("history", "AAPL", "--interval", "1w", redis_url=redis_url)
    assert bad.returncode == 2
    assert "interval='1w' is not valid" in bad.stderr
    assert _reader("chain", "AAPL", "--expiration", "soon", redis_url=redis_url).returncode == 2


def test_status_and_bundle(redis_url: str) -> None:
    """`status` answers from the calendar even without Redis; `bundle` prints each part or its error."""
    status = _reader("status", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["phase"] in {"pre", "regular", "post", "closed"}
    _store(redis_url, "AAPL")
    bundle = _reader("bundle", "AAPL", "--options", "--technical", redis_url=redis_url)
    assert bundle.returncode == 0, bundle.stderr
    data = json.loads(bundle.stdout)
    assert data["quote"]["last"] == 10.5
    assert "keeps no chains" in data["chains"]["error"]
    assert "no worker is running" in data["chains"]["error"]  # none runs in this test
    assert "no indicators cached" in data["indicators"]["error"]


def test_options_are_accepted_after_the_subcommand_too(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`reader quote KO --wait 0 --url ...` works as the README writes it; an option after the
    subcommand wins over the same option before it."""
    _store(redis_url, "KO")
    code = reader_cli(["--wait", "9", "quote", "KO", "--wait", "0", "--url", redis_url, "--timeout", "1"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["KO"]["last"] == 10.5
    args = reader_parser().parse_args(["--wait", "9", "status", "--wait", "0.5"])
    assert (args.wait, args.timeout, args.url) == (0.5, 2.0, None)
    args = reader_parser().parse_args(["--wait", "9", "--url", "redis://x:1/0", "status"])
    assert (args.wait, args.url) == (9.0, "redis://x:1/0")


def test_a_bad_option_after_the_subcommand_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """The subcommand's own parser refuses like the main one: one line, exit 2, no usage block."""
    with pytest.raises(SystemExit) as exit_info:
        reader_parser().parse_args(["quote", "KO", "--wait", "-1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --wait: '-1': expected seconds from 0")
    assert len(err.strip().splitlines()) == 1


def test_output_cut_short_by_head_prints_no_traceback(redis_url: str) -> None:
    """`python -m reader quote ... | head -1`: the closed pipe ends it quietly, exit 0."""
    symbols = [f"S{i:04d}" for i in range(2000)]  # ~300 kB of JSON: more than a pipe holds
    _store(redis_url, *symbols)
    result = subprocess.run(
        ["sh", "-c", f"{sys.executable} -m reader --wait 0 quote {' '.join(symbols)} | head -1; "
         "echo \"exit=${PIPESTATUS:-$?}\""],
        capture_output=True, text=True, env=child_env(REDIS_URL=redis_url), cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert result.stdout.splitlines()[0] == "{"
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
    assert result.stderr == ""


def test_unreachable_redis_names_the_url_without_its_password(capsys: pytest.CaptureFixture[str]) -> None:
    """The error names the redacted URL, not the reader object's repr."""
    port = free_port()
    code = reader_cli(["quote", "KO", "--url", f"redis://user:s3cret@127.0.0.1:{port}/0", "--timeout", "0.5"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"cannot read from Redis at redis://user:***@127.0.0.1:{port}/0:" in err
    assert "s3cret" not in err
    assert "<SyncReader" not in err
