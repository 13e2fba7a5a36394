-- Neurometric's rate limits, budgets and parallel slots in Redis: see gateway/limits.py for the model.
-- Both scripts read the clock with Redis' TIME, so every machine shares one clock.
--
-- ADMIT. KEYS: request bucket, token bucket, parallel slots (sorted set), month's spend (nano-USD).
-- ARGV: rpm, tpm, tokens, max_parallel, budget (nano-USD, -1 for none), request id, slot ttl, spend ttl.
-- Returns {verdict, requests left, tokens left, seconds to wait}; verdict is ok, parallel, budget,
-- requests, tokens, too_large or spend_unknown (the caller rebuilds the month's spend, then asks again).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_parallel, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local slot_ttl, spend_ttl = tonumber(ARGV[7]), tonumber(ARGV[8])

local function level(key, capacity)
  local state = redis.call('HMGET', key, 'level', 'ts')
  if not state[1] then return capacity end
  local value = tonumber(state[1]) + (now - tonumber(state[2])) * capacity / 60
  if value > capacity then return capacity end
  return value
end

local function store(key, value, capacity)
  redis.call('HSET', key, 'level', tostring(value), 'ts', tostring(now))
  redis.call('EXPIRE', key, math.ceil((capacity - value) * 60 / capacity) + 1)
end

if max_parallel > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= max_parallel then return {'parallel', '0', '0', '1'} end
end
if budget >= 0 then
  local spent = redis.call('GET', KEYS[4])
  if not spent then return {'spend_unknown', '0', '0', '0'} end
  redis.call('EXPIRE', KEYS[4], spend_ttl)
  if tonumber(spent) >= budget then return {'budget', '0', '0', '0'} end
end
local requests_left, tokens_left = 0, 0
if rpm > 0 then requests_left = level(KEYS[1], rpm) end
if tpm > 0 then tokens_left = level(KEYS[2], tpm) end
if rpm > 0 and requests_left < 1 then
  return {'requests', tostring(requests_left), tostring(tokens_left), tostring((1 - requests_left) * 60 / rpm)}
end
if tpm > 0 and tokens > tpm then return {'too_large', tostring(requests_left), tostring(tokens_left), '0'} end
if tpm > 0 and tokens_left < tokens then
  return {'tokens', tostring(requests_left), tostring(tokens_left), tostring((tokens - tokens_left) * 60 / tpm)}
end
if rpm > 0 then requests_left = requests_left - 1; store(KEYS[1], requests_left, rpm) end
if tpm > 0 then tokens_left = tokens_left - tokens; store(KEYS[2], tokens_left, tpm) end
if max_parallel > 0 then
  redis.call('ZADD', KEYS[3], now + slot_ttl, ARGV[6])
  redis.call('EXPIRE', KEYS[3], slot_ttl)
end
return {'ok', tostring(requests_left), tostring(tokens_left), '0'}
-- SETTLE --
-- KEYS: as for ADMIT. ARGV: request id, tpm, token delta (used - reserved), cost (nano-USD), spend ttl.
-- Returns the month's spend after adding the cost, or -1 when no counter is kept.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tpm, delta, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[1])
if tpm > 0 and delta ~= 0 then
  local state = redis.call('HMGET', KEYS[2], 'level', 'ts')
  local value = tpm
  if state[1] then
    value = tonumber(state[1]) + (now - tonumber(state[2])) * tpm / 60
    if value > tpm then value = tpm end
  end
  value = value - delta
  redis.call('HSET', KEYS[2], 'level', tostring(value), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[2], math.ceil((tpm - value) * 60 / tpm) + 1)
end
if cost > 0 and redis.call('EXISTS', KEYS[4]) == 1 then
  local spent = redis.call('INCRBY', KEYS[4], cost)
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[5]))
  return spent
end
return -1
