"""`python -m reader quote ...`: JSON on a hit, exit 1 and a clear message on a miss."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import redis

from devtools.redis_server import free_port
from reader import OptionChain, OptionContract, Quote, keys
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
    for symbol in symbols:
        quote = Quote(
            symbol=symbol, source="tradier", fetched_at=now, fresh_until=now + timedelta(minutes=1), last=10.5
        )
        client.set(keys.quote(symbol), quote.model_dump_json(exclude_none=True))
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
