-- Receive a batch of events at the ingress (relay.store.events.EventStore.receive): each event's
-- dedupe key, its record (state 'received': verified and stored, not mapped yet) and its inbox
-- entry, in one call. Group commit: the requests that arrive while the previous call is in flight
-- share the next. The mapping stage (relay.worker.mapper) maps what the inbox holds.
--
-- KEYS: stats hash, events index, inbox, then per event: dedupe key, event key.
-- ARGV: per-minute counter key prefix, per-minute counter ttl, dedupe ttl, event ttl, now, n
-- events, then per event: event id, source, delivery id, headers (JSON), body, query (JSON, ''
-- when empty), traceparent ('' when none).
--
-- What the events of a batch add to (the stats counters and the per-minute counter) is written
-- once per batch: Redis CPU per event is the deployment's shared limit. The arguments are few per
-- event because the ingress packs each one (the shared ones come once).
local minute_prefix, minute_ttl, dedupe_ttl, event_ttl, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = tonumber(ARGV[6])
local HEAD, PER_EVENT = 6, 7
local stats, received = {}, 0
local function count(k) stats[k] = (stats[k] or 0) + 1 end
local out = {}
for i = 1, n do
  local k, a = 3 + (i - 1) * 2, HEAD + (i - 1) * PER_EVENT
  local id, source = ARGV[a + 1], ARGV[a + 2]
  -- SET NX first: a new delivery (nearly every one) costs one command, a duplicate two.
  if not redis.call('SET', KEYS[k + 1], id, 'NX', 'EX', dedupe_ttl) then
    count('event|duplicate|' .. source)
    out[i] = redis.call('GET', KEYS[k + 1])
  else
    local fields = {'source', source, 'delivery_id', ARGV[a + 3], 'received_at', now,
      'state', 'received', 'headers', ARGV[a + 4], 'body', ARGV[a + 5]}
    if ARGV[a + 6] ~= '' then fields[#fields + 1] = 'query'; fields[#fields + 1] = ARGV[a + 6] end
    if ARGV[a + 7] ~= '' then fields[#fields + 1] = 'traceparent'; fields[#fields + 1] = ARGV[a + 7] end
    redis.call('HSET', KEYS[k + 2], unpack(fields))
    redis.call('EXPIRE', KEYS[k + 2], event_ttl)
    redis.call('ZADD', KEYS[2], now, id)
    redis.call('XADD', KEYS[3], '*', 'event', id)
    count('event|received|' .. source)
    received = received + 1
    out[i] = ''
  end
end
for field, by in pairs(stats) do redis.call('HINCRBY', KEYS[1], field, by) end
if received > 0 then
  local minute = minute_prefix .. math.floor(tonumber(now) / 60)
  redis.call('HINCRBY', minute, 'received', received)
  redis.call('EXPIRE', minute, minute_ttl)
end
return out
