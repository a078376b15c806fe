-- A replay whose mapping failed again (relay.store.replay): the event stays parked, with the new error.
-- KEYS: event. ARGV: expected state ('' = any), error, now.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local state = redis.call('HGET', KEYS[1], 'state') or ''
if ARGV[1] ~= '' and state ~= ARGV[1] then return 'state:' .. state end
redis.call('HSET', KEYS[1], 'error', ARGV[2], 'replayed_at', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'replays', 1)
return 'ok'
