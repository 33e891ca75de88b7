"""The on-demand fetch contract: what a reader enqueues on a miss, and what the worker announces.

A reader that misses (or reads a stale item) runs `ENQUEUE_SCRIPT`: in one round trip, for every
miss of one read, it reads the data key again and the negative cache, and enqueues the arq job
`fetch(dataset, symbol, option)` under the deterministic id `keys.fetch_job_id(...)` unless a job
of that id is already queued or running. However many processes miss at once, one job runs. The
worker fetches (no upstream call if the item became fresh meanwhile; the quote fetches pending
together in one upstream call, `worker.claims`), stores, then publishes an `Outcome` per job on
`keys.FETCHED`; the reader waits on that message, reading the key as a fallback.

The script writes the arq job format itself (so the blocking reader can enqueue too, and so the
reader's Redis user needs write access to two key patterns only): a JSON payload
`{"t", "f", "a", "k", "et"}` under `arq:job:<id>` and the id in the queue's sorted set. Read-only
keys travel in ARGV, not KEYS (see the script).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Literal

from arq.constants import job_key_prefix
from pydantic import BaseModel, ConfigDict

from reader import keys
from reader.jobs import DATASETS, dumps
from reader.models import UtcDatetime

FETCH_JOB = "fetch"
"""Name of the worker's on-demand job: `fetch(dataset, symbol, option)`."""

FETCH_EXPIRES_MS = 60_000
"""An on-demand job not started within this long is dropped (the next miss enqueues it again)."""

PRIORITY_MS = 60_000
"""On-demand jobs sort in the queue as if enqueued this much earlier: an agent waiting on a miss
goes ahead of scheduled batches (and a reader whose clock runs ahead still gets picked up)."""

INTRADAY_BARS = ("1m", "5m", "15m")

Mode = Literal["miss", "refresh"]
"""`miss`: enqueue unless the data key now holds something (it landed meanwhile). `refresh`:
enqueue even so (the item is stale, or present but not what was asked)."""

Status = Literal["stored", "fresh", "unknown", "no_data", "unlisted", "failed", "no_worker"]
"""How a fetch ended: stored new data; found it already fresh (no upstream call); the upstream
has no such symbol (negative-cached); it lists the symbol but has no such data now (remembered
until the dataset's next refresh; the detail says when it was checked and when it is checked
again); the expiration asked for is not listed; failed (the detail says why). `no_worker` is the
reader's own: no worker is alive to run it (never published)."""

# Every key travels in ARGV (none in KEYS): Redis checks a script's declared keys against one ACL
# selector for the script command itself, while the reader's user may write the job key and the
# queue under two different selectors; commands inside the script are checked one by one.
# ARGV: expires ms, queue, worker health key, arq job key prefix, then six fields per request (job
# id, payload, score, mode, data key, unknown key): every miss of one read goes in one round trip.
# Returns one answer per request, in order: {'data', value} | {'unknown', value} | {'pending'} |
# {'queued'}, or {'no_worker'} when no worker is alive to run the job (it is queued all the same,
# for one that starts within FETCH_EXPIRES_MS). arq's result key is not consulted: the fetch job
# keeps none.
ENQUEUE_SCRIPT = """
local alive = redis.call('EXISTS', ARGV[3]) == 1
local answers = {}
for i = 5, #ARGV, 6 do
  local answer = nil
  if ARGV[i + 3] == 'miss' then
    local data = redis.call('GET', ARGV[i + 4])
    if data then answer = {'data', data} end
  end
  if not answer then
    local unknown = redis.call('GET', ARGV[i + 5])
    if unknown then answer = {'unknown', unknown} end
  end
  if not answer then
    answer = {'pending'}
    local job = ARGV[4] .. ARGV[i]
    if redis.call('EXISTS', job) == 0 then
      redis.call('SET', job, ARGV[i + 1], 'PX', ARGV[1])
      redis.call('ZADD', ARGV[2], ARGV[i + 2], ARGV[i])
      answer = {'queued'}
    end
    if not alive then answer = {'no_worker'} end
  end
  answers[#answers + 1] = answer
end
return answers
"""


@dataclass(frozen=True)
class FetchRequest:
    """One on-demand fetch: `dataset` (of `reader.jobs.DATASETS`) of a normalised `symbol`.

    `option`: for chains, an expiration `YYYY-MM-DD` to fetch besides the configured ones (empty:
    the configured ones); for intraday, the bar ("1m", "5m", "15m"); empty otherwise.
    """

    dataset: str
    symbol: str
    option: str = ""

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}: expected one of {', '.join(DATASETS)}")
        if self.dataset == "intraday" and self.option not in INTRADAY_BARS:
            raise ValueError(f"intraday option={self.option!r}: expected one of {', '.join(INTRADAY_BARS)}")
        if self.dataset == "chains" and self.option:
            date.fromisoformat(self.option)  # raises ValueError naming the value
        elif self.dataset not in ("chains", "intraday") and self.option:
            raise ValueError(f"{self.dataset} takes no option, got {self.option!r}")

    @property
    def job_id(self) -> str:
        return keys.fetch_job_id(self.dataset, self.symbol, self.option)

    @property
    def data_key(self) -> str:
        """The key whose item this fetch writes and whose freshness decides whether it must call."""
        symbol = self.symbol
        if self.dataset == "quotes":
            return keys.quote(symbol)
        if self.dataset == "expirations":
            return keys.expirations(symbol)
        if self.dataset == "chains":
            return (
                keys.chain(symbol, date.fromisoformat(self.option))
                if self.option
                else keys.chain_index(symbol)
            )
        if self.dataset == "history":
            return keys.history(symbol, "1d")
        if self.dataset == "intraday":
            return keys.history(symbol, self.option)
        return keys.indicators(symbol)

    @property
    def unknown_key(self) -> str:
        """Where an upstream's "no such data" is remembered: per symbol, and per bar for intraday."""
        return keys.unknown(self.dataset, self.symbol, self.option if self.dataset == "intraday" else "")

    def args(self) -> list[str]:
        """The job's positional arguments."""
        return [self.dataset, self.symbol, self.option]

    def script_fields(self, mode: Mode, enqueued_ms: int) -> list[str]:
        """This request's six fields in the ARGV of `ENQUEUE_SCRIPT` (see `enqueue_args`)."""
        payload = dumps({"t": None, "f": FETCH_JOB, "a": self.args(), "k": {}, "et": enqueued_ms})
        return [
            self.job_id,
            payload.decode(),
            str(enqueued_ms - PRIORITY_MS),
            mode,
            self.data_key,
            self.unknown_key,
        ]


def enqueue_args(asks: Iterable[tuple[FetchRequest, Mode]], now_ms: int | None = None) -> list[str]:
    """ARGV of `ENQUEUE_SCRIPT` for (request, mode) pairs, answered in the same order; `now_ms` is
    the enqueue time (wall clock: arq orders its queue by it)."""
    enqueued_ms = int(time.time() * 1000) if now_ms is None else now_ms
    shared = [str(FETCH_EXPIRES_MS), keys.QUEUE, keys.WORKER_HEALTH, job_key_prefix]
    return shared + [field for request, mode in asks for field in request.script_fields(mode, enqueued_ms)]


class Outcome(BaseModel):
    """What the worker publishes on `keys.FETCHED` when an on-demand fetch ends."""

    model_config = ConfigDict(frozen=True)

    job: str
    status: Status
    detail: str = ""


class Unknown(BaseModel):
    """The negative cache's value: which upstream said the symbol has no such data, and when."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    source: str
    checked_at: UtcDatetime
    detail: str
