"""Hostile input against every reader method, the reader CLI and every agent tool: each is refused
with a one-line error naming the value and the fix, before any Redis command or upstream call.

The proof is Redis's own command counters (INFO commandstats, reset before each call) and the
emulator's call counters; a worker runs in `test_nothing_hostile_reaches_the_queue_or_the_upstream`,
so that a job enqueued from hostile input would show as an upstream call.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, date, datetime
from typing import Any

import pytest
import redis

from agent_tools import function_tools, tools
from reader import InvalidRequest, InvalidSymbol, Reader, ReaderError, SyncReader, keys
from reader import __main__ as cli
from reader.calendar import MarketCalendar
from tests.conftest import StartWorker
from tests.support import REPO, FakeClock, RunningEmulator, child_env, command_calls, reset_command_calls

NAN, INF = float("nan"), float("inf")
TEN_KB = "A" * 10_000

# Strings no ticker can be: glob characters, line breaks and NUL, look-alikes, 10 kB.
HOSTILE_TEXT: list[Any] = [
    pytest.param("AAPL*", id="glob-star"),
    pytest.param("AAP?", id="glob-question"),
    pytest.param("AAPL[A-Z]", id="glob-bracket"),
    pytest.param("*", id="glob-everything"),
    pytest.param("AAPL\r\nFLUSHALL", id="crlf-command"),
    pytest.param("AAPL\n", id="trailing-lf"),
    pytest.param("AAPL\r", id="trailing-cr"),
    pytest.param("AAPL\x00", id="nul"),
    pytest.param("\x00", id="only-nul"),
    pytest.param("\uff21\uff21\uff30\uff2c", id="full-width"),
    pytest.param("\uff41\uff41\uff50\uff4c", id="full-width-lower"),
    pytest.param("\u0410APL", id="cyrillic-a"),
    pytest.param("AAP\u041b", id="cyrillic-el"),
    pytest.param("\u0391APL", id="greek-alpha"),
    pytest.param("\u00dfPY", id="sharp-s-uppers-to-SS"),
    pytest.param("AAP\u0131", id="dotless-i-uppers-to-I"),
    pytest.param("\ufb00", id="ligature-uppers-to-FF"),
    pytest.param("\u00a0AAPL", id="nbsp-padding"),
    pytest.param("AAPL\u200b", id="zero-width-space"),
    pytest.param("\udcffAAPL", id="undecodable-byte"),
    pytest.param(TEN_KB, id="10kB"),
    pytest.param(" " * 10_000 + "AAPL", id="10kB-padding"),
    pytest.param("mc:v1:quote:AAPL", id="key-layout"),
    pytest.param("", id="empty"),
]
WRONG_TYPES: list[Any] = [
    pytest.param(None, id="None"),
    pytest.param(-1, id="negative"),
    pytest.param(10**100, id="huge-int"),
    pytest.param(NAN, id="nan"),
    pytest.param(INF, id="inf"),
    pytest.param(True, id="bool"),
    pytest.param(b"AAPL", id="bytes"),
    pytest.param(["AAPL"], id="list"),
    pytest.param({"symbol": "AAPL"}, id="dict"),
]
HOSTILE_SYMBOLS = HOSTILE_TEXT + WRONG_TYPES

HOSTILE_DATE_TEXT: list[Any] = [
    pytest.param("0001-01-01", id="year-1"),
    pytest.param("9999-12-31", id="year-9999"),
    pytest.param("1999-12-31", id="last-century"),
    pytest.param("2026-13-01", id="month-13"),
    pytest.param("2026-02-30", id="february-30"),
    pytest.param("20261218", id="compact-form"),
    pytest.param("2026-W51-5", id="iso-week"),
    pytest.param("2026-12-18T00:00:00", id="with-time"),
    pytest.param("2026-12-*", id="glob"),
    pytest.param("2026-12-18\r\n", id="crlf"),
    pytest.param("2026-12-18\x00", id="nul"),
    pytest.param("\uff12\uff10\uff12\uff16-\uff11\uff12-\uff11\uff18", id="full-width-digits"),
    pytest.param("\u0662\u0660\u0662\u0666-12-18", id="arabic-indic-digits"),
    pytest.param("2026-12-18" * 1000, id="10kB"),
    pytest.param("-2026-12-18", id="negative-year"),
]
HOSTILE_DATES: list[Any] = [
    *HOSTILE_DATE_TEXT,
    pytest.param(date(1, 1, 1), id="date-year-1"),
    pytest.param(date(9999, 12, 31), id="date-year-9999"),
    pytest.param(datetime(2026, 12, 18, tzinfo=UTC), id="datetime"),
    pytest.param(20261218, id="int"),
    pytest.param(NAN, id="nan"),
    pytest.param(b"2026-12-18", id="bytes"),
    pytest.param(["2026-12-18"], id="list"),
]
HOSTILE_SIDE_TEXT: list[Any] = [
    pytest.param("*", id="glob"),
    pytest.param("calls\r\n", id="crlf"),
    pytest.param("calls\x00", id="nul"),
    pytest.param("CALLS", id="upper-case"),
    pytest.param("\uff43\uff41\uff4c\uff4c\uff53", id="full-width"),
    pytest.param("c\u0430lls", id="cyrillic-a"),
    pytest.param("calls" * 2000, id="10kB"),
]
HOSTILE_SIDES: list[Any] = [
    *HOSTILE_SIDE_TEXT,
    pytest.param(1, id="int"),
    pytest.param(NAN, id="nan"),
    pytest.param(b"calls", id="bytes"),
    pytest.param(["calls"], id="list"),
]
HOSTILE_INTERVAL_TEXT: list[Any] = [
    pytest.param("1d*", id="glob"),
    pytest.param("1d\r\n", id="crlf"),
    pytest.param("1d\x00", id="nul"),
    pytest.param("\uff11d", id="full-width"),
    pytest.param("1w", id="unknown"),
    pytest.param("", id="empty"),
    pytest.param("1d" * 5000, id="10kB"),
]
HOSTILE_INTERVALS: list[Any] = [
    *HOSTILE_INTERVAL_TEXT,
    pytest.param(None, id="None"),
    pytest.param(1, id="int"),
    pytest.param(NAN, id="nan"),
    pytest.param(b"1d", id="bytes"),
    pytest.param(["1d"], id="list"),
]
HOSTILE_WAITS: list[Any] = [
    pytest.param(-1, id="negative"),
    pytest.param(NAN, id="nan"),
    pytest.param(INF, id="inf"),
    pytest.param(-INF, id="minus-inf"),
    pytest.param(1e308, id="huge"),
    pytest.param(10**400, id="huge-int"),
    pytest.param("3", id="str"),
    pytest.param([3], id="list"),
]

ReaderCall = Callable[[Any, Any], Any]
"""Calls one reader method (of a `Reader` or a `SyncReader`) with the hostile value somewhere."""

BY_SYMBOL: dict[str, ReaderCall] = {
    "quote": lambda r, v: r.quote(v),
    "expirations": lambda r, v: r.expirations(v),
    "chain": lambda r, v: r.chain(v),
    "chain-of-a-date": lambda r, v: r.chain(v, "2026-12-18", "calls"),
    "history": lambda r, v: r.history(v),
    "history-5m": lambda r, v: r.history(v, "5m"),
    "indicators": lambda r, v: r.indicators(v),
    "bundle": lambda r, v: r.bundle(v),
    "bundle-of-everything": lambda r, v: r.bundle(v, options=True, technical=True),
}
BY_ARGUMENT: dict[str, tuple[ReaderCall, list[Any]]] = {
    "chain-expiration": (lambda r, v: r.chain("AAPL", v), HOSTILE_DATES),
    "chain-side": (lambda r, v: r.chain("AAPL", None, v), HOSTILE_SIDES),
    "chain-side-of-a-date": (lambda r, v: r.chain("AAPL", "2026-12-18", v), HOSTILE_SIDES),
    "history-interval": (lambda r, v: r.history("AAPL", v), HOSTILE_INTERVALS),
    "quotes-argument": (
        lambda r, v: r.quotes(v),
        [
            pytest.param("AAPL", id="bare-str"),
            pytest.param("AAPL*", id="bare-glob"),
            pytest.param(TEN_KB, id="bare-10kB"),
            pytest.param(b"AAPL", id="bytes"),
            pytest.param(None, id="None"),
            pytest.param(5, id="int"),
            pytest.param(NAN, id="nan"),
            pytest.param({"AAPL": 1}, id="dict"),
        ],
    ),
}
WAIT_CALLS: dict[str, ReaderCall] = {
    "quote": lambda r, v: r.quote("AAPL", wait_s=v),
    "quotes": lambda r, v: r.quotes(["AAPL"], wait_s=v),
    "expirations": lambda r, v: r.expirations("AAPL", wait_s=v),
    "chain": lambda r, v: r.chain("AAPL", wait_s=v),
    "history": lambda r, v: r.history("AAPL", wait_s=v),
    "indicators": lambda r, v: r.indicators("AAPL", wait_s=v),
    "bundle": lambda r, v: r.bundle("AAPL", wait_s=v),
}

_FIX = re.compile(r"expected|use 1-|type it in ASCII|takes a list|e\.g\.|pass ")


def _commands(redis_url: str) -> dict[str, int]:
    """Commands Redis ran since `reset_command_calls`, less the ones that reset and read the counters."""
    return {
        name: calls
        for name, calls in command_calls(redis_url).items()
        if name not in ("info", "config|resetstat")
    }


def _value_in(message: str, value: object) -> bool:
    """Whether `message` names `value` (its repr, or the start of it when long)."""
    shown = repr(value)
    return (shown if len(shown) <= 60 else shown[:30]) in message


def assert_refusal(message: str, value: object) -> None:
    """One short line, naming the value and saying what is expected instead."""
    assert _value_in(message, value), message
    assert _FIX.search(message), message
    assert len(message) < 400, message
    assert not set(message) & {"\n", "\r", "\x00"}, message


def assert_refused(error: BaseException, value: object) -> None:
    assert isinstance(error, ReaderError | ValueError | TypeError), repr(error)
    assert_refusal(str(error), value)


def assert_untouched(redis_url: str, emulator: RunningEmulator) -> None:
    assert _commands(redis_url) == {}, "a Redis command ran"
    assert emulator.state.stats()["total"] == 0, "the upstream was called"


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return MarketCalendar()


@pytest.fixture(params=["Reader", "SyncReader"])
async def reader(
    request: pytest.FixtureRequest, redis_url: str, calendar: MarketCalendar
) -> AsyncIterator[Reader | SyncReader]:
    """Each reader on the session's Redis, not waiting on a miss: a bad value that slipped through
    would show as a GET and an enqueue."""
    if request.param == "Reader":
        async with Reader(redis_url, clock=FakeClock(), calendar=calendar, wait_s=0) as async_reader:
            yield async_reader
    else:
        with SyncReader(redis_url, clock=FakeClock(), calendar=calendar, wait_s=0) as sync_reader:
            yield sync_reader


async def _call(call: ReaderCall, reader: Reader | SyncReader, value: object) -> Any:
    result = call(reader, value)
    return await result if inspect.isawaitable(result) else result


async def _refused(call: ReaderCall, reader: Reader | SyncReader, value: object) -> BaseException:
    try:
        result = await _call(call, reader, value)
    except (ReaderError, ValueError, TypeError) as e:  # anything else fails the test with its traceback
        return e
    raise AssertionError(f"accepted {value!r}: {result!r}")


@pytest.mark.parametrize("value", HOSTILE_SYMBOLS)
@pytest.mark.parametrize("method", list(BY_SYMBOL))
async def test_reader_methods_refuse_a_hostile_symbol_before_redis(
    redis_url: str, emulator: RunningEmulator, reader: Reader | SyncReader, method: str, value: object
) -> None:
    """Every read method raises InvalidSymbol naming the value, with no Redis command or upstream call."""
    reset_command_calls(redis_url)
    error = await _refused(BY_SYMBOL[method], reader, value)
    assert isinstance(error, InvalidSymbol), repr(error)
    assert_refused(error, value)
    assert_untouched(redis_url, emulator)


@pytest.mark.parametrize(
    ("call", "value"),
    [
        pytest.param(call, value.values[0], id=f"{name}-{value.id}")
        for name, (call, values) in BY_ARGUMENT.items()
        for value in values
    ],
)
async def test_reader_methods_refuse_a_hostile_argument_before_redis(
    redis_url: str, emulator: RunningEmulator, reader: Reader | SyncReader, call: ReaderCall, value: object
) -> None:
    """A hostile expiration, side, interval or symbol list raises a ValueError naming it, before Redis."""
    reset_command_calls(redis_url)
    error = await _refused(call, reader, value)
    assert isinstance(error, InvalidRequest | InvalidSymbol), repr(error)
    assert_refused(error, value)
    assert_untouched(redis_url, emulator)


@pytest.mark.parametrize("value", HOSTILE_SYMBOLS)
async def test_quotes_answers_a_hostile_symbol_with_its_error_and_reads_nothing(
    redis_url: str, emulator: RunningEmulator, reader: Reader | SyncReader, value: object
) -> None:
    """In a list, a hostile symbol maps to its InvalidSymbol (nothing raised) and nothing is read."""
    reset_command_calls(redis_url)
    results = await _call(lambda r, v: r.quotes([v]), reader, value)
    (error,) = results.values()
    assert isinstance(error, InvalidSymbol)
    assert_refused(error, value)
    assert_untouched(redis_url, emulator)


async def _wait_refusals(
    redis_url: str, emulator: RunningEmulator, reader: Reader | SyncReader, values: list[Any]
) -> list[str]:
    """Each read method with each hostile `wait_s`: what went wrong, if anything (one test reports
    them all, so that a gap shows as one expected failure, not one per row)."""
    wrong = []
    for method, call in WAIT_CALLS.items():
        for param in values:
            (value,) = param.values
            reset_command_calls(redis_url)
            try:
                assert_refused(await _refused(call, reader, value), value)
                assert_untouched(redis_url, emulator)
            except AssertionError as e:
                wrong.append(f"{method}(wait_s={param.id}): {str(e).splitlines()[0]}")
    return wrong


async def test_reader_methods_refuse_a_hostile_wait_before_redis(
    redis_url: str, emulator: RunningEmulator, reader: Reader | SyncReader
) -> None:
    """A wait_s that is negative, not finite, huge or not a number is refused before the first read,
    by every read method."""
    wrong = await _wait_refusals(redis_url, emulator, reader, HOSTILE_WAITS)
    assert not wrong, "\n".join(wrong)


_REFUSED_AT_CONSTRUCTION = ("negative", "nan", "inf", "minus-inf")


@pytest.mark.parametrize("value", [p for p in HOSTILE_WAITS if p.id in _REFUSED_AT_CONSTRUCTION])
@pytest.mark.parametrize("kind", [Reader, SyncReader])
def test_a_reader_refuses_a_hostile_default_wait(redis_url: str, kind: type[Reader], value: object) -> None:
    """Reader(wait_s=...) and SyncReader(wait_s=...) refuse a negative or non-finite wait."""
    with pytest.raises((ReaderError, ValueError, TypeError)) as raised:
        kind(redis_url, wait_s=value)  # type: ignore[arg-type]
    assert_refused(raised.value, value)


@pytest.mark.parametrize("kind", [Reader, SyncReader])
def test_a_reader_refuses_a_huge_or_non_numeric_default_wait(redis_url: str, kind: type[Reader]) -> None:
    """The same for a huge wait_s and for one that is not a number."""
    wrong = []
    for param in HOSTILE_WAITS:
        if param.id in _REFUSED_AT_CONSTRUCTION:
            continue
        (value,) = param.values
        try:
            with pytest.raises((ReaderError, ValueError, TypeError)) as raised:
                kind(redis_url, wait_s=value)
            assert_refused(raised.value, value)
        except AssertionError as e:
            wrong.append(f"wait_s={param.id}: {str(e).splitlines()[0]}")
        except pytest.fail.Exception:
            wrong.append(f"wait_s={param.id}: accepted")
    assert not wrong, "\n".join(wrong)


async def test_market_status_takes_no_input_and_reads_only_the_published_calendar(
    redis_url: str, emulator: RunningEmulator, reader: Reader | SyncReader
) -> None:
    """The one method without arguments reads one key (the worker's calendar) and calls no upstream."""
    reset_command_calls(redis_url)
    status = reader.market_status()
    status = await status if isinstance(reader, Reader) else status  # type: ignore[misc]
    assert status.phase == "regular"
    assert _commands(redis_url) == {"get": 1}
    assert emulator.state.stats()["total"] == 0


async def test_the_counters_see_a_read_and_an_enqueue(
    redis_url: str, emulator: RunningEmulator, reader: Reader | SyncReader
) -> None:
    """The control: a well-formed symbol that is not cached is read and a fetch enqueued."""
    reset_command_calls(redis_url)
    with pytest.raises(ReaderError):
        await _call(lambda r, v: r.quote(v), reader, "aapl")
    commands = _commands(redis_url)
    assert commands.get("get", 0) >= 1
    assert commands.get("evalsha", 0) + commands.get("eval", 0) >= 1


# The reader CLI, in this process (argv can hold a NUL here) and as a real process.


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as e:  # argparse's errors
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def _cli_rows() -> list[Any]:
    rows: list[Any] = []
    for param in HOSTILE_TEXT:
        (symbol,) = param.values
        for command in (["quote"], ["expirations"], ["chain"], ["history"], ["indicators"], ["bundle"]):
            rows.append(pytest.param([*command, symbol], symbol, id=f"{command[0]}-{param.id}"))
        rows.append(pytest.param(["quote", "AAPL", symbol], symbol, id=f"quote-after-a-good-one-{param.id}"))
        rows.append(
            pytest.param(["bundle", symbol, "--options", "--technical"], symbol, id=f"bundle-all-{param.id}")
        )
    for param in HOSTILE_DATE_TEXT:
        (text,) = param.values
        rows.append(
            pytest.param(["chain", "AAPL", f"--expiration={text}"], text, id=f"expiration-{param.id}")
        )
    for param in HOSTILE_SIDE_TEXT:
        (text,) = param.values
        rows.append(pytest.param(["chain", "AAPL", f"--side={text}"], text, id=f"side-{param.id}"))
    for param in HOSTILE_INTERVAL_TEXT:
        (text,) = param.values
        rows.append(pytest.param(["history", "AAPL", f"--interval={text}"], text, id=f"interval-{param.id}"))
    for text, name in [
        ("-1", "negative"), ("nan", "nan"), ("inf", "inf"), ("-inf", "minus-inf"), ("1e308", "huge"),
        ("1" * 400, "400-digits"), ("3\r\n", "crlf"), ("\uff13", "full-width"), ("", "empty"),
        ("soon", "word"),
    ]:  # fmt: skip
        rows.append(pytest.param([f"--wait={text}", "quote", "AAPL"], text, id=f"wait-{name}"))
    return rows


@pytest.mark.parametrize(("argv", "value"), _cli_rows())
def test_cli_refuses_hostile_arguments_in_one_line_before_redis(
    redis_url: str, emulator: RunningEmulator, argv: list[str], value: str
) -> None:
    """Exit 2, nothing on stdout, one line on stderr naming the value and the fix; Redis untouched."""
    reset_command_calls(redis_url)
    code, out, err = _run_cli(["--url", redis_url, "--wait", "0", *argv])
    assert code == cli.EXIT_USAGE, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert_refusal(lines[0], value)
    assert_untouched(redis_url, emulator)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["quote", "AAPL\r\nFLUSHALL"], id="crlf"),
        pytest.param(["chain", "\uff21\uff21\uff30\uff2c"], id="full-width"),
        pytest.param(["history", "\u0410APL"], id="cyrillic"),
        pytest.param(["quote", TEN_KB], id="10kB"),
        pytest.param(["chain", "AAPL", "--expiration", "9999-12-31"], id="year-9999"),
        pytest.param(["--wait", "nan", "quote", "AAPL"], id="wait-nan"),
    ],
)
def test_the_cli_process_exits_2_with_one_line(redis_url: str, argv: list[str]) -> None:
    """As a real process: exit 2, one line on stderr, no traceback, and no command reached Redis."""
    reset_command_calls(redis_url)
    done = subprocess.run(
        [sys.executable, "-m", "reader", "--wait", "0", *argv],
        capture_output=True,
        text=True,
        env=child_env(REDIS_URL=redis_url),
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: ")
    assert _commands(redis_url) == {}


# The agent tools, called as plain functions (any Python value) and through the Agents SDK (JSON).


@pytest.fixture
async def tool_reader(redis_url: str, calendar: MarketCalendar) -> AsyncIterator[Reader]:
    async with Reader(redis_url, clock=FakeClock(), calendar=calendar, wait_s=0) as reader:
        tools.use_reader(reader)
        yield reader
        tools.use_reader(None)


ToolCall = Callable[[Any], Any]

TOOLS_BY_SYMBOL: dict[str, ToolCall] = {
    "get_stock_quote": lambda v: tools.get_stock_quote(v),
    "get_multiple_stock_quotes": lambda v: tools.get_multiple_stock_quotes([v]),
    "get_options_expiration_dates": lambda v: tools.get_options_expiration_dates(v),
    "get_call_options_chain": lambda v: tools.get_call_options_chain(v),
    "get_put_options_chain": lambda v: tools.get_put_options_chain(v, "2026-12-18", 100, 200),
    "get_stock_price_history": lambda v: tools.get_stock_price_history(v),
    "get_ta_indicators": lambda v: tools.get_ta_indicators(v),
    "get_stock_data_bundle": lambda v: tools.get_stock_data_bundle(v, True, True),
}
NUMBERS: list[Any] = [
    pytest.param(-1, id="negative"),
    pytest.param(NAN, id="nan"),
    pytest.param(INF, id="inf"),
    pytest.param(-INF, id="minus-inf"),
    pytest.param(1e308, id="huge"),
    pytest.param(10**400, id="huge-int"),
    pytest.param("100", id="str"),
    pytest.param(True, id="bool"),
    pytest.param([100], id="list"),
]
TOOL_ARGUMENTS: dict[str, tuple[ToolCall, list[Any]]] = {
    "call-expiration": (lambda v: tools.get_call_options_chain("AAPL", v), HOSTILE_DATES),
    "put-expiration": (lambda v: tools.get_put_options_chain("AAPL", v), HOSTILE_DATES),
    "call-min_strike": (lambda v: tools.get_call_options_chain("AAPL", None, v), NUMBERS),
    "put-max_strike": (lambda v: tools.get_put_options_chain("AAPL", None, None, v), NUMBERS),
    # A tool takes null for its default (strict schemas carry no `default`): None is not hostile there.
    "history-interval": (
        lambda v: tools.get_stock_price_history("AAPL", v),
        [p for p in HOSTILE_INTERVALS if p.id != "None"],
    ),
    "history-limit": (
        lambda v: tools.get_stock_price_history("AAPL", "1d", v),
        [
            *NUMBERS,
            pytest.param(0, id="zero"),
            pytest.param(501, id="over-500"),
            pytest.param(1.5, id="fraction"),
        ],
    ),
    "bundle-include_options": (
        lambda v: tools.get_stock_data_bundle("AAPL", v),
        [
            pytest.param("false", id="str-false"),
            pytest.param(1, id="int"),
            pytest.param(NAN, id="nan"),
            pytest.param([True], id="list"),
        ],
    ),
    "bundle-include_technical": (
        lambda v: tools.get_stock_data_bundle("AAPL", False, v),
        [pytest.param("true\r\n", id="crlf"), pytest.param(0, id="int")],
    ),
    "multiple-symbols": (
        lambda v: tools.get_multiple_stock_quotes(v),
        [
            pytest.param("AAPL", id="bare-str"),
            pytest.param(TEN_KB, id="bare-10kB"),
            pytest.param(None, id="None"),
            pytest.param(5, id="int"),
            pytest.param(b"AAPL", id="bytes"),
            pytest.param({"AAPL": 1}, id="dict"),
            pytest.param([], id="empty"),
            pytest.param([f"S{i}" for i in range(51)], id="51-symbols"),  # 51 distinct: one repeated is one
        ],
    ),
}


def _error_of(answer: str) -> str:
    data = json.loads(answer)
    assert set(data) <= {"error", "symbol"}, data
    assert isinstance(data["error"], str)
    return data["error"]


def _tool_error(answer: str) -> str:
    """The error of a single-symbol answer, or of the one entry of a `quotes` answer (whose key, the
    symbol as given, is cut short when long)."""
    data = json.loads(answer)
    if "quotes" not in data:
        return _error_of(answer)
    ((key, entry),) = data["quotes"].items()
    assert len(key) <= 40
    return _error_of(json.dumps(entry))


@pytest.mark.parametrize("value", HOSTILE_SYMBOLS)
@pytest.mark.parametrize("tool", list(TOOLS_BY_SYMBOL))
async def test_tools_answer_a_hostile_symbol_with_an_error_before_redis(
    redis_url: str, emulator: RunningEmulator, tool_reader: Reader, tool: str, value: object
) -> None:
    """{"error": ...} naming the value and the accepted form (get_multiple_stock_quotes: in the entry
    of that symbol). No Redis command, no upstream call."""
    reset_command_calls(redis_url)
    answer = await TOOLS_BY_SYMBOL[tool](value)
    assert len(answer) < 600
    assert_refusal(_tool_error(answer), value)
    assert_untouched(redis_url, emulator)


@pytest.mark.parametrize(
    ("call", "value"),
    [
        pytest.param(call, value.values[0], id=f"{name}-{value.id}")
        for name, (call, values) in TOOL_ARGUMENTS.items()
        for value in values
    ],
)
async def test_tools_answer_a_hostile_argument_with_an_error_before_redis(
    redis_url: str, emulator: RunningEmulator, tool_reader: Reader, call: ToolCall, value: object
) -> None:
    """A hostile date, strike, interval, limit, flag or symbol list: {"error": ...} naming it; no read."""
    reset_command_calls(redis_url)
    message = _error_of(await call(value))
    if isinstance(value, list) and len(value) > 50:
        assert "at most 50" in message
    elif value == []:
        assert "at least one" in message
    else:
        assert_refusal(message, value)
    assert_untouched(redis_url, emulator)


async def test_the_market_status_tool_reads_only_the_published_calendar(
    redis_url: str, emulator: RunningEmulator, tool_reader: Reader
) -> None:
    """The one tool without arguments: an answer from the calendar, one GET, no upstream call."""
    reset_command_calls(redis_url)
    assert json.loads(await tools.get_market_status_and_date_time())["phase"] == "regular"
    assert _commands(redis_url) == {"get": 1}
    assert emulator.state.stats()["total"] == 0


@pytest.mark.parametrize(
    "value",
    [p for p in HOSTILE_TEXT if p.id in ("glob-star", "crlf-command", "nul", "full-width", "cyrillic-a")],
)
async def test_tools_called_through_the_sdk_answer_a_hostile_symbol_with_an_error(
    redis_url: str, emulator: RunningEmulator, tool_reader: Reader, value: str
) -> None:
    """A model's JSON arguments, through the Agents SDK's own tool path: the same error JSON."""
    from agents.tool_context import ToolContext

    reset_command_calls(redis_url)
    for tool in function_tools():
        if tool.name == "get_market_status_and_date_time":
            continue
        arguments = {"symbols": [value]} if tool.name == "get_multiple_stock_quotes" else {"symbol": value}
        raw = json.dumps(arguments)
        context = ToolContext(None, tool_name=tool.name, tool_call_id="call_1", tool_arguments=raw)
        answer = json.loads(await tool.on_invoke_tool(context, raw))
        error = (
            answer["quotes"][value]["error"] if tool.name == "get_multiple_stock_quotes" else answer["error"]
        )
        assert_refusal(error, value)
    assert_untouched(redis_url, emulator)


# End to end: with a worker running, nothing hostile reaches its queue or the upstream.


async def test_nothing_hostile_reaches_the_queue_or_the_upstream(
    redis_url: str, emulator: RunningEmulator, start_worker: StartWorker, calendar: MarketCalendar
) -> None:
    """Every hostile symbol through every method and tool while a worker runs: the queue stays empty and
    the emulator is never called; then a well-formed miss does reach it (the control)."""
    values = [p.values[0] for p in HOSTILE_SYMBOLS]
    async with (
        start_worker(["SPY"]),
        Reader(redis_url, clock=FakeClock(), calendar=calendar, wait_s=0) as reader,
    ):
        tools.use_reader(reader)
        try:
            for value in values:
                for call in BY_SYMBOL.values():
                    with pytest.raises(InvalidSymbol):
                        await call(reader, value)
                for tool in TOOLS_BY_SYMBOL.values():
                    assert _tool_error(await tool(value))
            await asyncio.sleep(0.2)  # a job enqueued meanwhile would have started
            client = redis.Redis.from_url(redis_url)
            assert client.zcard(keys.QUEUE) == 0
            client.close()
            assert emulator.state.stats()["total"] == 0
            quote = await reader.quote("aapl", wait_s=10)
        finally:
            tools.use_reader(None)
    assert quote.symbol == "AAPL"
    assert emulator.calls("/v1/markets/quotes") == {"200": 1}
