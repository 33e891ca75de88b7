"""API keys never leak, and redacting them garbles nothing.

Sentinel keys (long, random, one per provider) go through whole refresh cycles of every dataset on
both providers, with the upstream failing in every way that can quote a key back (an auth error
echoing the token, a proxy page listing the request headers, a 5xx, a 200 that is not JSON, a 200
JSON error, truncated JSON with the key cut across the excerpt's end, a 404): no fragment of a
sentinel may appear in Redis (every key, every value of every type), in published messages, in log
records (ours raw, everyone's as printed), in raised errors and their causes, in the output of the
reader and worker commands, or in the emulator's stats.

The log formatter's redaction is the net under all of that: a long key is cut wherever it occurs,
a short one (a demo token) only where it stands alone, so that `TRADIER_API_KEY=k` no longer turns
"worker" into "wor***er".
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import signal
import traceback
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio
import yaml

from reader import Reader, ReaderError, keys
from reader import __main__ as reader_cli
from tests.conftest import RunBatches, StartWorker
from tests.support import FakeClock, RunningEmulator, make_config, start_process, until
from worker import __main__ as worker_cli
from worker.config import Config, Secrets
from worker.errors import ConfigError, UpstreamError
from worker.logs import REDACTED, RedactingFormatter, Redactor
from worker.runtime import Runtime

SENTINELS = {"tradier": f"trd{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}", "polygon": f"plg{uuid.uuid4().hex}"}
_FRAGMENT = 12
"""Any run of this many characters of a sentinel counts as a leak: a key cut in half is still a leak."""
_FRAGMENTS = {s[i : i + _FRAGMENT] for s in SENTINELS.values() for i in range(len(s) - _FRAGMENT + 1)}

TRADIER_DATASETS: dict[str, Any] = {
    "quotes": {"provider": "tradier"},
    "expirations": {"enabled": True},
    "chains": {"provider": "tradier", "expirations": 2, "max_days": 60},
    "history": {
        "provider": "tradier",
        "daily": {"lookback_days": 60},
        "intraday": {"bar": "15m", "lookback_days": 2},
    },
    "indicators": {"source": "computed", "sma": [20], "ema": [12], "rsi": [14], "macd": None},
}
POLYGON_DATASETS: dict[str, Any] = {
    "quotes": {"provider": "polygon"},
    "expirations": {"enabled": True},  # Tradier's: Polygon has no such call
    "chains": {"provider": "polygon", "expirations": 1, "max_days": 60, "strike_window_pct": 5},
    "history": {"provider": "polygon", "daily": {"lookback_days": 60}, "intraday": None},
    "indicators": {"source": "polygon", "sma": [20], "ema": [12], "rsi": [14], "macd": [12, 26, 9]},
}
WATCHLIST = ["AAPL", "SPY"]


def leaks(text: str | bytes | None) -> list[str]:
    """The fragments of a sentinel found in `text`."""
    if text is None:
        return []
    found = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return sorted(f for f in _FRAGMENTS if f in found)


def assert_clean(where: str, texts: Iterable[str | bytes | None]) -> int:
    """No sentinel fragment in any of `texts`; returns how many were looked at (so a test can tell
    that it looked at something)."""
    count = 0
    for text in texts:
        count += 1
        found = leaks(text)
        assert not found, f"a key leaked into {where}: {found[:3]} in {text!r:.300}"
    return count


def _provider_of(path: str) -> str:
    return "tradier" if path.startswith("/v1/markets") else "polygon"


def echoing_faults(path: str) -> list[dict[str, Any]]:
    """Answers of a broken upstream or proxy that quote the key sent to `path` back."""
    key = SENTINELS[_provider_of(path)]
    cut = "x" * 80  # puts the key across the end of the 120-byte excerpt of a body that is not JSON
    return [
        {"status": 401, "content_type": "application/json", "body": json.dumps(
            {"fault": {"faultstring": f"Invalid Access Token {key}"}, "error": f"Unknown API Key {key}"}
        )},
        {"status": 502, "content_type": "text/html", "body": (
            f"<html><body><h1>502 Bad Gateway</h1><pre>GET {path}?apiKey={key} HTTP/1.1\r\n"
            f"Authorization: Bearer {key}\r\nAccept: application/json</pre></body></html>"
        )},
        {"status": 500, "body": f"Internal Server Error (token={key})"},
        {"status": 200, "content_type": "text/plain", "body": f"{cut}Bearer {key} is not valid"},
        {"status": 200, "content_type": "application/json", "body": json.dumps(
            {"status": "ERROR", "error": f"invalid key {key}", "quotes": {"quote": key}, "results": key}
        )},
        {"status": 200, "content_type": "application/json", "body": f'{{"quotes": {{"{cut}": "{key}'},
        {"status": 404, "content_type": "application/json", "body": json.dumps(
            {"status": "NOT_FOUND", "message": f"no such ticker for key {key}"}
        )},
        {"status": 403, "content_type": "application/json", "body": json.dumps(
            {"status": "NOT_AUTHORIZED", "message": f"plan of {key} does not include this"}
        )},
    ]  # fmt: skip


async def arm(emulator: RunningEmulator, path: str, fault: dict[str, Any]) -> None:
    """Arm `fault` for the next request to `path`, through the emulator's control endpoint."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{emulator.url}/_emulator/faults", json={"path": path, **fault}) as response,
    ):
        assert response.status == 200, await response.text()


