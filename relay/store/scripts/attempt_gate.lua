-- Whether a delivery job may send its action now (relay.delivery.gate.check), in one call: the
-- session's turn, then an operator's pause, then the gateway's circuit, each as the scripts that
-- check them alone (lane_turn, pause_hold, circuit_wait) would.
-- KEYS: action, lane ('' when the action has none), paused hash, held-sets index, circuit, level,
-- probe. ARGV: action id, action key prefix, now, held-set key prefix, probe TTL (ms), then the
-- pause fields to look at (source first).
-- Returns {'go'}, {'waiting'}, {'held', field} or {'circuit', milliseconds to wait}.
local action, lane = KEYS[1], KEYS[2]
local aid, action_prefix, now = ARGV[1], ARGV[2], ARGV[3]
if lane ~= '' and lane_turn(lane, action, aid, action_prefix) == 0 then return {'waiting'} end
local held_by = pause_hold(KEYS[3], KEYS[4], action, aid, now, ARGV[4], {unpack(ARGV, 6)})
if held_by then return {'held', held_by} end
local wait = circuit_wait(KEYS[5], KEYS[6], KEYS[7], ARGV[5])
if wait > 0 then return {'circuit', wait} end
return {'go'}
