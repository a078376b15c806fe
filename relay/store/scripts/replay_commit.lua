-- A replayed event's new actions (relay.store.replay): written into the event, put on the inbox
-- and in their session lanes, and the event taken off the parked list.
-- KEYS: event, inbox, parked, lanes set, then session lanes. ARGV: event id, expected state
-- ('' = any), new state, actions, action count, now, route ('1' = XADD to the inbox), ttl, action
-- key prefix, then one action id per lane.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local state = redis.call('HGET', KEYS[1], 'state') or ''
if ARGV[2] ~= '' and state ~= ARGV[2] then return 'state:' .. state end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'actions', ARGV[4], 'action_count', ARGV[5], 'replayed_at', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'replays', 1)
local err = redis.call('HGET', KEYS[1], 'error')
if err then
  redis.call('HSET', KEYS[1], 'last_error', err)
  redis.call('HDEL', KEYS[1], 'error')
end
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[7] == '1' then
  redis.call('XADD', KEYS[2], '*', 'event', ARGV[1])
  local seen = {}
  for i = 1, #KEYS - 4 do lane_append(ARGV[9], KEYS[4 + i], ARGV[9 + i], ARGV[6], ARGV[8], seen) end
  add_lanes(KEYS[4], seen)
end
return 'ok'
