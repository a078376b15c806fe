-- Hold an action whose source or gateway an operator paused (relay.store.pause.hold_if_paused).
-- KEYS: paused hash, held-sets index, action record. ARGV: action id, now, held-set key prefix
-- (keys.PAUSED_HELD_PREFIX), then the pause fields to look at (source first). Returns the field
-- that holds the action, or false. Held actions are scored by their event's arrival, so a resume
-- releases them in the order they came in.
for i = 4, #ARGV do
  local info = redis.call('HGET', KEYS[1], ARGV[i])
  if info then
    local held = ARGV[3] .. ARGV[i]
    local score = tonumber(redis.call('HGET', KEYS[3], 'received_at')) or tonumber(ARGV[2])
    redis.call('ZADD', held, 'NX', score, ARGV[1])
    redis.call('SADD', KEYS[2], held)
    redis.call('HSET', KEYS[3], 'state', 'held', 'held_by', ARGV[i], 'held_at', ARGV[2])
    return ARGV[i]
  end
end
return false
