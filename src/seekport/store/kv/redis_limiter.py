"""The Redis limiter: one decision is one Lua script, atomic on the Redis server and timed by
Redis's own clock (``TIME``), so replicas share exact limits whatever their clocks say.

When Redis does not answer (down, timed out), ``fail_open`` decides: admit (the default: a
limiter outage does not become an API outage) or refuse with ``Retry-After``. Either way the
decision says ``degraded`` and a warning is logged at most once a minute.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from seekport.store.kv.base import Decision, Gcra, Reservation

log = logging.getLogger("seekport.kv")

# KEYS[1]: the key; ARGV: interval T, tolerance, cost, force (1/0). Returns
# {admitted 1/0, TAT - now (s), now} as strings: Lua numbers would come back as integers.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if cost == 0 then
  if tat + interval - tolerance > now + 1e-6 then return {'0', tostring(tat - now)} end
  return {'1', tostring(tat - now)}
end
local new_tat = tat + cost * interval
if new_tat < now then new_tat = now end
if ARGV[4] ~= '1' and cost > 0 and new_tat - tolerance > now + 1e-6 then
  return {'0', tostring(tat - now)}
end
local ttl = math.ceil((new_tat - now) * 1000)
if ttl > 0 then
  redis.call('SET', KEYS[1], tostring(new_tat), 'PX', ttl)
else
  redis.call('DEL', KEYS[1])
end
return {'1', tostring(new_tat - now)}
"""

# KEYS[1]: a sorted set of token -> lease end (ms, Redis time); ARGV: token, limit, ttl ms.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# KEYS[1]: a hash {spent = n, r:<token> = "<amount>:<lease end ms>"}; ARGV: token, amount,
# limit, lease ms, ttl ms (0: none), seed ('' when the caller has none). Returns {status, used}:
# status 1 admitted, 0 refused, -1 unseeded (the hash does not exist and no seed was given).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[6] == '' then return {-1, '0'} end
  redis.call('HSET', KEYS[1], 'spent', ARGV[6])
  if tonumber(ARGV[5]) > 0 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5])) end
end
local all = redis.call('HGETALL', KEYS[1])
local used = 0
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  if f == 'spent' then
    used = used + tonumber(v)
  else
    local sep = string.find(v, ':', 1, true)
    if tonumber(string.sub(v, sep + 1)) <= now then
      redis.call('HDEL', KEYS[1], f)
    else
      used = used + tonumber(string.sub(v, 1, sep - 1))
    end
  end
end
local amount = tonumber(ARGV[2])
if used + amount > tonumber(ARGV[3]) then return {0, tostring(used)} end
redis.call('HSET', KEYS[1], 'r:' .. ARGV[1], ARGV[2] .. ':' .. tostring(now + tonumber(ARGV[4])))
return {1, tostring(used + amount)}
"""

# KEYS[1]: the ledger; ARGV: token, amount spent.
_SETTLE = """
redis.call('HDEL', KEYS[1], 'r:' .. ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
end
return 1
"""

_USED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local all = redis.call('HGETALL', KEYS[1])
local used = 0
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  if f == 'spent' then
    used = used + tonumber(v)
  else
    local sep = string.find(v, ':', 1, true)
    if tonumber(string.sub(v, sep + 1)) > now then
      used = used + tonumber(string.sub(v, 1, sep - 1))
    end
  end
end
return tostring(used)
"""

WARN_EVERY_S = 60.0


class RedisLimiter:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "seekport:",
        fail_open: bool = True,
        timeout_s: float = 0.5,
        max_connections: int = 32,
    ) -> None:
        # a bounded pool: a burst of decisions waits for a connection instead of opening
        # hundreds (each a connect that may time out)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=max(timeout_s, 1.0),  # waiting for a free connection
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        self._redis: Any = aioredis.Redis.from_pool(pool)  # owns the pool: aclose closes it
        self._prefix = prefix
        self._fail_open = fail_open
        self._gcra = self._redis.register_script(_GCRA)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)
        self._used = self._redis.register_script(_USED)
        self._warned = -WARN_EVERY_S

    async def hit(
        self,
        key: str,
        *,
        limit: int,
        period_s: float,
        cost: int = 1,
        burst: int | None = None,
        force: bool = False,
    ) -> Decision:
        gcra = Gcra.of(limit, period_s, burst)
        args: list[str | int] = [repr(gcra.interval), repr(gcra.tolerance), cost, int(force)]
        try:
            admitted, ahead = await self._gcra(keys=[self._prefix + "rl:" + key], args=args)
        except RedisError as exc:
            return self._degraded(exc, limit, gcra.interval * max(cost, 1))
        allowed = admitted in (b"1", "1")
        return gcra.decision(allowed, float(ahead), 0.0, cost, limit)

    async def acquire_slot(self, key: str, token: str, *, limit: int, ttl_s: float) -> bool:
        ttl_ms = max(1, round(ttl_s * 1000))
        try:
            got = await self._acquire(
                keys=[self._prefix + "cc:" + key], args=[token, limit, ttl_ms]
            )
        except RedisError as exc:
            return self._degraded(exc, limit, 1.0).allowed
        return int(got) == 1

    async def release_slot(self, key: str, token: str) -> None:
        try:
            await self._redis.zrem(self._prefix + "cc:" + key, token)
        except RedisError as exc:
            self._warn(exc)  # the lease runs out by itself

    async def reserve(
        self,
        key: str,
        token: str,
        *,
        amount: int,
        limit: int,
        lease_s: float,
        ttl_s: float | None,
        seed: int | None = None,
    ) -> Reservation:
        args: list[str | int] = [
            token,
            amount,
            limit,
            max(1, round(lease_s * 1000)),
            0 if ttl_s is None else max(1, round(ttl_s * 1000)),
            "" if seed is None else seed,
        ]
        try:
            status, used = await self._reserve(keys=[self._prefix + "led:" + key], args=args)
        except RedisError as exc:  # money fails closed, whatever fail_open says of rates
            self._warn(exc)
            return Reservation("refused", 0, degraded=True)
        code, spent = int(status), int(float(used))
        if code == 1:
            return Reservation("admitted", spent)
        return Reservation("refused", spent) if code == 0 else Reservation("unseeded", 0)

    async def settle(self, key: str, token: str, amount: int) -> None:
        try:
            await self._settle(keys=[self._prefix + "led:" + key], args=[token, amount])
        except RedisError as exc:
            self._warn(exc)  # the reservation's lease runs out; the record holds the truth

    async def used(self, key: str) -> int | None:
        try:
            got = await self._used(keys=[self._prefix + "led:" + key])
        except RedisError as exc:
            self._warn(exc)
            return None
        return None if got is None else int(float(got))

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _degraded(self, exc: RedisError, limit: int, retry_s: float) -> Decision:
        self._warn(exc)
        if self._fail_open:
            return Decision(True, limit, 0, 0.0, 0.0, degraded=True)
        return Decision(False, limit, 0, max(1.0, retry_s), 0.0, degraded=True)

    def _warn(self, exc: RedisError) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning(
                "redis did not answer; limits %s meanwhile",
                "admit" if self._fail_open else "refuse",
                extra={"fields": {"error": type(exc).__name__}},
            )
