-- The start of a send (relay.delivery.gate): a function for the scripts that begin one.

-- Take the action's send lock (`lock`, held `lock_ttl_ms`), then count the attempt and mark the
-- record (`action`) delivering at `now`. Returns the attempt's number, or 0 when another copy of
-- the job holds the lock.
local function attempt_start(lock, action, lock_ttl_ms, now)
  if not redis.call('SET', lock, '1', 'NX', 'PX', lock_ttl_ms) then return 0 end
  local attempts = redis.call('HINCRBY', action, 'attempts', 1)
  redis.call('HSETNX', action, 'first_attempt_at', now)
  redis.call('HSET', action, 'state', 'delivering', 'last_attempt_at', now)
  return attempts
end
