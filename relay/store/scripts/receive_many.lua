-- Receive a batch of events at the ingress (relay.store.events.EventStore.receive): each event's
-- dedupe key, its record (state 'received': verified and stored, not mapped yet) and its inbox
-- entry. Group commit: the requests that arrive while the previous call is in flight share the
-- next. The mapping stage (relay.worker.mapper) maps what the inbox holds.
--
-- It runs inside MULTI/EXEC, after one HSET per event that wrote the record's fields (source,
-- delivery_id, received_at, headers, body, query, traceparent): the bodies never pass through
-- Lua, which copies and hashes every byte of every string it is given (a third of Redis's CPU
-- per event when the body went through here). The transaction makes the HSETs and this script
-- one atomic write, as one script call was.
--
-- KEYS: stats hash, events index, inbox, then per event: dedupe key, event key.
-- ARGV: per-minute counter key prefix, per-minute counter ttl, dedupe ttl, event ttl, now, n
-- events, then per event: event id, source.
-- Answers the duplicates only, as a flat list: the event's place in the batch (from 1), then the
-- id its delivery was first stored under. Nearly every batch answers an empty list: each reply
-- element costs the ingress a parse.
--
-- A new event gets its state, TTL, event-log entry and inbox entry. A duplicate's record (just
-- written by its HSET) is deleted, unless the dedupe key holds this very id: a batch sent again
-- after a lost reply must not delete what its first sending stored. `state` is written here, not
-- by the HSET, so such a resend cannot set a mapped event back to 'received'.
--
-- What the events of a batch add to (the stats counters and the per-minute counter) is written
-- once per batch: Redis CPU per event is the deployment's shared limit.
local minute_prefix, minute_ttl, dedupe_ttl, event_ttl, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = tonumber(ARGV[6])
local HEAD, PER_EVENT = 6, 2
local stats, received = {}, 0
local function count(k) stats[k] = (stats[k] or 0) + 1 end
local out = {}
for i = 1, n do
  local k, a = 3 + (i - 1) * 2, HEAD + (i - 1) * PER_EVENT
  local id, source = ARGV[a + 1], ARGV[a + 2]
  -- SET NX first: a new delivery (nearly every one) costs one command, a duplicate more.
  if not redis.call('SET', KEYS[k + 1], id, 'NX', 'EX', dedupe_ttl) then
    count('event|duplicate|' .. source)
    local first = redis.call('GET', KEYS[k + 1])
    if first ~= id then redis.call('DEL', KEYS[k + 2]) end
    out[#out + 1] = i
    out[#out + 1] = first
  else
    redis.call('HSET', KEYS[k + 2], 'state', 'received')
    redis.call('EXPIRE', KEYS[k + 2], event_ttl)
    redis.call('ZADD', KEYS[2], now, id)
    redis.call('XADD', KEYS[3], '*', 'event', id)
    count('event|received|' .. source)
    received = received + 1
  end
end
for field, by in pairs(stats) do redis.call('HINCRBY', KEYS[1], field, by) end
if received > 0 then
  local minute = minute_prefix .. math.floor(tonumber(now) / 60)
  redis.call('HINCRBY', minute, 'received', received)
  redis.call('EXPIRE', minute, minute_ttl)
end
return out
