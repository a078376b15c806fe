-- Note a schedule's handled tick unless a later one was (relay.worker.ticker).
-- KEYS: schedule state. ARGV: tick, then field, value, ...
local last = tonumber(redis.call('HGET', KEYS[1], 'last_tick'))
if last and last >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'last_tick', ARGV[1], unpack(ARGV, 2))
return 1
