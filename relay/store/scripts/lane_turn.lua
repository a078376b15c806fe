-- Whether an action may be sent now (relay.store.lanes.my_turn).
-- KEYS: lane, action. ARGV: action id, action key prefix.
-- 1: this action's turn (or no lane); 0: marked waiting.
local head = drop_finished(KEYS[1], ARGV[2])
if (not head) or head == ARGV[1] then return 1 end
redis.call('HSET', KEYS[2], 'state', 'waiting')
return 0
