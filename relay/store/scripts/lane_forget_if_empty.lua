-- Forget an empty lane (atomically, so a concurrent append is not missed).
-- KEYS: lanes set, lane.
if redis.call('LLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[1], KEYS[2]) return 1 end
return 0
