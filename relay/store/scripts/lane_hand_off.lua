-- A lane's head is finished: remove it and claim the next waiting action (relay.store.lanes.hand_off).
-- KEYS: lane. ARGV: finished action id, now, action key prefix.
-- Returns {the next action id claimed for a job, its turn's number (relay.store.lanes.turn_job_id)},
-- or nil.
redis.call('LREM', KEYS[1], 1, ARGV[1])
local head = drop_finished(KEYS[1], ARGV[3])
if not head then return false end
local key = ARGV[3] .. head
if redis.call('HGET', key, 'state') ~= 'waiting' then return false end
redis.call('HSET', key, 'state', 'queued', 'queued_at', ARGV[2])
return {head, redis.call('HINCRBY', key, 'turns', 1)}
