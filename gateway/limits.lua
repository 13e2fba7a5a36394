-- Neurometric's rate limits, budgets and parallel slots in Redis: see gateway/limits.py for the model and
-- gateway/limit_leases.py for leases. Three scripts, each this COMMON part followed by its own section.
-- Every script reads the clock with Redis' TIME, so every machine shares one clock.
--
-- KEYS (all scripts): request bucket, token bucket, parallel slots (sorted set: request id -> expiry),
-- month's spend (nano-USD), leases (hash: lease id -> "slots:budget hold:expiry").
-- COMMON --
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

-- A bucket's level now: what it held, plus what it refilled since, at most its capacity.
local function level(key, capacity)
  local state = redis.call('HMGET', key, 'level', 'ts')
  if not state[1] then return capacity end
  local value = tonumber(state[1]) + (now - tonumber(state[2])) * capacity / 60
  if value > capacity then return capacity end
  return value
end

local function store(key, value, capacity)
  if value > capacity then value = capacity end
  redis.call('HSET', key, 'level', tostring(value), 'ts', tostring(now))
  redis.call('EXPIRE', key, math.ceil((capacity - value) * 60 / capacity) + 1)
end

-- What live leases hold: parallel slots and budget (nano-USD); expired leases are dropped.
local function leased(key)
  local slots, held = 0, 0
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local s, h, e = string.match(all[i + 1], '^([^:]*):([^:]*):(.*)$')
    if tonumber(e) < now then
      redis.call('HDEL', key, all[i])
    else
      slots, held = slots + tonumber(s), held + tonumber(h)
    end
  end
  return slots, held
end

-- Parallel slots taken by single requests (their expired ones dropped).
local function slots_taken(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return redis.call('ZCARD', key)
end
-- ADMIT --
-- ARGV: rpm, tpm, tokens, max_parallel, budget (nano-USD, -1 for none), request id, slot ttl, spend ttl.
-- Returns {verdict, requests left, tokens left, seconds to wait}; verdict is ok, parallel, budget,
-- requests, tokens, too_large or spend_unknown (the caller rebuilds the month's spend, then asks again).
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_parallel, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local slot_ttl, spend_ttl = tonumber(ARGV[7]), tonumber(ARGV[8])

local lease_slots, lease_held = 0, 0
if max_parallel > 0 or budget >= 0 then lease_slots, lease_held = leased(KEYS[5]) end
if max_parallel > 0 and slots_taken(KEYS[3]) + lease_slots >= max_parallel then
  return {'parallel', '0', '0', '1'}
end
if budget >= 0 then
  local spent = redis.call('GET', KEYS[4])
  if not spent then return {'spend_unknown', '0', '0', '0'} end
  redis.call('EXPIRE', KEYS[4], spend_ttl)
  if tonumber(spent) + lease_held >= budget then return {'budget', '0', '0', '0'} end
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
-- ARGV: request id, tpm, token delta (used - reserved), cost (nano-USD), spend ttl.
-- Returns the month's spend after adding the cost, or -1 when no counter is kept.
local tpm, delta, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[1])
if tpm > 0 and delta ~= 0 then store(KEYS[2], level(KEYS[2], tpm) - delta, tpm) end
if cost > 0 and redis.call('EXISTS', KEYS[4]) == 1 then
  local spent = redis.call('INCRBY', KEYS[4], cost)
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[5]))
  return spent
end
return -1
-- LEASE --
-- One process's lease on a key's limits, renewed: give back what the last one left, settle what its
-- requests used, then grant a new one when every limit is less than half used.
-- ARGV: rpm, tpm, max_parallel, budget (nano-USD, -1 for none), lease id, requests given back, tokens
-- given back (negative: owed), cost (nano-USD), requests in flight under the lease, want (1 or 0), then
-- the grant: requests, tokens, slots, budget hold; then hold seconds, spend ttl.
-- Returns {granted (1 or 0), requests left, tokens left, month's spend (-1: no counter)}.
local rpm, tpm, max_parallel, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lease_id, give_requests, give_tokens = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local cost, in_flight, want = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local grant_requests, grant_tokens = tonumber(ARGV[11]), tonumber(ARGV[12])
local grant_slots, grant_hold = tonumber(ARGV[13]), tonumber(ARGV[14])
local hold_seconds, spend_ttl = tonumber(ARGV[15]), tonumber(ARGV[16])

if rpm > 0 and give_requests ~= 0 then store(KEYS[1], level(KEYS[1], rpm) + give_requests, rpm) end
if tpm > 0 and give_tokens ~= 0 then store(KEYS[2], level(KEYS[2], tpm) + give_tokens, tpm) end
local spent = -1
if redis.call('EXISTS', KEYS[4]) == 1 then
  spent = tonumber(redis.call('INCRBY', KEYS[4], cost))
  redis.call('EXPIRE', KEYS[4], spend_ttl)
end
redis.call('HDEL', KEYS[5], lease_id)

local requests_left, tokens_left = 0, 0
if rpm > 0 then requests_left = level(KEYS[1], rpm) end
if tpm > 0 then tokens_left = level(KEYS[2], tpm) end
local granted = 0
if want == 1 and (budget < 0 or spent >= 0) then
  local others_slots, others_held = leased(KEYS[5])
  local ok = true
  if rpm > 0 and requests_left - grant_requests < rpm / 2 then ok = false end
  if tpm > 0 and tokens_left - grant_tokens < tpm / 2 then ok = false end
  if max_parallel > 0 and slots_taken(KEYS[3]) + others_slots + in_flight + grant_slots > max_parallel / 2 then
    ok = false
  end
  if budget >= 0 and spent + others_held + grant_hold > budget / 2 then ok = false end
  if ok then
    granted = 1
    if rpm > 0 then requests_left = requests_left - grant_requests; store(KEYS[1], requests_left, rpm) end
    if tpm > 0 then tokens_left = tokens_left - grant_tokens; store(KEYS[2], tokens_left, tpm) end
  end
end
local slots, hold = in_flight + granted * grant_slots, granted * grant_hold
if granted == 1 or slots > 0 then  -- every live lease has a record, so that it can be seen
  redis.call('HSET', KEYS[5], lease_id, string.format('%d:%d:%.6f', slots, hold, now + hold_seconds))
  redis.call('EXPIRE', KEYS[5], hold_seconds)
end
return {granted, tostring(requests_left), tostring(tokens_left), tostring(spent)}
