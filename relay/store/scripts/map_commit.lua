-- Commit the mapping of one received event (relay.worker.mapper): its actions and state, its
-- outcome counter, its place in the per-source index, the parked list, and its session lanes.
-- Only the holder of the mapping lease commits (one mapper at a time keeps a session's actions
-- in the order the ingress acknowledged their events), and only an event still 'received' (a
-- mapping committed twice, after a lease changed hands, changes nothing).
--
-- KEYS: mapping lease, event, stats hash, per-source index, parked, lanes set, then session lanes.
-- ARGV: lease holder, event id, state, actions (JSON), number of actions routed, error ('' none),
-- skip reason ('' none), now, event ttl, per-source index cutoff, action key prefix, then one
-- action id per lane.
-- Returns 'ok', 'lease' (not the holder), 'missing' (expired) or 'done' (already mapped).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lease' end
local state = redis.call('HGET', KEYS[2], 'state')
if not state then return 'missing' end
if state ~= 'received' then return 'done' end
local eid, now, ttl = ARGV[2], ARGV[8], ARGV[9]
redis.call('HSET', KEYS[2], 'state', ARGV[3], 'actions', ARGV[4], 'action_count', ARGV[5], 'mapped_at', now)
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'error', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'reason', ARGV[7]) end
local source = redis.call('HGET', KEYS[2], 'source')
local outcome = 'event|accepted|'
if ARGV[3] == 'parked' then outcome = 'event|parked|' elseif ARGV[5] == '0' then outcome = 'event|skipped|' end
redis.call('HINCRBY', KEYS[3], outcome .. source, 1)
-- The console's per-source index of the event log, trimmed by age.
local received_at = redis.call('HGET', KEYS[2], 'received_at') or now
redis.call('ZADD', KEYS[4], received_at, eid)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[10])
if ARGV[3] == 'parked' then redis.call('ZADD', KEYS[5], now, eid) end
local seen = {}
for i = 1, #KEYS - 6 do lane_append(ARGV[11], KEYS[6 + i], ARGV[11 + i], now, ttl, seen) end
add_lanes(KEYS[6], seen)
return 'ok'
