"""Claims: the quote fetches a running quote fetch job takes out of the queue, to fetch them all in
one upstream call.

Readers enqueue one `fetch("quotes", symbol, "")` job per missing quote, under a deterministic id
(`reader.ondemand`). A quote fetch job, when it starts (the lead), runs `CLAIM_SCRIPT`: at once, it
takes out of the queue the other quote fetch jobs that are queued and not running (up to the
quotes provider's batch size less one), marks each in progress under the lead's token (so arq's
own start of it fails), and cuts its job key, which readers take for "a job is queued or
running", to a lease of `LEASE_S`. The lead fetches them all in one upstream call, publishes one
`Outcome` per job, then releases them (`RELEASE_SCRIPT`): the next miss enqueues anew.

While the lead runs, it renews the leases every `LEASE_RENEW_S`. If its worker dies, they lapse
within `LEASE_S`: the waiting readers' next run of the enqueue script (every fallback read) finds
no job and enqueues it again, for a surviving worker; the lead itself is retaken like any job
(`worker.daemon`). So a dead worker holds a claimed symbol for seconds, never the job's 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass

import redis.asyncio
from arq.constants import in_progress_key_prefix, job_key_prefix

from reader import keys
from reader.errors import ReaderError
from reader.jobs import loads
from reader.ondemand import FetchRequest
from reader.symbols import normalize_symbol
from worker.daemon import LEASE_RENEW_S, LEASE_S
from worker.logs import fields

log = logging.getLogger(__name__)

QUOTE_FETCHES = keys.fetch_jobs_of("quotes")

SCAN_LIMIT = 2_000
"""How many queue entries, from the head, a claim looks through (on-demand jobs sort first)."""

# ARGV: queue, job id prefix, how many to take, lease ms, token, now ms (arq's queue scores are
# wall-clock ms), in-progress key prefix, job key prefix, scan limit. Returns id, payload, id, ...
CLAIM_SCRIPT = """
local taken = {}
local limit = tonumber(ARGV[3])
if limit <= 0 then return taken end
local ids = redis.call('ZRANGEBYSCORE', ARGV[1], '-inf', ARGV[6], 'LIMIT', 0, tonumber(ARGV[9]))
for _, id in ipairs(ids) do
  if string.sub(id, 1, #ARGV[2]) == ARGV[2] and redis.call('EXISTS', ARGV[7] .. id) == 0 then
    local payload = redis.call('GET', ARGV[8] .. id)
    if payload then
      redis.call('ZREM', ARGV[1], id)
      redis.call('SET', ARGV[7] .. id, ARGV[5], 'PX', ARGV[4])
      redis.call('PEXPIRE', ARGV[8] .. id, ARGV[4])
      taken[#taken + 1] = id
      taken[#taken + 1] = payload
      if #taken >= 2 * limit then break end
    end
  end
end
return taken
"""

# ARGV: lease ms, token, in-progress key prefix, job key prefix, then the claimed ids. Renews only
# what is still this lead's (a lapsed claim may have been enqueued again and taken by another).
RENEW_SCRIPT = """
for i = 5, #ARGV do
  if redis.call('GET', ARGV[3] .. ARGV[i]) == ARGV[2] then
    redis.call('PEXPIRE', ARGV[3] .. ARGV[i], ARGV[1])
    redis.call('PEXPIRE', ARGV[4] .. ARGV[i], ARGV[1])
  end
end
return 0
"""

# ARGV: token, in-progress key prefix, job key prefix, then id, payload pairs. Deletes only what is
# still this lead's: a job key holding another payload was enqueued again after a lapse.
RELEASE_SCRIPT = """
for i = 4, #ARGV, 2 do
  if redis.call('GET', ARGV[2] .. ARGV[i]) == ARGV[1] then redis.call('DEL', ARGV[2] .. ARGV[i]) end
  if redis.call('GET', ARGV[3] .. ARGV[i]) == ARGV[i + 1] then redis.call('DEL', ARGV[3] .. ARGV[i]) end
end
return 0
"""


@dataclass(frozen=True)
class Claimed:
    """One quote fetch job a lead took: its id, its arq payload as queued, and its request (None
    if the payload does not make one: `error` says why)."""

    job_id: str
    payload: bytes
    request: FetchRequest | None
    error: str = ""


def parse_claimed(job_id: str, payload: bytes) -> Claimed:
    """The request of a claimed job, checked as the `fetch` job checks its own arguments: whoever
    can write the queue may write anything there."""
    try:
        data = loads(payload)
        dataset, symbol, option = data["a"]
        if data.get("f") != "fetch" or dataset != "quotes":
            raise ValueError(f"a quote fetch job id with the payload of {data.get('f')}({dataset!r}, ...)")
        request = FetchRequest(dataset, normalize_symbol(symbol), option)
        if request.job_id != job_id:
            raise ValueError(f"job id {job_id!r} does not match its arguments ({request.job_id!r})")
    except (ValueError, KeyError, TypeError, ReaderError) as e:  # answered; never crashes the lead
        return Claimed(job_id, payload, None, f"bad request: {e}")
    return Claimed(job_id, payload, request)


class Claims:
    """The quote fetch jobs one lead job took from the queue, held until `release`."""

    def __init__(self, client: redis.asyncio.Redis, lead: str) -> None:
        self._redis = client
        self.token = f"{lead}#{secrets.token_hex(4)}"
        self.taken: list[Claimed] = []
        self._renewing: asyncio.Task[None] | None = None

    async def take(self, limit: int) -> list[Claimed]:
        """Take up to `limit` pending quote fetch jobs (not running, not this one) out of the queue."""
        args = [
            keys.QUEUE, QUOTE_FETCHES, str(limit), str(int(LEASE_S * 1000)), self.token,
            str(int(time.time() * 1000)), in_progress_key_prefix, job_key_prefix, str(SCAN_LIMIT),
        ]  # fmt: skip
        flat = await self._redis.eval(CLAIM_SCRIPT, 0, *args)  # type: ignore[misc]  # redis-py types it as a union
        pairs = zip(flat[::2], flat[1::2], strict=True)
        self.taken = [parse_claimed(job_id.decode(), payload) for job_id, payload in pairs]
        if self.taken:
            self._renewing = asyncio.get_running_loop().create_task(self._renew())
        return self.taken

    async def _renew(self) -> None:
        args = [str(int(LEASE_S * 1000)), self.token, in_progress_key_prefix, job_key_prefix]
        args += [c.job_id for c in self.taken]
        while True:
            await asyncio.sleep(LEASE_RENEW_S)
            try:
                await self._redis.eval(RENEW_SCRIPT, 0, *args)  # type: ignore[misc]  # see take
            except redis.RedisError as e:  # the next renewal may make it in time
                log.warning("claims.renew_failed %s", fields(jobs=len(self.taken), error=f'"{e}"'))

    async def release(self) -> None:
        """Stop renewing, and delete the claimed jobs' keys that are still this lead's (a Redis
        error leaves them to lapse within `LEASE_S`)."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
            self._renewing = None
        if not self.taken:
            return
        args: list[str | bytes] = [self.token, in_progress_key_prefix, job_key_prefix]
        for claimed in self.taken:
            args += [claimed.job_id, claimed.payload]  # bytes as read: any payload, UTF-8 or not
        try:
            await self._redis.eval(RELEASE_SCRIPT, 0, *args)  # type: ignore[misc, arg-type]  # takes bytes too
        except redis.RedisError as e:
            log.warning("claims.release_failed %s", fields(jobs=len(self.taken), error=f'"{e}"'))

    def __repr__(self) -> str:
        return f"<Claims token={self.token} taken={len(self.taken)}>"
