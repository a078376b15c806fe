-- Record a batch of events (relay.store.events): each event, its dedupe key, its inbox entry and
-- its session lanes, in one call (group commit: the requests that arrive while the previous call
-- is in flight share the next).
--
-- KEYS: stats hash, lanes set, then per event: dedupe, event, events index, inbox, parked, then
-- one session lane per lane entry.
-- ARGV: per-source index key prefix, per-minute counter key prefix, per-minute counter ttl, action
-- key prefix (relay.store.keys); n events; then (number of keys, number of args) per event; then
-- every event's args: event id, now, dedupe ttl, event ttl, route ("1" to queue for delivery),
-- parked ("1"), n lanes, n action ids (one per lane key), field, value, ...
--
-- What every event of a batch adds to (the stats counters, the console's per-minute counters and
-- the trim of its per-source index by age) is gathered in Lua tables and written once per batch
-- at the end: the script runs atomically, so the final state is the same as writing it per event,
-- with fewer commands (Redis CPU per event is the ingress's shared limit).
local by_source, minute_prefix, minute_ttl, action_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local HEAD = 4 -- the arguments above, before the events'
local stats, minutes, trims, lanes_seen = {}, {}, {}, {}
local function count(t, k) t[k] = (t[k] or 0) + 1 end
local function record(K, A)
  local lanes = tonumber(A[7])
  local source = A[9 + lanes]  -- the first field is "source"
  local existing = redis.call('GET', K[1])
  if existing then
    count(stats, 'event|duplicate|' .. source)
    return {0, existing}
  end
  local outcome = 'event|accepted|'
  if A[6] == '1' then outcome = 'event|parked|' elseif A[5] ~= '1' then outcome = 'event|skipped|' end
  count(stats, outcome .. source)
  redis.call('SET', K[1], A[1], 'EX', A[3])
  redis.call('HSET', K[2], unpack(A, 8 + lanes))
  redis.call('EXPIRE', K[2], A[4])
  redis.call('ZADD', K[3], A[2], A[1])
  -- The console's per-source index of the event log (trimmed by age below) and its per-minute
  -- chart counters (relay.console).
  redis.call('ZADD', by_source .. source, A[2], A[1])
  local cutoff = tonumber(A[2]) - tonumber(A[4])
  if not trims[source] or trims[source] < cutoff then trims[source] = cutoff end
  count(minutes, minute_prefix .. math.floor(tonumber(A[2]) / 60))
  if A[5] == '1' then
    redis.call('XADD', K[4], '*', 'event', A[1])
    for i = 1, lanes do lane_append(action_prefix, K[5 + i], A[7 + i], A[2], A[4], lanes_seen) end
  end
  if A[6] == '1' then redis.call('ZADD', K[5], A[2], A[1]) end
  return {1, A[1]}
end

local n = tonumber(ARGV[HEAD + 1])
local out = {}
local kpos, apos = 3, HEAD + 2 + 2 * n
for i = 1, n do
  local nk, na = tonumber(ARGV[HEAD + 2 * i]), tonumber(ARGV[HEAD + 2 * i + 1])
  local K, A = {}, {}
  for j = 1, nk do K[j] = KEYS[kpos + j - 1] end
  for j = 1, na do A[j] = ARGV[apos + j - 1] end
  kpos, apos = kpos + nk, apos + na
  out[i] = record(K, A)
end
for field, by in pairs(stats) do redis.call('HINCRBY', KEYS[1], field, by) end
for key, by in pairs(minutes) do
  redis.call('HINCRBY', key, 'received', by)
  redis.call('EXPIRE', key, minute_ttl)
end
add_lanes(KEYS[2], lanes_seen)
for source, cutoff in pairs(trims) do
  redis.call('ZREMRANGEBYSCORE', by_source .. source, '-inf', cutoff)
end
return out
