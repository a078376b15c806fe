-- Receive a batch of events at the ingress (relay.store.events.EventStore.receive): each event's
-- dedupe key, its record (state 'received': verified and stored, not mapped yet) and its inbox
-- entry, in one call. Group commit: the requests that arrive while the previous call is in flight
-- share the next. The mapping stage (relay.worker.mapper) maps what the inbox holds.
--
-- KEYS: stats hash, then per event: dedupe, event, events index, inbox.
-- ARGV: per-minute counter key prefix, per-minute counter ttl, n events, then per event the
-- PER_EVENT arguments: event id, now, dedupe ttl, event ttl, source, delivery id, headers (JSON),
-- body, query (JSON, '' when empty), traceparent ('' when none).
--
-- What the events of a batch add to (the stats counters and the per-minute counter) is written
-- once per batch: Redis CPU per event is the deployment's shared limit.
local minute_prefix, minute_ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local HEAD, PER_EVENT = 3, 10
local stats, minutes = {}, {}
local function count(t, k) t[k] = (t[k] or 0) + 1 end
local out = {}
for i = 1, n do
  local k, a = 1 + (i - 1) * 4, HEAD + (i - 1) * PER_EVENT
  local id, now, source = ARGV[a + 1], ARGV[a + 2], ARGV[a + 5]
  local existing = redis.call('GET', KEYS[k + 1])
  if existing then
    count(stats, 'event|duplicate|' .. source)
    out[i] = {0, existing}
  else
    redis.call('SET', KEYS[k + 1], id, 'EX', ARGV[a + 3])
    local fields = {'source', source, 'delivery_id', ARGV[a + 6], 'received_at', now,
      'state', 'received', 'headers', ARGV[a + 7], 'body', ARGV[a + 8]}
    if ARGV[a + 9] ~= '' then fields[#fields + 1] = 'query'; fields[#fields + 1] = ARGV[a + 9] end
    if ARGV[a + 10] ~= '' then fields[#fields + 1] = 'traceparent'; fields[#fields + 1] = ARGV[a + 10] end
    redis.call('HSET', KEYS[k + 2], unpack(fields))
    redis.call('EXPIRE', KEYS[k + 2], ARGV[a + 4])
    redis.call('ZADD', KEYS[k + 3], now, id)
    redis.call('XADD', KEYS[k + 4], '*', 'event', id)
    count(stats, 'event|received|' .. source)
    count(minutes, minute_prefix .. math.floor(tonumber(now) / 60))
    out[i] = {1, id}
  end
end
for field, by in pairs(stats) do redis.call('HINCRBY', KEYS[1], field, by) end
for key, by in pairs(minutes) do
  redis.call('HINCRBY', key, 'received', by)
  redis.call('EXPIRE', key, minute_ttl)
end
return out
