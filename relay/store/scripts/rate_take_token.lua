-- The shared token bucket toward the gateway (relay.delivery.circuit.take_token).
-- KEYS: bucket. ARGV: rate per second, burst, now (s), longest wait to reserve (s).
-- A token is reserved (the count may go negative) when the wait for it is at most that long;
-- returns the seconds to wait before sending. A longer wait reserves nothing: ask again later.
local rate, burst, now, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = math.max(0, (1 - tokens) / rate)
if wait <= max_wait then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
