"""The contract's models and job encoding: aware UTC times, compact JSON, safe payloads."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from reader import OptionChain, Quote
from reader import jobs as job_contract

FETCHED = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def test_times_are_converted_to_utc_and_naive_ones_refused() -> None:
    """An aware time in any zone is stored in UTC; a naive one is an error, not a guess."""
    eastern = timezone(timedelta(hours=-5))
    quote = Quote(
        symbol="AAPL", source="tradier", fetched_at=FETCHED.astimezone(eastern), fresh_until=FETCHED
    )
    assert quote.fetched_at.tzinfo is UTC
    assert quote.fetched_at == FETCHED
    with pytest.raises(ValidationError, match=r"timezone"):
        Quote(symbol="AAPL", source="tradier", fetched_at=datetime(2026, 11, 24, 10), fresh_until=FETCHED)


def test_stored_json_is_compact_and_round_trips() -> None:
    """Nulls are left out of the stored JSON and come back as None; times end in Z, and fetched_at has a
    fixed width (microseconds) so that stamps compare as strings."""
    quote = Quote(
        symbol="AAPL", source="tradier", fetched_at=FETCHED, fresh_until=FETCHED, last=1.5, close=None
    )
    raw = quote.model_dump_json(exclude_none=True)
    assert json.loads(raw) == {
        "source": "tradier",
        "fetched_at": "2026-11-24T15:00:00.000000Z",
        "fresh_until": "2026-11-24T15:00:00Z",
        "symbol": "AAPL",
        "last": 1.5,
    }
    assert Quote.model_validate_json(raw) == quote


def test_unknown_fields_from_a_newer_worker_are_ignored() -> None:
    """A reader keeps working when the worker adds a field."""
    raw = (
        '{"symbol":"A","source":"t","fetched_at":"2026-11-24T15:00:00Z",'
        '"fresh_until":"2026-11-24T15:00:00Z","x":1}'
    )
    assert Quote.model_validate_json(raw).symbol == "A"


def test_an_item_not_read_from_redis_is_judged_at_its_fetch_time() -> None:
    """Without a read time, age is 0 and the item is fresh (fetched_at <= fresh_until)."""
    quote = Quote(symbol="A", source="t", fetched_at=FETCHED, fresh_until=FETCHED + timedelta(seconds=1))
    assert (quote.age_s, quote.stale, quote.read_at) == (0.0, False, FETCHED)


def test_job_payloads_are_json_and_exceptions_become_text() -> None:
    """Jobs and results are JSON, never pickle; an exception in a result is its text."""
    payload = {"f": "refresh_quotes", "a": [["AAPL"]], "r": ValueError("boom")}
    data = job_contract.dumps(payload)
    assert json.loads(data)["r"] == "ValueError: boom"
    assert job_contract.loads(job_contract.dumps({"a": [1]})) == {"a": [1]}
    with pytest.raises(ValueError, match=r"JSON list, expected an object"):
        job_contract.loads(b"[1, 2]")
    with pytest.raises(UnicodeDecodeError):  # a pickled payload is refused, not unpickled
        job_contract.loads(b"\x80\x04pickle")


def test_as_json_names_row_fields_and_adds_read_time_freshness() -> None:
    """as_json() turns contract rows into objects without None values and adds age_s and stale."""
    at = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    chain = OptionChain.model_validate_json(
        '{"source":"tradier","fetched_at":"2026-11-24T15:00:00Z","fresh_until":"2026-11-24T15:01:00Z",'
        '"symbol":"SPY","expiration":"2026-12-18","contracts":[["SPY261218C00600000","call",600.0,1.5,null,null]]}'
    )
    chain._read_at = at + timedelta(seconds=90)
    data = chain.as_json()
    assert data["contracts"] == [
        {"symbol": "SPY261218C00600000", "option_type": "call", "strike": 600.0, "bid": 1.5}
    ]
    assert data["expiration"] == date(2026, 12, 18).isoformat()
    assert (data["age_s"], data["stale"]) == (90.0, True)
    assert "underlying_price" not in data
