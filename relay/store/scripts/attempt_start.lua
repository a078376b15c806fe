-- Begin one send of an action (relay.delivery.gate.start): take its send lock, then count the
-- attempt and mark the record delivering.
-- KEYS: send lock, action. ARGV: lock TTL (ms), now.
-- Returns the attempt's number, or 0 when another copy of the job holds the lock.
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local attempts = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('HSETNX', KEYS[2], 'first_attempt_at', ARGV[2])
redis.call('HSET', KEYS[2], 'state', 'delivering', 'last_attempt_at', ARGV[2])
return attempts
