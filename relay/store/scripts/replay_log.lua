-- Note a replay on its event (relay.store.selection.record_replay).
-- KEYS: event. ARGV: one JSON record, how many records to keep. Appends the record to the event's
-- replay log, keeping the last ones.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local raw = redis.call('HGET', KEYS[1], 'replay_log')
local log = raw and cjson.decode(raw) or {}
log[#log + 1] = cjson.decode(ARGV[1])
while #log > tonumber(ARGV[2]) do table.remove(log, 1) end
redis.call('HSET', KEYS[1], 'replay_log', cjson.encode(log))
return #log
