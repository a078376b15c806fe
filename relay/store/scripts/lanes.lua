-- Session lanes (relay.store.lanes): functions for the scripts that record, queue or hand off
-- actions. `action_prefix` is keys.ACTION_PREFIX, passed in by the caller.

-- Drop the lane's finished heads (delivered, dead, or whose record expired). Returns the head
-- left, or false for an empty lane.
local function drop_finished(lane, action_prefix)
  while true do
    local head = redis.call('LINDEX', lane, 0)
    if not head then return false end
    local state = redis.call('HGET', action_prefix .. head, 'state')
    if state == false or state == 'delivered' or state == 'dead' then
      redis.call('LPOP', lane)
    else
      return head
    end
  end
end

-- Whether `aid` may be sent now: the lane's first unfinished action (or the lane is empty). An
-- action whose turn has not come is marked waiting (its record: `action`). Returns 1 or 0.
local function lane_turn(lane, action, aid, action_prefix)
  local head = drop_finished(lane, action_prefix)
  if (not head) or head == aid then return 1 end
  redis.call('HSET', action, 'state', 'waiting')
  return 0
end

-- Append an action to its lane. Its record is created too, so a lane never holds an id the turn
-- check would take for an expired one. The lane key is gathered in the table `seen`, for
-- `add_lanes` to add to the lanes set once at the script's end.
local function lane_append(action_prefix, lane, aid, now, ttl, seen)
  local action = action_prefix .. aid
  redis.call('HSETNX', action, 'state', 'queued')
  redis.call('HSETNX', action, 'queued_at', now)
  redis.call('EXPIRE', action, ttl)
  redis.call('RPUSH', lane, aid)
  seen[lane] = true
end

-- Add the lane keys gathered in `seen` to the lanes set, in one command.
local function add_lanes(lanes_key, seen)
  local lane_keys = {}
  for lane in pairs(seen) do lane_keys[#lane_keys + 1] = lane end
  if #lane_keys > 0 then redis.call('SADD', lanes_key, unpack(lane_keys)) end
end