async def disarm(emulator: RunningEmulator) -> None:
    """Clear the faults a phase armed and did not use (a job may have stopped short of a path)."""
    async with (
        aiohttp.ClientSession() as session,
        session.delete(f"{emulator.url}/_emulator/faults") as response,
    ):
        assert response.status == 200, await response.text()


async def emulator_controls(emulator: RunningEmulator) -> list[str]:
    """What the emulator tells about itself: its stats and its clock."""
    async with aiohttp.ClientSession() as session:
        texts = []
        for control in ("stats", "clock"):
            async with session.get(f"{emulator.url}/_emulator/{control}") as response:
                texts.append(await response.text())
    return texts


def redis_contents(redis_url: str) -> list[bytes]:
    """Every key of the Redis at `redis_url`, and every value of it, whatever its type."""
    client = redis.Redis.from_url(redis_url)
    keyspace = client.info("keyspace")
    assert set(keyspace) <= {"db0"}, f"keys outside db 0: {keyspace}"
    found: list[bytes] = []
    for key in client.scan_iter("*", count=1000):
        found.append(key)
        kind = client.type(key)
        if kind == b"string":
            found.append(client.get(key) or b"")
        elif kind == b"hash":
            found.extend(b"%s=%s" % item for item in client.hgetall(key).items())
        elif kind == b"list":
            found.extend(client.lrange(key, 0, -1))
        elif kind == b"set":
            found.extend(client.smembers(key))
        elif kind == b"zset":
            found.extend(member for member, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == b"stream":
            for entry_id, entry in client.xrange(key):
                found.append(entry_id)
                found.extend(b"%s=%s" % item for item in entry.items())
        else:
            raise AssertionError(f"{key!r} is a {kind!r}, which this dump cannot read")
    client.close()
    return found


def log_texts(records: Iterable[logging.LogRecord]) -> list[str]:
    """Each record twice: as our code wrote it (message and traceback, before any redaction: our own
    loggers must never hold a key) and as the worker prints it (redacted: everyone's)."""
    printed = RedactingFormatter(SENTINELS.values())
    texts = []
    for record in records:
        raw = record.getMessage()
        if record.exc_info:
            raw += "".join(traceback.format_exception(*record.exc_info))
        if record.name.split(".")[0] in ("worker", "reader", "arq", "emulator"):
            texts.append(f"{record.name}: {raw}")
        texts.append(printed.format(record))
    return texts


def error_texts(error: BaseException) -> list[str]:
    """An error as it can be seen: message, repr, args, and the traceback with its causes."""
    return [str(error), repr(error), repr(error.args), "".join(traceback.format_exception(error))]


@pytest.fixture
def secrets() -> Secrets:
    """The providers send the sentinels (the conftest's workers and jobs use this fixture)."""
    return Secrets.from_env(
        {"TRADIER_API_KEY": SENTINELS["tradier"], "POLYGON_API_KEY": SENTINELS["polygon"]}
    )


@pytest.fixture
async def published(redis_url: str) -> AsyncIterator[list[bytes]]:
    """Every message the worker publishes to readers while the test runs."""
    client = redis.asyncio.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.psubscribe("*")
    messages: list[bytes] = []

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                messages.append(message["channel"] + b" " + message["data"])

    task = asyncio.get_running_loop().create_task(listen())
    yield messages
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pubsub.aclose()
    await client.aclose()


def _config(redis_url: str, emulator: RunningEmulator, datasets: dict[str, Any]) -> Config:
    return make_config(
        WATCHLIST, redis_url=redis_url, tradier_url=emulator.url, polygon_url=emulator.url, datasets=datasets
    )


@contextlib.asynccontextmanager
async def _runtime(config: Config, secrets: Secrets, clock: FakeClock) -> AsyncIterator[Runtime]:
    """A worker's runtime in this process, as `python -m worker refresh` opens it."""
    client = redis.asyncio.Redis.from_url(config.redis_url)
    try:
        async with Runtime.open(config, secrets, client, clock=clock) as runtime:
            yield runtime
    finally:
        await client.aclose()


async def _refresh_all(config: Config, secrets: Secrets, clock: FakeClock) -> list[str]:
    """One pass over every dataset of the watchlist; the errors it reports."""
    async with _runtime(config, secrets, clock) as runtime:
        reports = await runtime.refresh_watchlist()
    return [error for report in reports for error in report.errors]


def _called_paths(emulator: RunningEmulator) -> list[str]:
    return sorted(emulator.state.stats()["calls"])


@pytest.mark.parametrize(
    ("datasets", "upstreams"),
    [(TRADIER_DATASETS, {"tradier"}), (POLYGON_DATASETS, {"tradier", "polygon"})],
    ids=["tradier", "polygon"],
)
async def test_sentinel_keys_leak_nowhere_through_a_failing_cycle(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    secrets: Secrets,
    run_scheduled_batches: RunBatches,
    published: list[bytes],
    caplog: pytest.LogCaptureFixture,
    datasets: dict[str, Any],
    upstreams: set[str],
) -> None:
    """Every dataset of one provider's config, in one process and through arq jobs, each upstream path
    failing with an answer that quotes the key: Redis, messages, logs, errors and the emulator's stats
    hold no fragment of a key; the same cycle once the faults are gone stores everything."""
    caplog.set_level(logging.DEBUG)
    config = _config(redis_url, emulator, datasets)
    assert await _refresh_all(config, secrets, clock) == []  # the paths this config calls, all served
    paths = _called_paths(emulator)
    assert len(paths) >= 5, paths
    assert {_provider_of(p) for p in paths} == upstreams
    client = redis.Redis.from_url(redis_url)
    client.flushall()

    # In this process: each path fails with a different echo; the errors are reported, not raised.
    for index, path in enumerate(paths):
        faults = echoing_faults(path)
        await arm(emulator, path, faults[index % len(faults)])
    errors = await _refresh_all(config, secrets, clock)
    assert errors, "no fault was hit"
    assert_clean("the errors a refresh reports", errors)
    assert_clean("Redis", redis_contents(redis_url))

    # Through arq: the same on an empty Redis (everything is due), the job results kept in Redis.
    await disarm(emulator)
    client.flushall()
    for index, path in enumerate(paths):
        faults = echoing_faults(path)
        await arm(emulator, path, faults[(index + 1) % len(faults)])
    await run_scheduled_batches(config)
    stored = redis_contents(redis_url)
    assert any(key.startswith(b"arq:result:") for key in stored)
    assert_clean("Redis", stored)

    # Every fault kind raised from a provider itself: message, repr, args and chained causes.
    await disarm(emulator)
    provider_errors: list[str] = []
    path = next(p for p in paths if "quotes" in p or "snapshot/locale" in p)
    async with _runtime(config, secrets, clock) as runtime:
        for fault in echoing_faults(path):
            await arm(emulator, path, fault)
            with pytest.raises(UpstreamError) as raised:
                await runtime.providers.quotes.fetch_quotes(["AAPL"], freshness=lambda now: now)
            provider_errors += error_texts(raised.value)
    assert_clean("a raised error", provider_errors)

    # The cycle once the faults are gone: everything stored, still nothing of the keys.
    await disarm(emulator)
    assert await _refresh_all(config, secrets, clock) == []
    assert_clean("Redis", redis_contents(redis_url))
    assert client.exists(keys.quote("AAPL"), keys.chain_index("SPY"), keys.indicators("AAPL")) == 3
    client.close()

    assert assert_clean("the logs", log_texts(caplog.records)) > 20
    assert_clean("published messages", published)
    assert_clean("the emulator's stats", await emulator_controls(emulator))


async def test_on_demand_failures_tell_readers_why_without_the_key(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    start_worker: StartWorker,
    published: list[bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reader's miss fetched on demand while the upstream echoes the key: the reader's error, the
    announcement, the negative cache and the logs say what failed, never with the key."""
    caplog.set_level(logging.DEBUG)
    raised: list[str] = []
    async with (
        start_worker(["SPY"], datasets=TRADIER_DATASETS),
        Reader(redis_url, clock=clock, wait_s=10) as reader,
    ):
        for fault, (symbol, read, path) in zip(
            echoing_faults("/v1/markets/quotes"),
            [
                ("AAPL", reader.quote, "/v1/markets/quotes"),
                ("MSFT", reader.quote, "/v1/markets/quotes"),
                ("NVDA", reader.expirations, "/v1/markets/options/expirations"),
                ("AMD", reader.quote, "/v1/markets/quotes"),
                ("TSLA", reader.history, "/v1/markets/history"),
                ("KO", reader.quote, "/v1/markets/quotes"),
                ("ZZZZ", reader.expirations, "/v1/markets/options/expirations"),
                ("PEP", reader.indicators, "/v1/markets/history"),
            ],
            strict=False,
        ):
            await arm(emulator, path, fault)
            try:
                await read(symbol)
            except ReaderError as e:
                raised += error_texts(e)
    assert any("on-demand fetch failed" in text for text in raised), raised
    assert_clean("a reader's error", raised)
    assert_clean("Redis", redis_contents(redis_url))
    assert published, "no outcome was announced"
    assert_clean("published messages", published)
    assert_clean("the logs", log_texts(caplog.records))
    assert_clean("the emulator's stats", await emulator_controls(emulator))

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        for argv in (
            ["quote", "AAPL", "MSFT", "SPY", "ZZZZ"],
            ["expirations", "NVDA"],
            ["history", "TSLA"],
            ["indicators", "PEP"],
            ["bundle", "SPY", "--options", "--technical"],
        ):
            reader_cli.main(["--url", redis_url, "--wait", "0", *argv])
    assert "error: " in err.getvalue()
    assert_clean("the reader CLI's output", [out.getvalue(), err.getvalue()])


def _process_config(tmp_path: Path) -> Path:
    """Both providers in one config: Polygon's quotes, bars and indicators; Tradier's chains."""
    datasets = {
        **POLYGON_DATASETS,
        "chains": {"provider": "tradier", "expirations": 1, "max_days": 60},
    }
    path = tmp_path / "config.yaml"
    # Polygon's default allowance is its free plan's 5 calls a minute: a cycle would take a minute.
    providers = {"polygon": {"rate_per_min": 600}}
    worker = {"shutdown_grace_s": 1}
    config = {"watchlist": ["AAPL"], "datasets": datasets, "providers": providers, "worker": worker}
    path.write_text(yaml.safe_dump(config))
    return path


FAULTED_PATHS = [
    "/v2/snapshot/locale/us/markets/stocks/tickers",
    "/v1/markets/options/expirations",
    "/v1/indicators/sma/AAPL",
    "/v1/indicators/rsi/AAPL",
]


@pytest.mark.processes
async def test_worker_commands_print_no_key(
    redis_url: str, emulator: RunningEmulator, tmp_path: Path, worker_processes: list[Any]
) -> None:
    """`python -m worker refresh` and `run`, keys in their environment, upstream echoing them: their
    stdout and stderr name the failures, never a key."""
    config = _process_config(tmp_path)
    env = {
        "REDIS_URL": redis_url,
        "TRADIER_API_KEY": SENTINELS["tradier"],
        "POLYGON_API_KEY": SENTINELS["polygon"],
        "POLYGON_BASE_URL": emulator.url,
    }
    for index, path in enumerate(FAULTED_PATHS):
        await arm(emulator, path, echoing_faults(path)[index])
    refresh = await start_process(emulator, "-m", "worker", "refresh", "--config", str(config), **env)
    out, err = await asyncio.wait_for(refresh.communicate(), timeout=60)
    assert refresh.returncode == 1, err.decode()  # some datasets failed
    assert b"error: " in err
    assert b" worker." in err  # log lines with the logger's name
    assert_clean("`worker refresh` output", [out, err])

    redis.Redis.from_url(redis_url).flushall()
    for index, path in enumerate(FAULTED_PATHS):
        await arm(emulator, path, echoing_faults(path)[-1 - index])
    run = await start_process(emulator, "-m", "worker", "run", "--config", str(config), **env)
    worker_processes.append(run)
    client = redis.Redis.from_url(redis_url)
    await until(lambda: bool(client.exists(keys.history("AAPL", "1d"))), 30, "the worker stored AAPL's bars")
    client.close()
    run.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(run.communicate(), timeout=30)
    assert b"refresh.batch_failed" in err
    assert_clean("`worker run` output", [out, err])
    assert_clean("Redis", redis_contents(redis_url))
    assert_clean("the emulator's stats", await emulator_controls(emulator))


# The redaction under it all.


@pytest.mark.parametrize(
    ("line", "printed"),
    [
        ("worker.refresh refresh.batch_done symbols=1 kept_newer=0", None),
        ("bank kk k9 9k kind", None),
        ("Authorization: Bearer k", "Authorization: Bearer ***"),
        ("GET /v2/aggs?apiKey=k&limit=5", "GET /v2/aggs?apiKey=***&limit=5"),
        ('HTTP 401 {"error": "Unknown API Key k"}', 'HTTP 401 {"error": "Unknown API Key ***"}'),
        ("token=k.", "token=***."),
        ("k", "***"),
    ],
)
def test_a_short_key_is_cut_where_it_stands_alone_and_words_stay_whole(
    line: str, printed: str | None
) -> None:
    """With TRADIER_API_KEY=k, "worker" stays "worker"; a header, a URL parameter or a quoted body
    holding the key alone still print *** in its place."""
    record = logging.LogRecord("worker.refresh", logging.INFO, __file__, 1, "%s", (line,), None)
    assert RedactingFormatter(["k"], fmt="%(message)s").format(record) == (printed or line)


def test_a_long_key_is_cut_anywhere_also_url_encoded() -> None:
    """A real-length key is cut even glued to other text (a repr's escape, a cut body), and in its
    URL-encoded forms; raw bodies are redacted the same way."""
    key = "Ab3+/9=kZq8Lr2Wx5Yt0"
    redact = Redactor([key, "k"])
    assert redact(f"b'\\n{key}x' ?apiKey=Ab3%2B%2F9%3DkZq8Lr2Wx5Yt0&a=1 q=Ab3%2B%2F9%3DkZq8Lr2Wx5Yt0") == (
        f"b'\\n{REDACTED}x' ?apiKey={REDACTED}&a=1 q={REDACTED}"
    )
    assert redact.in_bytes(b"Bearer " + key.encode() + b"\r\nworker") == b"Bearer ***\r\nworker"
    assert redact("worker") == "worker"
    assert Redactor([])("k worker") == "k worker"


@pytest.mark.processes
async def test_a_worker_with_a_one_letter_key_prints_its_log_lines_whole(
    redis_url: str, emulator: RunningEmulator, tmp_path: Path
) -> None:
    """`TRADIER_API_KEY=k python -m worker refresh`: every logger name and word is printed as is (it
    printed "wor***er.refresh refresh.batch_done ... *** ...")."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"watchlist": ["AAPL"], "datasets": {
        "expirations": {"enabled": False}, "chains": {"enabled": False}, "history": {"enabled": False},
        "indicators": {"enabled": False},
    }}))  # fmt: skip
    refresh = await start_process(
        emulator, "-m", "worker", "refresh", "--config", str(config), REDIS_URL=redis_url, TRADIER_API_KEY="k"
    )
    out, err = await asyncio.wait_for(refresh.communicate(), timeout=60)
    assert refresh.returncode == 0, err.decode()
    assert re.fullmatch(
        r"refreshed quotes: stored 1 of 1 symbols \(1/1 symbols, 1 call, \d+\.\d s\)\n", out.decode()
    )
    assert " worker.refresh refresh.batch_done dataset=quotes provider=tradier " in err.decode()
    assert REDACTED not in err.decode()


