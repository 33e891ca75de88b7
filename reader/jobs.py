"""The job contract: names of the worker's arq jobs and how their payloads are encoded.

Payloads are JSON, not arq's default pickle: whoever can write the queue (a reader, later) must
not be able to make the worker run arbitrary code.
"""

from __future__ import annotations

import json
from typing import Any

DATASETS = ("quotes", "expirations", "chains", "history", "intraday", "indicators")
"""What the worker refreshes, in the order a new symbol is filled: chains read the stored
expirations, indicators computed from bars come with the (daily) history."""


def refresh_job(dataset: str) -> str:
    """Name of the arq job that refreshes one batch of `dataset`: `refresh_<dataset>(symbols)`."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    return f"refresh_{dataset}"


def dumps(payload: dict[str, Any]) -> bytes:
    """Encode an arq job or result; values JSON cannot hold (an exception) become their text."""
    return json.dumps(payload, separators=(",", ":"), default=_as_text).encode()


def loads(data: bytes) -> dict[str, Any]:
    """Decode what `dumps` wrote."""
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError(f"job payload is a JSON {type(value).__name__}, expected an object")
    return value


def _as_text(value: object) -> str:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return repr(value)
