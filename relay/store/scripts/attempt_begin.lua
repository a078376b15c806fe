-- Begin a delivery job's send (relay.delivery.gate.begin) in one call: read the action's record;
-- unless it is missing or finished, look at the session's turn, an operator's pause and the
-- gateway's circuit, with the functions lane_turn.lua, pause_hold.lua and circuit_wait.lua run
-- alone; then, unless the caller waits for the rate cap first, take the send lock and count the
-- attempt as attempt_start.lua does. The lane, pause and circuit keys follow from the record, so
-- they are built here from the prefixes relay.store.keys passes in.
-- KEYS: action record, send lock, paused hash, held-sets index.
-- ARGV: action id, now, action key prefix, lane key prefix, held-set key prefix, circuit key,
-- circuit level key, circuit probe key (a named gateway's: these with ':' .. name), the default
-- gateway's pause name, start (1: lock and count now), lock TTL (ms), n, then n pairs (gateway
-- name, '' for the default; its probe TTL in ms), then the record's fields to return.
-- Returns {verdict, detail, the fields' values...}; verdict: 'missing' (no kind or body),
-- 'finished' (delivered or dead), 'waiting', 'held' (detail: the pause field), 'circuit' (detail:
-- ms to wait), 'locked' (another copy of the job sends it), 'go' (detail: the attempt's number,
-- 0 when not started).
local action, lock, now = KEYS[1], KEYS[2], ARGV[2]
local n = tonumber(ARGV[12])
local fields = {unpack(ARGV, 13 + 2 * n)}
local values = redis.call('HMGET', action, unpack(fields))
local record = {}
for i, name in ipairs(fields) do record[name] = values[i] end
local function answer(verdict, detail) return {verdict, detail, unpack(values, 1, #fields)} end

if not record.kind or not record.body then return answer('missing', '') end
if record.state == 'delivered' or record.state == 'dead' then return answer('finished', '') end
if record.session_key and record.session_key ~= '' then
  if lane_turn(ARGV[4] .. record.session_key, action, ARGV[1], ARGV[3]) == 0 then
    return answer('waiting', '')
  end
end
local gateway = record.gateway or ''
local pauses = {}
if record.source and record.source ~= '' then pauses[#pauses + 1] = 'source:' .. record.source end
pauses[#pauses + 1] = 'gateway:' .. (gateway ~= '' and gateway or ARGV[9])
local held_by = pause_hold(KEYS[3], KEYS[4], action, ARGV[1], now, ARGV[5], pauses)
if held_by then return answer('held', held_by) end
local suffix = gateway ~= '' and (':' .. gateway) or ''
local probe_ttl = ARGV[14]  -- the default gateway's, for a gateway no longer configured
for i = 0, n - 1 do
  if ARGV[13 + 2 * i] == gateway then probe_ttl = ARGV[14 + 2 * i] end
end
local wait = circuit_wait(ARGV[6] .. suffix, ARGV[7] .. suffix, ARGV[8] .. suffix, probe_ttl)
if wait > 0 then return answer('circuit', wait) end
if ARGV[10] ~= '1' then return answer('go', 0) end
local attempts = attempt_start(lock, action, ARGV[11], now)
if attempts == 0 then return answer('locked', '') end
return answer('go', attempts)
