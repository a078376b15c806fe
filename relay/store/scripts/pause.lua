-- Operator pauses (relay.store.pause): functions for the scripts that check them before a send.

-- Hold an action whose source or gateway an operator paused. `paused`: the pauses hash; `held_index`:
-- the set of held-set keys; `action`: the action's record; `fields`: the pause fields to look at
-- (source first). Returns the field that holds the action, or false. Held actions are scored by
-- their event's arrival, so a resume releases them in the order they came in.
local function pause_hold(paused, held_index, action, aid, now, held_prefix, fields)
  for _, name in ipairs(fields) do
    local info = redis.call('HGET', paused, name)
    if info then
      local held = held_prefix .. name
      local score = tonumber(redis.call('HGET', action, 'received_at')) or tonumber(now)
      redis.call('ZADD', held, 'NX', score, aid)
      redis.call('SADD', held_index, held)
      redis.call('HSET', action, 'state', 'held', 'held_by', name, 'held_at', now)
      return name
    end
  end
  return false
end