async def test_an_upstream_message_quoting_a_short_key_is_cut_not_garbled(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """The upstream's own words around a short key survive in the error; the key does not."""
    config = make_config(["AAPL"], redis_url=redis_url, tradier_url=emulator.url)
    await arm(emulator, "/v1/markets/quotes", {"status": 401, "body": "Invalid Access Token k"})
    async with _runtime(config, Secrets.from_env({"TRADIER_API_KEY": "k"}), clock) as runtime:
        with pytest.raises(UpstreamError) as raised:
            await runtime.providers.quotes.fetch_quotes(["AAPL"], freshness=lambda now: now)
    assert "'Invalid Access Token ***'" in str(raised.value)


# A key that cannot be sent as one is refused at start, by variable and position, never shown.


@pytest.mark.parametrize(
    ("variable", "flaw", "what"),
    [
        ("TRADIER_API_KEY", "\r\n", "a control character (a line break, a NUL...)"),
        ("TRADIER_API_KEY", "\x00", "a control character (a line break, a NUL...)"),
        ("POLYGON_API_KEY", " ", "a space or a tab"),
        ("POLYGON_API_KEY", "\t", "a space or a tab"),
        ("TRADIER_API_KEY", "\u20ac", "a non-ASCII character"),
        ("POLYGON_API_KEY", "\u0430", "a non-ASCII character"),
    ],
    ids=["crlf", "nul", "space", "tab", "euro-sign", "cyrillic-a"],
)
def test_a_key_with_a_character_no_key_holds_is_refused_without_showing_it(
    variable: str, flaw: str, what: str
) -> None:
    """A bad paste (a line break, a NUL, a space, a look-alike inside the key) is a ConfigError naming
    the variable, what was found and where; no fragment of the key is in it."""
    key = SENTINELS["tradier"]
    with pytest.raises(ConfigError) as raised:
        Secrets.from_env({variable: f"  {key[:20]}{flaw}{key[20:]}\n"})
    message = str(raised.value)
    assert message.startswith(f"{variable} holds {what} at character 21: ")
    assert f"set {variable} again" in message
    assert_clean("a configuration error", [message, repr(raised.value)])


def test_the_worker_command_refuses_such_a_key_in_one_line(
    tmp_path: Path, monkeypatch_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m worker refresh` with a key holding a line break exits 2 before any call, one line."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"watchlist": ["AAPL"]}))
    key = SENTINELS["tradier"]
    monkeypatch_env.setenv("TRADIER_API_KEY", f"{key[:20]}\n{key[20:]}")
    assert worker_cli.main(["refresh", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: TRADIER_API_KEY holds a control character (a line break, a NUL...) at")
    assert len(err.splitlines()) == 1
    assert_clean("the worker command's output", [err])
